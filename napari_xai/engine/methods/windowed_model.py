"""Attribution window by window for a network run by sliding windows.

The target score of a class over a region is linear in the blended output
(``sliding_window.py``), so it splits over the windows::

    S(x) = sum_w S_w(x_w),   S_w(x_w) = sum_u c_w(u) f(x_w)[k, u],
    c_w(u) = region(w + u) * importance(u) / count(w + u)   (/ |region| for "mean")

with ``x_w`` the padded input under window ``w``. Only windows whose blended
output meets the region (``c_w`` not all zero, the *carrying* windows)
contribute, and each can be run on its own:

- scores and gradients: each carrying window is run (and back-propagated)
  alone, its input gradient added onto the padded grid and carried back
  through the padding (autograd through ``F.pad``);
- Grad-CAM: the layer's gradients of every carrying window, summed, give the
  channel weights; the layer's activations of every window, upsampled to the
  window and blended with the output's weights, give the stitched
  activations they weigh (see :meth:`WindowedModel.grad_cam`);
- occlusion: a patch changes the score only through the carrying windows
  whose input holds part of it, and only those are run again.

Each is equal (up to float rounding) to autograd through the whole
sliding-window forward; ``tests/engine/test_sliding_window.py`` checks this against
MONAI's ``sliding_window_inference``. Windows run in groups sized from the
memory budget, so memory does not grow with the volume beyond a few
volume-sized buffers (input, count map, gradient).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..budget import activation_bytes, gradient_budget
from ..errors import MemoryBudgetError, ModelError, XAIError
from ..models.loading import LoadedModel
from ..models.spec import ModelSpec
from ..sliding_window import WindowPlan, check_window_output, importance_map, pad_volume, plan_windows, window_batches
from ..targets import ResolvedTarget, resolve_target
from ..prepare import model_failure
from .toolkit.gradients import checked_grad, not_differentiable
from .toolkit.layers import capture_activation
from .toolkit.resample import upsample

#: Working memory of a window's gradient pass relative to the summed outputs of its leaf modules:
#: measured on MONAI's SegResNet (96^3 windows: 650 MiB of outputs, 634 MiB more peak RSS for a
#: gradient pass), with room for the backward pass's own buffers. The saved tensors are also
#: bounded live by ``budget.gradient_budget``.
_GRADIENT_FACTOR = 1.5


def windowed_model(loaded: LoadedModel, x: torch.Tensor, budget_mb: int) -> "WindowedModel | None":
    """The run's :class:`WindowedModel` when the spec has ``sliding_window``, else None."""
    settings = loaded.spec.sliding_window
    if not settings:
        return None
    return WindowedModel(loaded.module, x, settings, budget_mb, loaded.max_batch)


