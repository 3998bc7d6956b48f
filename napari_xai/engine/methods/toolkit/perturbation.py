"""Perturbing the input and scoring it: reference images, blending, occluding boxes, the batched score loop.

A perturbation method replaces part of the input by a *reference*: a
constant (zeros, the scan's minimum or mean, in model-space intensities), a
blurred copy of the input, or (for the mask-optimising methods) a noisy copy.
Masks here follow one convention: ``keep = 1`` leaves the voxel as it is,
``keep = 0`` replaces it by the reference.
"""

from __future__ import annotations

from typing import Callable, Iterator, Union

import torch
from scipy import ndimage

from ...budget import BatchPlanner, batches
from . import layout
from .context import MethodContext, baseline_value
from .layout import LayoutChoice, can_use_channels_last, cached_choice, choose_layout

#: Reference kinds for methods that switch regions off (LIME, KernelSHAP, RISE, HiPe).
BASELINES = ("zeros", "min", "mean", "blur")
#: Perturbation operators of the mask-optimising methods (Fong & Vedaldi).
OPERATORS = ("blur", "noise", "constant")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` ``(N, C, *spatial)`` blurred over its spatial axes by a Gaussian of ``sigma`` voxels.

    Done with scipy (any sigma, even larger than the image, with
    nearest-edge extension) in ``x``'s precision (float64 stays float64,
    other dtypes are filtered as float32), then moved back to ``x``'s device.
    """
    if sigma <= 0:
        return x.clone()
    t = x.detach()
    arr = (t if t.dtype in (torch.float32, torch.float64) else t.float()).cpu().numpy()
    out = ndimage.gaussian_filter(arr, sigma=(0, 0) + (float(sigma),) * (x.ndim - 2), mode="nearest")
    return torch.as_tensor(out, dtype=x.dtype, device=x.device)


def reference(x: torch.Tensor, kind: str, blur_sigma: float) -> torch.Tensor:
    """The image that switched-off voxels take, shaped like ``x`` ``(1, C, *spatial)``.

    Parameters
    ----------
    x : torch.Tensor
        Model-space input.
    kind : str
        ``zeros``, ``min``, ``mean`` (constants of the model-space input) or
        ``blur`` (the input blurred with a Gaussian of ``blur_sigma`` voxels).
    blur_sigma : float
        Gaussian sigma for ``blur``, in voxels of the model grid.
    """
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    return torch.full_like(x, baseline_value(x, kind))


def blend(x: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x * keep + ref * (1 - keep)`` for a batch of masks ``keep`` ``(N, *spatial)``.

    ``x`` and ``ref`` are ``(1, C, *spatial)``; the mask is shared by all channels.
    """
    k = keep.to(dtype=x.dtype, device=x.device).unsqueeze(1)
    return ref + k * (x - ref)


def occluded(x: torch.Tensor, boxes: list[tuple[slice, ...]], ref: Union[float, torch.Tensor]) -> torch.Tensor:
    """Copies ``(len(boxes), C, *spatial)`` of ``x`` (a batch of one), copy ``i`` with ``boxes[i]`` replaced.

    ``ref`` is a constant, or a reference image shaped like ``x`` whose
    voxels inside the box are taken (e.g. a blurred copy).
    """
    xb = x.repeat(len(boxes), *([1] * (x.ndim - 1)))
    for i, box in enumerate(boxes):
        xb[(i, slice(None)) + box] = ref[(0, slice(None)) + box] if isinstance(ref, torch.Tensor) else ref
    return xb


def scored_batches(
    ctx: MethodContext, n: int, make_batch: Callable[[int, int], torch.Tensor], planner: BatchPlanner | None = None
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The perturb-and-score loop: ``(lo, hi, scores)`` for the perturbed inputs ``make_batch(lo, hi)``, batch by batch.

    Batches of the ``n`` perturbed inputs are sized from the memory budget
    (forward passes only; ``planner``, else ``ctx.planner(gradients=False)``
    made when the loop starts) and scored under ``torch.inference_mode``; the
    caller yields its :class:`Progress` between two items, so a run can be
    cancelled between batches and never holds more than one batch.

    A loop of at least ``layout.TRIAL_MIN_PASSES`` passes runs in the faster
    memory layout of the network (``layout.py``), chosen on its first batch
    or by an earlier run; the choice goes into ``ctx.checks["layout"]``.
    """
    choice = _layout_choice(ctx, n)
    for lo, hi in batches(n, planner if planner is not None else ctx.planner(gradients=False)):
        xb = make_batch(lo, hi)
        if choice is None:
            choice, scores = choose_layout(ctx.module, xb, ctx.scores)
            ctx.checks["layout"] = dict(choice.record)
        else:
            scores = ctx.scores(choice.prepare(xb), choice.module)
        yield lo, hi, scores


def _layout_choice(ctx: MethodContext, n: int) -> LayoutChoice | None:
    """The layout choice to use: none to make yet (None), the cached one, or the network's own."""
    own = LayoutChoice(None, {"layout": "contiguous"})
    if ctx.windows is not None or n < layout.TRIAL_MIN_PASSES or not can_use_channels_last(ctx.module, ctx.x):
        return own
    cached = cached_choice(ctx.module, ctx.x)
    if cached is not None:
        ctx.checks["layout"] = {**cached.record, "decided": "by an earlier run"}
    return cached
