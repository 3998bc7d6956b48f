"""The faster memory layout of a convolutional network, for runs of many forward passes.

oneDNN's convolutions run a network very differently in PyTorch's default
(contiguous) layout and in the channels-last one: on this project's sample
3D classifier and segmenter a forward pass takes 0.45-0.5 times as long in
channels-last, on MONAI's SegResNet 0.76 times, while MONAI's UNet and
nnU-Net's PlainConvUNet (instance norm) are 10-20 % slower and DenseNet-121
is level (``benchmarks/README.md``, "Memory layout"). No rule tells in
advance, and PyTorch chooses no layout by itself on the CPU, hence this
hand-written trial: a run of at least :data:`TRIAL_MIN_PASSES` forward
passes times both layouts twice on its first batch, checks that they give
the same scores, and keeps channels-last only if it takes at most
:data:`FASTER_BY` of the time, so that timing noise does not flip the
choice. All the run's scores, including the first batch's, then come from
one layout.

The channels-last network is a private deep copy (the user's model is never
changed), kept with the decision per network (weakly referenced, keyed by
its weights and the input's channels and dimension, not its size, so that a
cohort of scans of many sizes holds one copy and one choice), so later runs
on the same network skip the trial. It costs one more set of weights while
the network lives, and only where channels-last won; a network of more than
:data:`MAX_COPY_BYTES` of weights is not copied.

Gradient passes gain as much (0.63 times the time per sample on the sample
classifier at a batch of two, 0.77 on SegResNet), but a trial of their own
would cost several gradient passes before the first progress event. A
method of at least :data:`TRIAL_MIN_GRADIENT_PASSES` gradient passes
(integrated gradients, SmoothGrad and its variants) therefore takes the
choice made for the network's forward passes (by an earlier run, by the
estimate every host makes before a run, or else by the forward trial then,
about four forward passes) and checks it with one more gradient pass of its
first batch.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from ...models.loaded_model import weights_key

#: A run with fewer forward passes keeps the model's own layout: the trial costs about three extra batches.
TRIAL_MIN_PASSES = 64
#: A method of fewer gradient passes keeps the model's own layout; from here on it takes the forward passes'
#: choice, checked by one more gradient pass.
TRIAL_MIN_GRADIENT_PASSES = 16
#: Channels-last is kept only at this fraction of the default layout's time or less.
FASTER_BY = 0.8
#: Largest difference of the two layouts' scores, relative to the largest score magnitude (float32 summation order).
AGREEMENT_RTOL = 1e-3
#: A network with more weights than this keeps its own layout rather than hold a second copy of them.
MAX_COPY_BYTES = 2**30


@dataclass(frozen=True)
class LayoutChoice:
    """The layout a network's forward passes run in, and why.

    Parameters
    ----------
    module : torch.nn.Module or None
        The channels-last copy, or None for the network's own layout.
    record : dict
        What the trial measured, for the run's provenance.
    """

    module: nn.Module | None
    record: dict[str, Any]

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """``xb`` in the chosen layout."""
        return xb if self.module is None else xb.contiguous(memory_format=_memory_format(xb.ndim))


_CHOICES: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, LayoutChoice]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _memory_format(ndim: int) -> torch.memory_format:
    return torch.channels_last if ndim == 4 else torch.channels_last_3d


def can_use_channels_last(module: Any, x: torch.Tensor) -> bool:
    """Whether a channels-last copy is worth trying: an ``nn.Module`` (not TorchScript) with a convolution of ``x``'s dimension,
    and weights of at most :data:`MAX_COPY_BYTES`."""
    if x.ndim not in (4, 5) or not isinstance(module, nn.Module) or isinstance(module, torch.jit.ScriptModule):
        return False
    kinds = (nn.Conv2d, nn.ConvTranspose2d) if x.ndim == 4 else (nn.Conv3d, nn.ConvTranspose3d)
    if not any(isinstance(m, kinds) for m in module.modules()):
        return False
    weights = sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers()))
    return weights <= MAX_COPY_BYTES


def _key(module: nn.Module, x: torch.Tensor) -> tuple:
    return (weights_key(module), int(x.shape[1]), x.ndim, str(x.dtype), str(x.device))


def cached_choice(module: nn.Module, x: torch.Tensor) -> LayoutChoice | None:
    """The choice an earlier run made for this network, its current weights and inputs like ``x`` (channels, dimension), if any."""
    try:
        with _LOCK:
            by_key = _CHOICES.get(module)
    except TypeError:  # a module that cannot be weakly referenced
        return None
    return None if by_key is None else by_key.get(_key(module, x))


def choose_layout(module: nn.Module, xb: torch.Tensor, scores: Callable[[torch.Tensor, nn.Module | None], torch.Tensor]) -> tuple[LayoutChoice, torch.Tensor]:
    """Time both layouts on the batch ``xb``; the choice and the scores of ``xb`` in the chosen layout.

    ``scores(batch, module)`` scores a batch with ``module`` (None: the
    network itself). The channels-last copy is dropped when it fails, gives
    other scores, or is not faster by the margin; the choice is cached for
    the network (see the module docstring).
    """
    own_times, own = _timed(lambda: scores(xb, None), xb.device)
    try:
        clone = copy.deepcopy(module).eval().to(memory_format=_memory_format(xb.ndim))
        xcl = xb.contiguous(memory_format=_memory_format(xb.ndim))
        cl_times, cl = _timed(lambda: scores(xcl, clone), xb.device)
    except Exception as err:  # any module may refuse to be copied or to run channels-last (e.g. a .view of its features)
        choice = LayoutChoice(None, {"layout": "contiguous", "channels_last": f"failed: {type(err).__name__}"})
        return _remember(module, xb, choice), own
    diff = difference(cl, own)
    record = {
        "contiguous_s": round(own_times[1], 4),
        "channels_last_s": round(cl_times[1], 4),
        "batch": int(xb.shape[0]),
        "max_score_difference": diff,
    }
    if not agrees(cl, own):
        choice = LayoutChoice(None, {"layout": "contiguous", "channels_last": "gave other scores", **record})
        return _remember(module, xb, choice), own
    if cl_times[1] <= FASTER_BY * own_times[1]:
        return _remember(module, xb, LayoutChoice(clone, {"layout": "channels_last", **record})), cl
    return _remember(module, xb, LayoutChoice(None, {"layout": "contiguous", **record})), own


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two results of the two layouts."""
    return float((a.float() - b.float()).abs().max()) if b.numel() else 0.0


