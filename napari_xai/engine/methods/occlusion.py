"""Occlusion: the drop in the target score when a window of the input is replaced by a baseline.

Zeiler & Fergus 2014 (review ref. [28]). The definition is Captum's
``Occlusion``: windows start at multiples of the stride along each axis (the
last one clipped at the border), and each voxel's attribution is the mean,
over the windows covering it, of ``f(x) - f(x with the window occluded)``.
Hand-written for a bounded memory footprint: occluded copies are built and
run batch by batch, sized from the memory budget, under
``torch.inference_mode``, with progress and cancel between batches.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Generator

import numpy as np
import torch

from ..budget import batches
from ..errors import MethodError
from ..progress import Progress
from ..registry import MethodSpec, ParamSpec, register_method
from ._context import MethodContext, baseline_value
from ._perturb import per_axis


def window_starts(shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Start index of every window: ``ceil((n - w) / s) + 1`` positions per axis."""
    axes = [range(0, (math.ceil((n - w) / s) + 1) * s, s) for n, w, s in zip(shape, window, stride)]
    return list(itertools.product(*axes))


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    shape = ctx.spatial_shape
    window = per_axis(params["window"], ctx.dim, "window", "Occlusion")
    stride = per_axis(params["stride"], ctx.dim, "stride", "Occlusion")
    if any(w > n for w, n in zip(window, shape)):
        raise MethodError(
            f"Occlusion: the window {window} is larger than the model input {shape}.",
            "Use a smaller window (in voxels of the model grid).",
        )
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
    for lo, hi in batches(len(starts), planner):
        chunk = starts[lo:hi]
        xb = ctx.x.repeat(len(chunk), *([1] * (ctx.x.ndim - 1)))
        boxes = [tuple(slice(s, s + w) for s, w in zip(start, window)) for start in chunk]
        for i, box in enumerate(boxes):
            xb[(i, slice(None)) + box] = fill
        diffs = (f_x - ctx.scores(xb)).double().cpu()
        for d, box in zip(diffs, boxes):
            total[box] += d
            count[box] += 1
        yield Progress(hi, len(starts), f"occlusion: {hi}/{len(starts)} windows")
    return (total / count).float().numpy()


SPEC = register_method(
    MethodSpec(
        name="occlusion",
        title="Occlusion",
        family="perturbation",
        reference="Zeiler MD, Fergus R. Visualizing and Understanding Convolutional Networks. ECCV 2014 (review ref. [28]).",
        summary="Score drop when a sliding window is replaced by a baseline; model-agnostic, one forward pass per window.",
        needs=frozenset({"forward"}),
        sign="signed",
        model_agnostic=True,
        params=(
            ParamSpec("window", int, 8, "Window edge in voxels of the model grid (or one per axis, z y x).", min=1, max=512, per_axis=True),
            ParamSpec("stride", int, 4, "Step between windows in voxels (no larger than the window).", min=1, max=512, per_axis=True),
            ParamSpec("baseline", str, "zeros", "Value the window is set to: zeros, or the scan's minimum or mean (model-space intensities).", choices=("zeros", "min", "mean")),
        ),
        run=_run,
    )
)
