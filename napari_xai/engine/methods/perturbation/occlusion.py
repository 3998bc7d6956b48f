"""Occlusion: the drop in the target score when a window of the input is replaced by a baseline.

Zeiler & Fergus 2014 (review ref. [28]). The definition is Captum's
``Occlusion``: windows start at multiples of the stride along each axis (the
last one clipped at the border), and each voxel's attribution is the mean,
over the windows covering it, of ``f(x) - f(x with the window occluded)``.
Hand-written for a bounded memory footprint: occluded copies are built and
run batch by batch, sized from the memory budget, under
``torch.inference_mode``, with progress and cancel between batches.

With ``incremental`` (the default) an occluded input is not run through the
whole network: the unoccluded pass is recorded once and each window
recomputes, layer by layer, only its receptive field (exact incremental
inference, Nakandala et al., ACM TODS 2020; see :mod:`._incremental`). The
map is the same up to float rounding; the first batch's most-changed and
first windows are checked against full passes on every run, and the
provenance (``checks['occlusion']``) says which ops ran in full.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Generator

import numpy as np
import torch

from ...budget import batches
from ...errors import MethodError
from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, per_axis, register_method
from . import incremental as _incremental
from ..toolkit.context import MethodContext, baseline_value
from ..toolkit.params import baseline_param
from ..toolkit.perturbation import occluded


def window_starts(shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Start index of every window: ``ceil((n - w) / s) + 1`` positions per axis."""
    axes = [range(0, (math.ceil((n - w) / s) + 1) * s, s) for n, w, s in zip(shape, window, stride)]
    return list(itertools.product(*axes))


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    shape = ctx.spatial_shape
    # a window longer than the input covers the whole axis (one position), e.g. the default on a small input
    window = tuple(min(w, n) for w, n in zip(per_axis(params["window"], ctx.dim, "window", "Occlusion"), shape))
    stride = per_axis(params["stride"], ctx.dim, "stride", "Occlusion")
    if any(s > w for s, w, n in zip(stride, window, shape) if w < n):
        raise MethodError(
            f"Occlusion: the stride {stride} is larger than the window {window}, which would leave voxels never occluded.",
            "Use a stride no larger than the window.",
        )
    starts = window_starts(shape, window, stride)
    fill = baseline_value(ctx.x, params["baseline"])
    f_x = ctx.target.score_value
    total = torch.zeros(shape, dtype=torch.float64)
    count = torch.zeros(shape, dtype=torch.float64)
    planner = ctx.planner(gradients=False)
    tape, info = _incremental_tape(ctx, params["incremental"]) if ctx.windows is None else (None, None)
    yield Progress(0, len(starts), f"occlusion: 0/{len(starts)} windows" + (" (unoccluded pass recorded)" if tape is not None else ""))
    for lo, hi in batches(len(starts), planner):
        chunk = starts[lo:hi]
        boxes = [tuple(slice(s, s + w) for s, w in zip(start, window)) for start in chunk]
        if ctx.windows is not None:  # only the windows that hold the patch run again
            diffs = ctx.windows.occlusion_drops(boxes, fill)
        else:
            if tape is not None:
                scores = _incremental_scores(ctx, tape, chunk, window, fill)
                if lo == 0:
                    yield Progress(0, len(starts), f"occlusion: checking the incremental scores of {len(chunk)} windows against full passes")
                    tape = _verify(ctx, tape, info, boxes, scores, fill)
                    if tape is None:
                        scores = _full_scores(ctx, boxes, fill)
            else:
                scores = _full_scores(ctx, boxes, fill)
            diffs = (f_x - scores).double().cpu()
        for d, box in zip(diffs, boxes):
            total[box] += d
            count[box] += 1
        yield Progress(hi, len(starts), f"occlusion: {hi}/{len(starts)} windows")
    if tape is not None:
        info["ops_run_in_full"] = dict(tape.fallback_ops)
    ctx.checks["occlusion"] = info
    return (total / count).float().numpy()