def agrees(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` equals ``b`` within :data:`AGREEMENT_RTOL` of ``b``'s largest magnitude."""
    scale = float(b.abs().max()) if b.numel() else 0.0
    return difference(a, b) <= AGREEMENT_RTOL * max(scale, 1e-6)


def layout_for_probe(module: nn.Module, probe: torch.Tensor) -> LayoutChoice:
    """The layout a run on inputs like ``probe`` will use, choosing it now (on the raw output) if no run has.

    For the cost estimate (``estimate.py``), which times the passes of the
    layout the run will take; the run then finds the choice cached.
    """
    found = cached_choice(module, probe)
    if found is not None:
        return found

    def output(xb: torch.Tensor, m: nn.Module | None) -> torch.Tensor:
        with torch.inference_mode():
            out = (module if m is None else m)(xb)
        if not isinstance(out, torch.Tensor):  # a dict or tuple: the run's scores decide, not this probe
            raise _NotOneTensor
        return out.reshape(len(xb), -1)

    try:  # on a batch of two, as the run's first forward batch (one sample per batch hides channels-last's gain)
        return choose_layout(module, probe.repeat(2, *([1] * (probe.ndim - 1))), output)[0]
    except _NotOneTensor:  # keep the network's layout, and do not ask again
        return _remember(module, probe, LayoutChoice(None, {"layout": "contiguous", "channels_last": "not tried: the output is not one tensor"}))
    except Exception:  # the model fails on the probe: the estimate or the run reports that itself
        return LayoutChoice(None, {"layout": "contiguous"})


class _NotOneTensor(Exception):
    """The network's output is not one tensor, so the probe cannot compare the two layouts."""


def _timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[tuple[float, float], torch.Tensor]:
    """Run ``fn`` twice (the first call warms oneDNN's kernels for the shape); both times and the second result."""
    times = []
    for _ in range(2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return (times[0], times[1]), out


def _remember(module: nn.Module, x: torch.Tensor, choice: LayoutChoice) -> LayoutChoice:
    key = _key(module, x)
    try:
        with _LOCK:
            kept = {k: c for k, c in _CHOICES.get(module, {}).items() if k[0] == key[0]}  # forget older weights
            kept[key] = choice
            _CHOICES[module] = kept
    except TypeError:
        pass
    return choice
