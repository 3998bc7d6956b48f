"""Extremal Perturbation: the smooth mask of a fixed area that best preserves the target score.

Fong, Patrick & Vedaldi 2019 (review ref. [36]), the *preservation game*:
among smooth masks ``m`` covering a fraction ``area`` of the input, find the
one whose preserved region alone (the rest perturbed) keeps the target score
highest:

    minimise  -s(Phi(x; m)) + lambda_t * mean((vecsort(m) - r_area) ** 2)

* ``s``: the target score normalised to 1 on the input and 0 on the fully
  perturbed input (see :mod:`._mask_opt`).
* ``Phi``: by default the paper's blur perturbation, where the blur's sigma
  grows with ``1 - m`` up to ``blur_sigma`` (``blur_levels`` precomputed
  levels, interpolated); or a blend with noise or a constant.
* Smooth masks: the mask is the smooth maximum (temperature ``temperature``;
  0 is the plain maximum) over parameters ``m_bar`` on a grid of one cell per
  ``mask_stride`` voxels, each weighted by a Gaussian of ``sigma_cells``
  cells, ``m(u) = smax_v k(u - v) m_bar(v)``, then (bi/tri)linearly
  upsampled; the mask is thus a union of smooth blobs, as in the paper.
* Area: the ranking loss compares the sorted mask with the template
  ``r_area`` (a fraction ``1 - area`` of zeros then ones); its weight grows
  geometrically from 1 to ``area_weight`` over the iterations, so the
  constraint tightens as the mask settles.

Defaults follow the paper and its reference implementation where they
transfer to volumes (area 0.1, a parameter every 7 voxels, 8 blur levels,
area weight 300). The reference's smoothing sigma of 21 pixels (3 cells) is
a tenth of a 224-pixel image; model inputs of CT/MRI networks are usually
64-128 voxels per axis, so the default here is 1 cell (7 voxels): with 3
cells a single blob is larger than the area allows and the mask cannot
concentrate. The reference runs 800 iterations of SGD; here 400 of Adam
(scale-free, so the same step suits logits and region sums); raise
``iterations`` for figures. The mask starts fully on (1): a start at 0.5
blurs the whole input so much that a ReLU network's score and gradient can
vanish. The map is the mask ``m`` in [0, 1] (non-negative). Not
implemented: the reference's jitter.

Hand-written because TorchRay's implementation asserts 2D inputs; this one
works in 2D and 3D, checks the memory budget for one gradient pass, enters
grad mode only inside one optimiser step and yields progress (and a chance
to cancel) after every step.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Generator

import numpy as np
import torch
import torch.nn.functional as F

from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from .mask_optimisation import (
    OPERATOR_HELP,
    as_param,
    mask_problem,
    normalised_score,
    optimise,
    upsample,
)
from ..toolkit.context import MethodContext
from ..toolkit.params import blur_sigma_param, seed_param
from ..toolkit.perturbation import OPERATORS
from ..toolkit.stepped import background_import


class SmoothMax:
    """``m(u) = smax over v of k(u - v) m_bar(v)`` on the parameter grid, ``k`` a Gaussian of ``sigma`` cells.

    The maximum runs over the parameters within ``ceil(2 sigma)`` cells of
    ``u`` that lie inside the grid (the paper's domain), gathered with one
    precomputed index so that a step costs one gather, not one op per offset.

    Parameters
    ----------
    grid : tuple of int
        Shape of the parameter grid.
    sigma : float
        Gaussian width in cells of the parameter grid.
    temperature : float
        Smooth-max temperature; 0 is the plain maximum.
    """

    def __init__(self, grid: tuple[int, ...], sigma: float, temperature: float, device: torch.device) -> None:
        reach = max(0, math.ceil(2 * sigma))
        radius = tuple(min(reach, g - 1) for g in grid)
        padded = tuple(g + 2 * r for g, r in zip(grid, radius))
        strides = np.cumprod((1,) + padded[::-1])[:-1][::-1]
        centre = np.stack(np.meshgrid(*[np.arange(g) + r for g, r in zip(grid, radius)], indexing="ij")).reshape(len(grid), -1)
        base = (strides[:, None] * centre).sum(axis=0)  # flat index of each cell in the padded grid
        offsets = np.array(list(itertools.product(*[range(-r, r + 1) for r in radius])))
        index = base[None, :] + (offsets * strides).sum(axis=1)[:, None]  # (K, cells)
        inside = np.pad(np.ones(grid, bool), [(r, r) for r in radius]).ravel()[index]
        d2 = (offsets**2).sum(axis=1).astype(np.float32)
        kernel = np.exp(-d2 / (2 * sigma**2)) if sigma > 0 else (d2 == 0).astype(np.float32)
        self.grid, self.radius = grid, radius
        self.index = torch.as_tensor(index, device=device)
        self.inside = torch.as_tensor(inside, device=device)
        self.kernel = torch.as_tensor(kernel, dtype=torch.float32, device=device)[:, None]
        self.temperature = temperature

    def __call__(self, m_bar: torch.Tensor) -> torch.Tensor:
        """``m_bar`` ``(1, 1, *grid)`` -> the smooth mask ``(1, 1, *grid)``."""
        pads = [p for r in self.radius[::-1] for p in (r, r)]
        z = F.pad(m_bar, pads).flatten()[self.index] * self.kernel  # (K, cells)
        z = torch.where(self.inside, z, torch.full_like(z, -1.0))  # outside the grid: never the maximum
        if self.temperature <= 0:
            out = z.max(dim=0).values
        else:
            w = torch.softmax(z.masked_fill(~self.inside, float("-inf")) / self.temperature, dim=0)
            out = (torch.where(self.inside, z, torch.zeros_like(z)) * w).sum(dim=0)
        return out.view((1, 1) + tuple(self.grid))


def area_template(n: int, area: float, device: torch.device) -> torch.Tensor:
    """``r_area``: ``n - round(area n)`` zeros then ones (the sorted target of the ranking loss)."""
    k = int(round(area * n))
    r = torch.zeros(n, device=device)
    if k > 0:
        r[n - k :] = 1.0
    return r


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    problem = mask_problem(ctx, params, "Extremal Perturbation", pyramid_levels=params["blur_levels"])
    shape = problem.shape
    yield Progress(0, params["iterations"], "extremal perturbation: the fully perturbed input scored")
    smax = SmoothMax(problem.grid, params["sigma_cells"], params["temperature"], ctx.x.device)
    template = area_template(int(np.prod(shape)), params["area"], ctx.x.device)
    m_bar = as_param(1.0, problem.grid, ctx.x.device)
    yield from background_import("torch._dynamo", "extremal perturbation: loading torch's optimiser support (once per session)")
    optimiser = torch.optim.Adam([m_bar], lr=params["learning_rate"])
    n = params["iterations"]
    weight = {"now": 1.0}

    def loss_fn(p: torch.Tensor) -> torch.Tensor:
        keep = upsample(smax(p), shape)
        s = normalised_score(ctx, problem.op.apply(keep.to(ctx.x.dtype)), problem.f_ref, problem.span)
        area_loss = ((keep.flatten().sort().values - template) ** 2).mean()
        return -s + weight["now"] * area_loss

    def grow_area_weight(it: int) -> None:
        weight["now"] = params["area_weight"] ** (it / max(1, n - 1))

    loss = yield from optimise(m_bar, optimiser, loss_fn, n, "extremal perturbation", grow_area_weight)
    with torch.no_grad():
        keep = upsample(smax(m_bar.detach()), shape)
    s_final = problem.final_score(ctx, keep)
    ctx.checks["extremal_perturbation"] = {
        "final_loss": loss,
        "normalised_score_preserved": s_final,
        "mask_mean": float(keep.mean()),
        "area": params["area"],
    }
    return keep[0].cpu().numpy()


SPEC = register_method(
    MethodSpec(
        name="extremal_perturbation",
        title="Extremal Perturbation",
        family="perturbation",
        reference="Fong R, Patrick M, Vedaldi A. Understanding Deep Networks via Extremal Perturbations and Smooth Masks. ICCV 2019 (review ref. [36]).",
        summary="Learns the smooth mask of a given area that best preserves the target score; needs gradients.",
        needs=frozenset({"gradients"}),
        sign="non-negative",
        params=(
            ParamSpec("area", float, 0.1, "Fraction of the input the mask keeps (the paper's a; 0.1 by default).", min=0.001, max=0.999),
            ParamSpec("perturbation", str, "blur", OPERATOR_HELP, choices=OPERATORS),
            blur_sigma_param(20.0, "Blur: largest Gaussian sigma, in voxels of the model grid.", minimum=0.1),
            ParamSpec("blur_levels", int, 8, "Blur: precomputed blur levels between sigma 0 and blur_sigma.", min=2, max=64),
            ParamSpec("noise_level", float, 1.0, "Noise: standard deviation as a multiple of the input's.", min=0.0, max=100.0),
            # 60, not 400: each step is a forward and backward pass (400 take ~2.5 minutes on the sample 3D model)
            ParamSpec("iterations", int, 60, "Optimiser steps (one forward and backward pass each; the reference runs 800).", min=1, max=10000),
            ParamSpec("learning_rate", float, 0.05, "Adam learning rate on the mask parameters.", min=1e-5, max=10.0),
            ParamSpec("area_weight", float, 300.0, "Final weight of the area (ranking) loss; it grows from 1.", min=1.0, max=1e6),
            ParamSpec("mask_stride", int, 7, "Voxels per mask parameter (the reference's step 7), or one per axis.", min=1, max=512, per_axis=True),
            ParamSpec("sigma_cells", float, 1.0, "Width of the smoothing Gaussian, in mask cells (the reference: 3 cells on 224-pixel images).", min=0.0, max=20.0),
            ParamSpec("temperature", float, 0.0, "Smooth-max temperature; 0 is the plain maximum.", min=0.0, max=10.0),
            seed_param("the noise perturbation"),
        ),
        run=_run,
        stochastic=True,
    )
)