def _full_scores(ctx: MethodContext, boxes: list[tuple[slice, ...]], fill: float) -> torch.Tensor:
    """Target scores of the occluded inputs, one full forward pass each."""
    return ctx.scores(occluded(ctx.x, boxes, fill))


def _incremental_tape(ctx: MethodContext, wanted: bool) -> tuple[_incremental.Tape | None, dict[str, Any]]:
    """The recorded unoccluded pass, or None and why not (in the provenance dict)."""
    if not wanted:
        return None, {"incremental": False, "reason": "switched off (incremental=False)"}
    if not ctx.model.takes_hooks:
        return None, {"incremental": False, "reason": "the model is compiled (TorchScript or exported), so its layers cannot be replayed"}
    try:
        tape, why, _ = _incremental.record(ctx.module, ctx.x)
    except Exception as err:  # noqa: BLE001 - any failure: the full passes report the model's own error
        tape, why = None, f"recording the unoccluded pass failed ({type(err).__name__})"
    if tape is None:
        return None, {"incremental": False, "reason": why}
    return tape, {"incremental": True, "reason": None, "recorded_ops": len(tape.nodes)}


def _incremental_scores(ctx: MethodContext, tape: _incremental.Tape, chunk: list, window: tuple[int, ...], fill: float) -> torch.Tensor:
    """Target scores of the occluded inputs by incremental replay: each crop is the window's box with the window filled."""
    shape = ctx.spatial_shape
    boxes, crops = [], []
    for start in chunk:
        box = tuple((min(s, n - w), min(s, n - w) + w) for s, w, n in zip(start, window, shape))
        crop = ctx.x[(0, slice(None)) + tuple(slice(a, b) for a, b in box)].clone()
        crop[(slice(None),) + tuple(slice(s - a, min(s + w, n) - a) for s, w, n, (a, _) in zip(start, window, shape, box))] = fill
        boxes.append(box)
        crops.append(crop)
    with torch.inference_mode():
        return ctx.target.score(tape.replay(boxes, torch.stack(crops))).float()


def _verify(ctx: MethodContext, tape: _incremental.Tape, info: dict[str, Any], boxes: list, scores: torch.Tensor, fill: float) -> _incremental.Tape | None:
    """Check the first batch's first and most-changed windows against full passes; None (full passes from now) on a mismatch."""
    picks = sorted({0, int((ctx.target.score_value - scores).abs().argmax())})
    full = _full_scores(ctx, [boxes[i] for i in picks], fill)
    err = float((full - scores[picks]).abs().max())
    tol = 1e-4 * max(1.0, abs(ctx.target.score_value), float(full.abs().max()))
    info["verified_windows"] = len(picks)
    info["verification_error"] = err
    if err <= tol:
        return tape
    info.update(incremental=False, reason=f"incremental replay differed from full passes by {err:.3g} (tolerance {tol:.3g}); full passes used")
    return None


SPEC = register_method(
    MethodSpec(
        name="occlusion",
        title="Occlusion",
        family="perturbation",
        reference="Zeiler MD, Fergus R. Visualizing and Understanding Convolutional Networks. ECCV 2014 (review ref. [28]).",
        summary="Score drop when a sliding window is replaced by a baseline; model-agnostic, one forward pass per window.",
        needs=frozenset({"forward"}),
        sign="signed",
        params=(
            # 12 / 12: 150 windows on the sample model's 54 x 65 x 53 grid, about 15 s on a 2-core CPU
            # (the former 8 / 4 ran 2704 windows, over 4 minutes); see benchmarks/README.md
            ParamSpec("window", int, 12, "Window edge in voxels of the model grid (or one per axis, z y x).", min=1, max=512, per_axis=True),
            ParamSpec("stride", int, 12, "Step between windows in voxels (no larger than the window; smaller overlaps windows, slower).", min=1, max=512, per_axis=True),
            baseline_param("Value the window is set to"),
            ParamSpec(
                "incremental", bool, True,
                "Recompute only each window's receptive field from the cached unoccluded pass (same map, less arithmetic); off: a full pass per window.",
            ),
        ),
        run=_run,
    )
)
