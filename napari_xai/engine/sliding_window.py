"""Sliding-window inference, defined as ``monai.inferers.sliding_window_inference`` defines it.

A model spec's ``sliding_window`` field says that the network is fully
convolutional and sees the model-space volume through windows of
``roi_size`` voxels. The output over the whole volume is then, exactly as in
MONAI's function:

1. the volume is padded (symmetrically, ``padding_mode`` / ``cval``) on every
   axis where it is smaller than the window;
2. windows start every ``int(roi * (1 - overlap))`` voxels (at least 1; a
   whole axis when the window spans it), the last one moved back to end at
   the border (MONAI's ``dense_patch_slices``);
3. each window's output is multiplied by an importance map (ones, or a
   Gaussian of sigma ``sigma_scale * roi`` clamped below at
   ``max(min, 1e-3)``; MONAI's ``compute_importance_map``), summed onto the
   volume, and divided by the summed importance maps;
4. the padding is cropped off.

Written here rather than calling MONAI so that MONAI stays an optional extra
and so that the engine can run the same windows one at a time for
attribution (see ``methods/windowed_model.py``); ``tests/engine/test_sliding_window.py``
checks the definition against MONAI's function itself.

With ``style: "nnunet"`` (set by the nnU-Net loader) steps 2 and 3 are
nnU-Net's predictor instead (``nnunetv2/inference/sliding_window_prediction.py``):
as many windows per axis as a step of ``roi * (1 - overlap)`` needs, spread
evenly from the first position to the last, and a Gaussian that peaks on
voxel ``roi // 2`` and is raised only where it is exactly zero;
``tests/engine/models/test_nnunet.py`` checks it against nnU-Net's loop, transcribed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ModelError
from .registry import per_axis


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of a sliding-window run lie.

    Parameters
    ----------
    shape : tuple of int
        The model-space volume's spatial shape.
    padded_shape : tuple of int
        The shape after padding to at least ``roi`` per axis.
    pad : tuple of int
        ``torch.nn.functional.pad`` widths (last axis first, low then high).
    roi : tuple of int
        Window size.
    starts : tuple of tuple of int
        Start of every window on the padded grid, in MONAI's order.
    settings : dict
        The spec's validated ``sliding_window`` field.
    """

    shape: tuple[int, ...]
    padded_shape: tuple[int, ...]
    pad: tuple[int, ...]
    roi: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    settings: dict[str, Any]

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    @property
    def pad_low(self) -> tuple[int, ...]:
        """Padding before each axis, in (z, y, x) order."""
        dim = len(self.shape)
        return tuple(self.pad[2 * (dim - 1 - i)] for i in range(dim))

    @property
    def padded(self) -> bool:
        return any(self.pad)

    def window(self, i: int) -> tuple[slice, ...]:
        """Spatial slices of window ``i`` on the padded grid."""
        return tuple(slice(s, s + r) for s, r in zip(self.starts[i], self.roi))

    def crop(self) -> tuple[slice, ...]:
        """Spatial slices of the original volume on the padded grid."""
        return tuple(slice(lo, lo + n) for lo, n in zip(self.pad_low, self.shape))

    def overlapping(self, box: tuple[slice, ...]) -> list[int]:
        """Windows whose extent meets ``box`` (slices on the padded grid)."""
        return [
            i for i, start in enumerate(self.starts)
            if all(s < b.stop and b.start < s + r for s, r, b in zip(start, self.roi, box))
        ]


