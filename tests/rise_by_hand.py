"""RISE computed by hand, in numpy, from its definition: the masks, the map, and the map's expectation.

Petsiuk V, Das A, Saenko K, "RISE: Randomized Input Sampling for Explanation
of Black-box Models", BMVC 2018: binary grids (each node 1 with probability
``p``), upsampled (bi/tri)linearly to cells of ``C = ceil(n / s)`` voxels,
cropped with a random shift in ``[0, C)`` per axis, and the saliency
``S = sum_i f(x * M_i) M_i / (N p)``. Nothing here uses torch's interpolation
or the engine's mask code: the upsampling is written out as a matrix per axis.
"""

from __future__ import annotations

import math

import numpy as np


def linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)``: 1D linear interpolation, voxel centres at ``(j + 0.5) n_in / n_out - 0.5``, edges clamped."""
    w = np.zeros((n_out, n_in))
    for j in range(n_out):
        t = min(max((j + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
        i0 = int(math.floor(t))
        i1 = min(i0 + 1, n_in - 1)
        w[j, i0] += 1.0 - (t - i0)
        w[j, i1] += t - i0
    return w


def _apply_per_axis(matrices: list[np.ndarray], arr: np.ndarray) -> np.ndarray:
    for ax, m in enumerate(matrices):
        arr = np.moveaxis(np.tensordot(m, np.moveaxis(arr, ax, 0), axes=1), 0, ax)
    return arr


def upsampled(grid: np.ndarray, cells: tuple[int, ...]) -> np.ndarray:
    """A binary grid upsampled to ``cells[ax]`` voxels per node and axis."""
    return _apply_per_axis([linear_weights(g, g * c) for g, c in zip(grid.shape, cells)], grid.astype(float))


def mask(grid: np.ndarray, shift: np.ndarray, shape: tuple[int, ...], cells: tuple[int, ...]) -> np.ndarray:
    """One RISE mask: the upsampled grid cropped to ``shape`` from ``shift``."""
    return upsampled(grid, cells)[tuple(slice(int(s), int(s) + n) for s, n in zip(shift, shape))]


def saliency(scores: np.ndarray, masks: np.ndarray, p: float, center: bool) -> np.ndarray:
    """``sum_i (f_i - c) M_i / (N p)`` with ``c`` the mean score (``center``) or 0 (the paper)."""
    f = scores - (scores.mean() if center else 0.0)
    return np.tensordot(f, masks, axes=1) / (len(scores) * p)


def expected_map(attribution: np.ndarray, grid: tuple[int, ...], p: float) -> np.ndarray:
    """The centred map's expectation over the masks for a score linear in the mask, ``f = f0 + sum_u a_u M_u``.

    ``E[S(v)] = Cov(f, M(v)) / p = sum_u a_u Cov(M(u), M(v)) / p``. A node is
    1 with probability ``p``, independently, so ``Cov(M(u), M(v)) = p (1 - p)
    sum_k B_k(u) B_k(v)`` averaged over the shifts, ``B_k`` the interpolation
    weight of node ``k``; weights and shifts are separable, so the covariance is
    a product of one matrix per axis, averaged over that axis's ``C`` shifts.
    """
    kernels = []
    for n, s in zip(attribution.shape, grid):
        c = math.ceil(n / s)
        w = linear_weights(s + 1, (s + 1) * c)
        kernels.append(sum(w[sh : sh + n] @ w[sh : sh + n].T for sh in range(c)) / c)
    return _apply_per_axis(kernels, attribution.astype(float)) * (1.0 - p)
