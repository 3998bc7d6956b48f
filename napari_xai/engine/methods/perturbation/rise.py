"""RISE: randomized input sampling; saliency as the score-weighted average of random smooth masks.

Petsiuk, Das & Saenko 2018 (review ref. [40]). Each mask is a random binary
grid (each node kept with probability ``p``) upsampled by (bi/tri)linear
interpolation to cells of ``C = ceil(n / s)`` voxels per axis and cropped
with a random shift in ``[0, C)``, which makes the masks smooth and their
cell boundaries land anywhere. The masked input is
``x * M + reference * (1 - M)`` (the paper: reference 0). The paper's
saliency is ``S = sum_i f(x_i) M_i / (N p)``.

The grid has ``s + 1`` nodes per axis, so that the paper's two statements
hold together: the upsampled mask is ``(s + 1) C`` voxels and its cells are
``C`` voxels. (The authors' code resizes ``s`` nodes to ``(s + 1) C`` voxels,
cells of ``(s + 1) C / s``, while shifting by less than ``C``; the mask's
statistics then vary with position.) With cells of exactly ``C`` and a shift
over one whole cell, every voxel away from the border sees the same mask
statistics. Interpolation clamps at the border (the authors' code mirrors).
``tests/engine/methods/perturbation/test_rise.py`` checks the map against a
hand computation of this definition.

What the map is: for a score nearly linear in the mask, ``E[S_centred(v)] =
sum_u a_u Cov(M(u), M(v)) / p`` with ``a_u = (x_u - reference_u) df/dx_u``
(input x gradient for reference 0): the evidence blurred by the masks'
covariance, which reaches two cells either way. With ``N`` masks,
zero-mean Monte-Carlo noise falling as ``1 / sqrt(N)`` is added everywhere.
docs/methods.md ("RISE on small evidence") says what that means for small
lesions.

Sign: with probabilities ``f`` the paper's map is non-negative and contains
the mean score ``E[f]`` as a constant; with logits (what the engine explains)
that constant has any sign and can dwarf the contrast. By default
(``center=True``) the mean score over the masks is subtracted,
``S = sum_i (f(x_i) - mean f) M_i / (N p)``, which changes the map by a
constant only: positive voxels raise the score when kept, negative ones lower
it. ``center=False`` gives the paper's map.

Hand-written because no library does RISE in 3D with a bounded footprint:
masks are drawn, upsampled, run and accumulated batch by batch under the
memory budget and ``torch.inference_mode``, never all at once, with progress
and cancel between batches; mask ``i`` comes from a generator seeded by
``(seed, i)``, so the result does not depend on how the work is batched.
"""

from __future__ import annotations

import math
from typing import Any, Generator

import numpy as np
import torch

from ...errors import MethodError
from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, per_axis, register_method
from ..toolkit.context import MethodContext
from ..toolkit.params import BLUR_SIGMA, baseline_param, seed_param
from ..toolkit.perturbation import blend, reference, scored_batches
from ..toolkit.resample import upsample


def rise_masks(grids: np.ndarray, shifts: np.ndarray, shape: tuple[int, ...], cells: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Full-resolution masks ``(b, *shape)`` in [0, 1] from binary grids ``(b, *(s + 1))`` and shifts ``(b, dim)``."""
    up = tuple(g * c for g, c in zip(grids.shape[1:], cells))
    g = torch.as_tensor(grids, dtype=torch.float32, device=device).unsqueeze(1)
    big = upsample(g, up)[:, 0]
    out = torch.empty((len(grids),) + tuple(shape), dtype=torch.float32, device=device)
    for i, sh in enumerate(shifts):
        out[i] = big[(i,) + tuple(slice(int(s), int(s) + n) for s, n in zip(sh, shape))]
    return out


def draw_grids(seed: int, lo: int, hi: int, grid: tuple[int, ...], cells: tuple[int, ...], p: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary grids ``(hi - lo, *(grid + 1))`` and shifts ``(hi - lo, dim)`` of masks ``lo..hi-1``.

    Mask ``i`` is drawn from its own generator seeded by ``(seed, i)``, so a
    run does not depend on how it is batched, and no mask is made before its batch.
    """
    grids, shifts = [], []
    for i in range(lo, hi):
        rng = np.random.default_rng((seed, i))
        grids.append(rng.random(tuple(g + 1 for g in grid)) < p)
        shifts.append([rng.integers(0, c) for c in cells])
    return np.stack(grids), np.asarray(shifts, dtype=np.int64)


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    shape = ctx.spatial_shape
    s = per_axis(params["grid"], ctx.dim, "grid", "RISE")
    if any(si > n for si, n in zip(s, shape)):
        raise MethodError(f"RISE: the mask grid {s} is finer than the model input {shape}.", "Use a grid of at most the input size per axis (the paper: 7).")
    cells = tuple(math.ceil(n / si) for n, si in zip(shape, s))
    n_masks, p = params["n_masks"], params["p"]
    ref = reference(ctx.x, params["baseline"], params["blur_sigma"])
    sum_fm = torch.zeros(shape, dtype=torch.float64, device=ctx.x.device)
    sum_m = torch.zeros(shape, dtype=torch.float64, device=ctx.x.device)
    sum_f = 0.0
    drawn: dict[str, torch.Tensor] = {}

    def masked(lo: int, hi: int) -> torch.Tensor:
        grids, shifts = draw_grids(params["seed"], lo, hi, s, cells, p)
        drawn["masks"] = rise_masks(grids, shifts, shape, cells, ctx.x.device)
        return blend(ctx.x, ref, drawn["masks"])

    for lo, hi, scores in scored_batches(ctx, n_masks, masked):
        f, masks = scores.double(), drawn["masks"]
        sum_fm += torch.tensordot(f, masks.double(), dims=1)
        sum_m += masks.double().sum(dim=0)
        sum_f += float(f.sum())
        yield Progress(hi, n_masks, f"RISE: {hi}/{n_masks} masks")
    sal = sum_fm / (n_masks * p)
    mean_f = sum_f / n_masks
    if params["center"]:
        sal = sal - mean_f * sum_m / (n_masks * p)
    ctx.checks["rise"] = {"masks": n_masks, "mean_score": mean_f, "centered": params["center"]}
    return sal.float().cpu().numpy()


SPEC = register_method(
    MethodSpec(
        name="rise",
        title="RISE",
        family="perturbation",
        reference="Petsiuk V, Das A, Saenko K. RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC 2018 (review ref. [40]).",
        summary="Score-weighted average of random smooth masks; model-agnostic, forward passes only.",
        needs=frozenset({"forward"}),
        sign="signed",
        params=(
            # 250, not the paper's 4000-8000 (2D images): one forward pass each, and 4000 take over 6 minutes
            # on the sample 3D model on a 2-core CPU; see benchmarks/README.md
            ParamSpec("n_masks", int, 250, "Random masks (the paper: 4000-8000 on 2D images); more gives a smoother, steadier map but costs one forward pass each.", min=1, max=1_000_000),
            ParamSpec("grid", int, 7, "Cells of the low-resolution mask per axis (the paper's s = 7), or one per axis (z y x).", min=1, max=512, per_axis=True),
            ParamSpec("p", float, 0.5, "Probability that a cell is kept (the paper's p = 0.5).", min=0.01, max=0.99),
            baseline_param("What masked-out voxels become (the paper: zeros)", blur=True),
            BLUR_SIGMA,
            ParamSpec("center", bool, True, "Subtract the mean score so the map is signed (False: the paper's uncentred map)."),
            seed_param("the random masks"),
        ),
        run=_run,
        stochastic=True,
    )
)