def plan_windows(shape: tuple[int, ...], settings: dict[str, Any]) -> WindowPlan:
    """The windows MONAI's ``sliding_window_inference`` visits on a volume of ``shape``.

    Raises
    ------
    ModelError
        ``roi_size`` has the wrong number of axes for the volume.
    """
    dim = len(shape)
    roi = tuple(int(v) for v in settings["roi_size"])
    if len(roi) != dim:
        raise ModelError(
            f"The spec's sliding_window.roi_size {list(roi)} has {len(roi)} axes but the model-space volume {tuple(shape)} has {dim}.",
            "Give one roi_size entry per spatial axis, in (z, y, x) order.",
        )
    overlap = per_axis(settings["overlap"], dim, "overlap", "sliding_window")
    pad: list[int] = []
    for n, r in zip(reversed(shape), reversed(roi)):  # torch's pad order: last axis first
        diff = max(r - n, 0)
        pad.extend([diff // 2, diff - diff // 2])
    padded = tuple(max(n, r) for n, r in zip(shape, roi))
    axes = []
    for n, r, o in zip(padded, roi, overlap):
        if settings.get("style") == "nnunet":
            axes.append(_nnunet_starts(n, r, 1 - o))
            continue
        step = r if r == n else max(int(r * (1 - o)), 1)
        count = next((d for d in range(math.ceil(n / step)) if d * step + r >= n), 0) + 1
        axes.append([d * step - max(d * step + r - n, 0) for d in range(count)])
    starts = tuple(tuple(int(v) for v in s) for s in _product(axes))
    return WindowPlan(tuple(shape), padded, tuple(pad), roi, starts, dict(settings))


def importance_map(plan: WindowPlan, device: torch.device | str = "cpu", size: tuple[int, ...] | None = None) -> torch.Tensor:
    """The window's blending weights (MONAI's ``compute_importance_map``), ``(*roi)`` float32.

    ``size`` gives the map for another grid of the same window (e.g. a
    layer's), with ``sigma_scale`` relative to that size.
    """
    size = tuple(size or plan.roi)
    if plan.settings["mode"] == "constant":
        return torch.ones(size, dtype=torch.float32, device=device)
    sigma_scale = per_axis(plan.settings["sigma_scale"], len(size), "sigma_scale", "sliding_window")
    if plan.settings.get("style") == "nnunet":
        return _nnunet_gaussian(size, sigma_scale).to(device)
    weights = None
    for i, (n, s) in enumerate(zip(size, sigma_scale)):
        x = torch.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=torch.float32, device=device)
        g = torch.exp(x**2 / (-2 * (n * s) ** 2))
        weights = g if weights is None else weights.unsqueeze(-1) * g[(None,) * i]
    floor = max(float(weights.min()), 1e-3)
    return weights.clamp(min=floor)


def count_map(plan: WindowPlan, weights: torch.Tensor) -> torch.Tensor:
    """The summed importance of all windows on the padded grid, ``(*padded_shape)``."""
    total = torch.zeros(plan.padded_shape, dtype=weights.dtype, device=weights.device)
    for i in range(plan.n_windows):
        total[plan.window(i)] += weights
    return total


def pad_volume(x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    """``x`` ``(N, C, *shape)`` padded as the plan says (no copy when nothing is padded)."""
    if not plan.padded:
        return x
    mode = plan.settings["padding_mode"]
    kwargs = {"value": plan.settings["cval"]} if mode == "constant" else {}
    return F.pad(x, list(plan.pad), mode=mode, **kwargs)


def window_batches(indices: list[int], size: int) -> Iterator[list[int]]:
    """``indices`` in consecutive groups of at most ``size``."""
    for lo in range(0, len(indices), max(1, size)):
        yield indices[lo:lo + max(1, size)]


def sliding_window_forward(
    module: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    plan: WindowPlan,
    batch: int = 1,
    on_batch: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The network's output over the whole volume, ``(N, K, *shape)``, window by window.

    Runs under whatever grad mode the caller set. ``batch`` windows go
    through the network at a time (the result does not depend on it);
    ``on_batch(done, total)`` is called after each group.

    Raises
    ------
    ModelError
        The network's output for a window is not a map on the window's grid.
    """
    xp = pad_volume(x, plan)
    weights = importance_map(plan, x.device).to(x.dtype)
    out: torch.Tensor | None = None
    order = list(range(plan.n_windows))
    for group in window_batches(order, batch):
        for n in range(x.shape[0]):
            win = torch.cat([xp[(slice(n, n + 1), slice(None)) + plan.window(i)] for i in group])
            pred = module(win)
            check_window_output(pred, plan)
            if out is None:
                out = torch.zeros((x.shape[0], pred.shape[1]) + plan.padded_shape, dtype=x.dtype, device=x.device)
            for j, i in enumerate(group):
                out[(slice(n, n + 1), slice(None)) + plan.window(i)] += pred[j:j + 1] * weights
        if on_batch is not None:
            on_batch(group[-1] + 1, plan.n_windows)
    assert out is not None
    out = out / count_map(plan, weights)
    return out[(slice(None), slice(None)) + plan.crop()]


def check_window_output(pred: Any, plan: WindowPlan) -> None:
    """Raise :class:`ModelError` unless ``pred`` is ``(B, K, *roi)``."""
    if not isinstance(pred, torch.Tensor) or pred.ndim != len(plan.roi) + 2 or tuple(pred.shape[2:]) != plan.roi:
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ModelError(
            f"The spec says the model runs by sliding windows of {plan.roi}, but its output for one window is {shape}, "
            "not a map on the window's grid.",
            "Use sliding_window only for fully convolutional segmentation networks whose output has the input's size; "
            "remove it from the spec otherwise.",
        )


def _nnunet_starts(n: int, roi: int, step_fraction: float) -> list[int]:
    """nnU-Net's ``compute_steps_for_sliding_window`` on one axis: as many windows as a step of
    ``roi * step_fraction`` needs, spread evenly from 0 to ``n - roi`` (rounded)."""
    count = int(math.ceil((n - roi) / (roi * step_fraction))) + 1 if n > roi else 1
    if count == 1:
        return [0]
    actual = (n - roi) / (count - 1)
    return [int(round(actual * i)) for i in range(count)]


def _nnunet_gaussian(size: tuple[int, ...], sigma_scale: tuple[float, ...]) -> torch.Tensor:
    """nnU-Net's ``compute_gaussian``: a delta on voxel ``n // 2`` smoothed by ``scipy.ndimage.gaussian_filter``
    (sigma ``n * sigma_scale``, truncated at 4 sigma), peak 1, zeros raised to the smallest value.

    nnU-Net scales the peak to 10 and blends in float16 on the GPU; the scale cancels in the blend, and the
    engine blends in float32.
    """
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(size)
    delta[tuple(n // 2 for n in size)] = 1.0
    g = gaussian_filter(delta, [n * s for n, s in zip(size, sigma_scale)], 0, mode="constant", cval=0)
    g = g / g.max()
    g[g == 0] = g[g > 0].min()
    return torch.from_numpy(g.astype(np.float32))


def _product(axes: list[list[int]]) -> Iterator[tuple[int, ...]]:
    """Every combination, first axis slowest (numpy's ``meshgrid(indexing='ij')`` order, as MONAI)."""
    if not axes:
        yield ()
        return
    for head in axes[0]:
        for tail in _product(axes[1:]):
            yield (head,) + tail