class WindowedModel:
    """A network and one run's model-space input, seen through the spec's sliding windows.

    Parameters
    ----------
    module : torch.nn.Module
        The network (in eval mode for the run).
    x : torch.Tensor
        Model-space input ``(1, C, *spatial)``.
    settings : dict
        The spec's validated ``sliding_window`` field.
    budget_mb : int
        Memory budget of the run.
    max_batch : int, optional
        Largest batch the network takes.

    Raises
    ------
    MemoryBudgetError
        The volume's buffers plus one window's gradient pass exceed the budget.
    """

    def __init__(self, module: nn.Module, x: torch.Tensor, settings: dict[str, Any], budget_mb: int, max_batch: int | None = None) -> None:
        self.module = module
        self.x = x
        self.plan: WindowPlan = plan_windows(tuple(x.shape[2:]), settings)
        self.weights = importance_map(self.plan, x.device).to(x.dtype)
        self._counts: dict[tuple, torch.Tensor] = {}
        self.xp = pad_volume(x, self.plan)
        self.budget_mb = budget_mb
        self.max_batch = max_batch
        self.target: ResolvedTarget | None = None
        self.carrying: list[int] = []
        self._region_pad: torch.Tensor | None = None
        self._scale = 1.0
        self._base: dict[int, float] = {}
        self._cap: int | None = None

    # ------------------------------------------------------------------ windows and memory

    def window_input(self, i: int, source: torch.Tensor | None = None) -> torch.Tensor:
        """The padded input under window ``i`` ``(1, C, *roi)`` (of ``source``, default the run's input)."""
        src = self.xp if source is None else source
        return src[(slice(0, 1), slice(None)) + self.plan.window(i)]

    def probe_input(self) -> torch.Tensor:
        """One window's input, for measuring the network or finding its layers."""
        return self.window_input(0)

    def volume_bytes(self) -> int:
        """Bytes of the volume-sized buffers a run keeps: padded input, a gradient or map, one copy of the method's."""
        n = math.prod(self.plan.padded_shape) * self.x.shape[1] * self.x.element_size()
        return (n if self.plan.padded else 0) + 2 * n

    def window_cap(self) -> int:
        """How many windows fit one gradient group under the budget (at least 1, or a refusal)."""
        if self._cap is None:
            probe = self.probe_input()
            act = activation_bytes(self.module, probe)
            act = act if act is not None else 32 * probe.numel() * 4
            per_window = int(act * _GRADIENT_FACTOR) + 2 * probe.numel() * probe.element_size()
            room = self.budget_mb * 2**20 - self.volume_bytes()
            if per_window > room:
                need = -(-(per_window + self.volume_bytes()) // 2**20)
                raise MemoryBudgetError(
                    f"One sliding window of {self.plan.roi} voxels needs about {per_window // 2**20} MiB for a gradient pass, "
                    f"and the volume's buffers {self.volume_bytes() // 2**20} MiB: about {need} MiB, over the memory budget "
                    f"of {self.budget_mb} MiB.",
                    f"Raise the budget (memory_budget_mb={need * 2} or NAPARI_XAI_MEMORY_BUDGET_MB), or give the spec's "
                    "sliding_window a smaller roi_size, or the spec a coarser input_spacing.",
                )
            self._cap = max(1, room // per_window)
            if self.max_batch is not None:
                self._cap = min(self._cap, self.max_batch)
        return self._cap

    # ------------------------------------------------------------------ output and target

    def resolve(self, spec: ModelSpec, target: int | str | None, region_model: np.ndarray | None, reduce: str) -> ResolvedTarget:
        """The target, from the blended output where it is needed; sets the carrying windows.

        With a region only the windows meeting the region's bounding box are
        run; without one, every window (the predicted mask needs the whole output).

        Raises
        ------
        TargetError, ModelError
            As :func:`resolve_target`, or a target that is not a region of a segmentation output.
        """
        try:
            return self._resolve(spec, target, region_model, reduce)
        except XAIError:
            raise
        except Exception as err:  # any failure inside a user's model
            raise model_failure(err, self.probe_input()) from err

    def _resolve(self, spec: ModelSpec, target: int | str | None, region_model: np.ndarray | None, reduce: str) -> ResolvedTarget:
        shape = self.plan.shape
        if region_model is not None:
            box = _bounding_box(np.asarray(region_model, dtype=bool))
            out = self._blended(box)
            crop = (slice(None), slice(None)) + box
            resolved = resolve_target(out, self.x[crop], spec, target, np.asarray(region_model, dtype=bool)[box], reduce)
            resolved.score_value = float(resolved.score(out)[0])
            full = torch.zeros(shape, dtype=torch.bool)
            full[box] = resolved.region
            resolved.region = full
        else:
            out = self._blended(tuple(slice(0, n) for n in shape))
            resolved = resolve_target(out, self.x, spec, target, None, reduce)
            resolved.score_value = float(resolved.score(out)[0])
        if resolved.task != "segmentation":
            raise ModelError(
                f"The spec says the model runs by sliding windows, but its output was read as a {resolved.task} output.",
                "Sliding windows are for segmentation networks: set the spec's task to segmentation, or remove sliding_window.",
            )
        self.set_target(resolved)
        return resolved

    def set_target(self, resolved: ResolvedTarget) -> None:
        """Use ``resolved`` (a class over a region of the model grid) as the score of every window."""
        self.target = resolved
        region = resolved.region.to(self.x.device)
        self._region_pad = F.pad(region[None, None].float(), list(self.plan.pad))[0, 0] > 0 if self.plan.padded else region
        self._scale = 1.0 / float(region.sum()) if resolved.reduce == "mean" else 1.0
        box = tuple(slice(b.start + lo, b.stop + lo) for b, lo in zip(_bounding_box(region.cpu().numpy()), self.plan.pad_low))
        self.carrying = [i for i in self.plan.overlapping(box) if bool(self._region_pad[self.plan.window(i)].any())]
        self._base = {}

    def count(self, box: tuple[slice, ...]) -> torch.Tensor:
        """The summed importance of every window over a box of the padded grid (MONAI's count map, there only).

        Kept for the boxes the run uses (windows carrying the score), so that no
        volume-sized count map is held for a region target.
        """
        key = tuple((b.start, b.stop) for b in box)
        if key not in self._counts:
            total = torch.zeros(tuple(b.stop - b.start for b in box), dtype=self.weights.dtype, device=self.weights.device)
            for i in self.plan.overlapping(box):
                src, dst = _intersection(self.plan.window(i), box)
                total[dst] += self.weights[src]
            if len(self._counts) > 4 * max(1, len(self.carrying)):  # a bounded cache
                self._counts.clear()
            self._counts[key] = total
        return self._counts[key]

    def _coefficients(self, group: list[int]) -> torch.Tensor:
        """``c_w`` of each window in ``group``, ``(len(group), *roi)``."""
        rows = []
        for i in group:
            win = self.plan.window(i)
            rows.append(self._region_pad[win].to(self.weights.dtype) * self.weights / self.count(win))
        return torch.stack(rows) * self._scale

    def _window_scores(self, pred: torch.Tensor, group: list[int]) -> torch.Tensor:
        check_window_output(pred, self.plan)
        return (pred[:, self.target.class_index] * self._coefficients(group)).flatten(1).sum(dim=1)

    def _blended(self, box: tuple[slice, ...]) -> torch.Tensor:
        """The blended output ``(1, K, *box)`` over a box of the model grid, from the windows meeting it."""
        lo = self.plan.pad_low
        pbox = tuple(slice(b.start + p, b.stop + p) for b, p in zip(box, lo))
        out = None
        with torch.inference_mode():
            for group in window_batches(self.plan.overlapping(pbox), self._forward_cap()):
                pred = self.module(torch.cat([self.window_input(i) for i in group]))
                check_window_output(pred, self.plan)
                if out is None:
                    out = torch.zeros((1, pred.shape[1]) + tuple(b.stop - b.start for b in box), dtype=self.x.dtype, device=self.x.device)
                for j, i in enumerate(group):
                    src, dst = _intersection(self.plan.window(i), pbox)
                    out[(slice(None), slice(None)) + dst] += (pred[j:j + 1] * self.weights)[(slice(None), slice(None)) + src]
            out = out / self.count(pbox)
        if not torch.isfinite(out).all():
            raise ModelError(
                "The model's output on this image holds NaN or infinite values.",
                "Check the intensity transform in the spec (the model may expect normalised input) and the model itself.",
            )
        return out.clone()

    def _forward_cap(self) -> int:
        # as many as a gradient group: measured on a 512 x 512 x 300 Grad-CAM, larger groups of
        # inference passes pushed the peak past the budget
        return self.window_cap()

    # ------------------------------------------------------------------ what methods call

    def scores(self, xb: torch.Tensor) -> torch.Tensor:
        """Target scores ``(N,)`` of a batch of whole volumes, from the carrying windows only."""
        out = torch.zeros(xb.shape[0], dtype=torch.float64)
        with torch.inference_mode():
            for n in range(xb.shape[0]):
                xp = pad_volume(xb[n:n + 1], self.plan)
                for group in window_batches(self.carrying, self._forward_cap()):
                    pred = self.module(torch.cat([self.window_input(i, xp) for i in group]))
                    out[n] += float(self._window_scores(pred, group).double().sum())
        return out.float()

    def gradients(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the target score w.r.t. each volume of a batch, and the scores, window by window.

        Raises
        ------
        MethodError
            The score does not depend differentiably on the input.
        """
        grads, scores = [], torch.zeros(xb.shape[0], dtype=torch.float64)
        for n in range(xb.shape[0]):
            xp = pad_volume(xb[n:n + 1].detach(), self.plan)
            grad_pad = torch.zeros_like(xp)
            for group in window_batches(self.carrying, self.window_cap()):
                with torch.enable_grad(), gradient_budget(self.budget_mb - self.volume_bytes() // 2**20):
                    win = torch.cat([self.window_input(i, xp) for i in group]).detach().requires_grad_(True)
                    s = self._window_scores(self.module(win), group)
                    (g,) = checked_grad(s.sum(), win)
                for j, i in enumerate(group):
                    grad_pad[(slice(None), slice(None)) + self.plan.window(i)] += g[j:j + 1]
                scores[n] += float(s.detach().double().sum())
            grads.append(self._through_padding(xb[n:n + 1], grad_pad))
        return torch.cat(grads), scores.float()

    def _through_padding(self, x: torch.Tensor, grad_pad: torch.Tensor) -> torch.Tensor:
        """A gradient on the padded grid carried back to the unpadded input (reflected/replicated voxels add up)."""
        if not self.plan.padded:
            return grad_pad
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(pad_volume(xg, self.plan), xg, grad_pad)
        return g

    def occlusion_drops(self, boxes: list[tuple[slice, ...]], fill: float) -> torch.Tensor:
        """``f(x) - f(x with box b set to fill)`` for each box, re-running only the carrying windows the box reaches."""
        if not self._base:
            with torch.inference_mode():
                for group in window_batches(self.carrying, self._forward_cap()):
                    pred = self.module(torch.cat([self.window_input(i) for i in group]))
                    for i, s in zip(group, self._window_scores(pred, group).double().tolist()):
                        self._base[i] = s
        jobs: list[tuple[int, int, torch.Tensor]] = []  # (box, window, occluded voxels of the window)
        for b, box in enumerate(boxes):
            mask = self._padded_mask(box)
            for i in self.carrying:
                m = mask[self.plan.window(i)]
                if bool(m.any()):
                    jobs.append((b, i, m))
        drops = torch.zeros(len(boxes), dtype=torch.float64)
        with torch.inference_mode():
            for lo in range(0, len(jobs), self._forward_cap()):
                chunk = jobs[lo:lo + self._forward_cap()]
                win = torch.cat([torch.where(m, fill, self.window_input(i)) for _, i, m in chunk])
                group = [i for _, i, _ in chunk]
                s = self._window_scores(self.module(win), group).double()
                for (b, i, _), si in zip(chunk, s.tolist()):
                    drops[b] += self._base[i] - si
        return drops

    def _padded_mask(self, box: tuple[slice, ...]) -> torch.Tensor:
        """A box of the model grid as a mask on the padded grid (with its reflected/replicated copies)."""
        mode = self.plan.settings["padding_mode"]
        if not self.plan.padded or mode == "constant":
            mask = torch.zeros(self.plan.padded_shape, dtype=torch.bool, device=self.x.device)
            mask[tuple(slice(b.start + lo, b.stop + lo) for b, lo in zip(box, self.plan.pad_low))] = True
            return mask
        m = torch.zeros((1, 1) + self.plan.shape, dtype=torch.float32, device=self.x.device)
        m[(slice(None), slice(None)) + box] = 1
        return pad_volume(m, self.plan)[0, 0] > 0

    def _layer_passes(self, layer: nn.Module):
        """``(activation, gradient)`` of ``layer`` for each group of carrying windows (gradient of the target score)."""
        for group in window_batches(self.carrying, self.window_cap()):
            with capture_activation(layer) as store, torch.enable_grad(), gradient_budget(self.budget_mb - self.volume_bytes() // 2**20):
                win = torch.cat([self.window_input(i) for i in group]).detach().requires_grad_(True)
                s = self._window_scores(self.module(win), group)
                act = store["activation"]
                if not act.requires_grad:
                    raise not_differentiable()
                (g,) = checked_grad(s.sum(), act)
                result = (act.detach(), g.detach())
                # the graph below the layer is never traversed, so nothing frees its saved tensors but
                # dropping every reference to it: do so now, before the next group's forward (the saved
                # tensors hold no reference back to their nodes: budget.gradient_budget packs them detached)
                store.clear()
                del win, s, act, g
            yield result

    def grad_cam(self, layer: nn.Module, relu: bool) -> torch.Tensor:
        """Grad-CAM over the whole volume from the windows, ``(*shape)``.

        The layer's gradient summed over the carrying windows, divided by the
        number of layer voxels the volume spans (``prod(shape * layer / roi)``),
        gives the channel weights ``alpha_k`` (for a volume of one window,
        exactly Grad-CAM's spatial mean). The stitched activations are each
        window's layer output upsampled to the window's grid and blended like
        the output; the map is ``sum_k alpha_k A_k`` (ReLU'd), which by
        linearity is each window's weighted sum upsampled and blended.
        """
        grad_sum: torch.Tensor | None = None
        layer_shape: tuple[int, ...] = ()
        for act, g in self._layer_passes(layer):
            part = g.sum(dim=(0,) + tuple(range(2, g.ndim)))
            grad_sum = part if grad_sum is None else grad_sum + part
            layer_shape = tuple(act.shape[2:])
        n_layer = math.prod(n * a / r for n, a, r in zip(self.plan.shape, layer_shape, self.plan.roi))
        return self.stitched_cam(layer, grad_sum / n_layer, relu)

    def grad_cam_pp(self, layer: nn.Module, relu: bool) -> torch.Tensor:
        """Grad-CAM++ over the whole volume from the windows, ``(*shape)``.

        The layer voxels of the carrying windows stand for the layer's grid:
        with ``g`` and ``A`` each window's layer gradient and activation,
        ``alpha = g^2 / (2 g^2 + sum A g^3)`` and ``w_k = sum alpha relu(g)``,
        the sums over every carrying window's layer voxels (windows that carry
        no score have ``g = 0`` and add nothing). For a volume of one window
        this is exactly Grad-CAM++ (``cams.py``). The channel weights then
        weigh the stitched activations as in :meth:`grad_cam`.
        """
        grads: list[torch.Tensor] = []
        denom: torch.Tensor | None = None
        for act, g in self._layer_passes(layer):
            g = g.double()
            part = (act.double() * g.pow(3)).sum(dim=(0,) + tuple(range(2, g.ndim)))
            denom = part if denom is None else denom + part
            grads.append(g.float())
        shape = (1, -1) + (1,) * (grads[0].ndim - 2)
        weights = torch.zeros_like(denom)
        for g in grads:
            g = g.double()
            d = 2 * g.pow(2) + denom.view(shape)
            alpha = g.pow(2) / torch.where(d != 0, d, torch.ones_like(d))
            weights += (alpha * torch.relu(g)).sum(dim=(0,) + tuple(range(2, g.ndim)))
        return self.stitched_cam(layer, weights.to(self.x.dtype), relu)

    def stitched_cam(self, layer: nn.Module, channel_weights: torch.Tensor, relu: bool) -> torch.Tensor:
        """``sum_k w_k A_k`` over the whole volume, ``A`` the layer's activations stitched from every window."""
        w = channel_weights.view(1, -1, *([1] * len(self.plan.shape))).to(self.x.dtype)
        cam = torch.zeros(self.plan.padded_shape, dtype=self.x.dtype, device=self.x.device)
        with torch.inference_mode():
            for group in window_batches(list(range(self.plan.n_windows)), self._forward_cap()):
                with capture_activation(layer) as store:
                    self.module(torch.cat([self.window_input(i) for i in group]))
                weighted = upsample((w * store["activation"]).sum(dim=1, keepdim=True), self.plan.roi)
                for j, i in enumerate(group):
                    cam[self.plan.window(i)] += weighted[j, 0] * self.weights
            self._divide_by_count(cam)
            cam = cam[self.plan.crop()]
            return torch.relu_(cam) if relu else cam

    def _divide_by_count(self, blended: torch.Tensor) -> None:
        """Divide a blended volume on the padded grid by the windows' summed importance, in place, slab by slab.

        The count map is made for one slab (half a window deep) at a time, so
        no second volume-sized buffer is held (on 512 x 512 x 300, 315 MiB).
        """
        depth = max(1, self.plan.roi[0] // 2)
        rest = tuple(slice(0, n) for n in self.plan.padded_shape[1:])
        for z in range(0, self.plan.padded_shape[0], depth):
            box = (slice(z, min(z + depth, self.plan.padded_shape[0])),) + rest
            total = torch.zeros(tuple(b.stop - b.start for b in box), dtype=self.weights.dtype, device=self.weights.device)
            for i in self.plan.overlapping(box):
                src, dst = _intersection(self.plan.window(i), box)
                total[dst] += self.weights[src]
            blended[box] /= total


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)


def _intersection(window: tuple[slice, ...], box: tuple[slice, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where a window and a box overlap: slices relative to the window, and relative to the box."""
    lo = [max(w.start, b.start) for w, b in zip(window, box)]
    hi = [min(w.stop, b.stop) for w, b in zip(window, box)]
    src = tuple(slice(a - w.start, z - w.start) for a, z, w in zip(lo, hi, window))
    dst = tuple(slice(a - b.start, z - b.start) for a, z, b in zip(lo, hi, box))
    return src, dst
