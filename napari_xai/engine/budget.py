"""Batch sizes from a memory budget and a time slice.

Perturbation and path methods run many forward (and backward) passes. Each
batch is sized so that (a) its activations fit the memory budget, measured
with a probe pass, and (b) it takes about ``slice_seconds``, so that a cancel
request (honoured between batches) is felt within a second; a batch holds
two samples while two take under :data:`PAIR_SECONDS`, since one sample per
batch leaves CPU threads idle.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import torch
import torch.nn as nn

from .call_hooks import run_local_forward_hooks
from .errors import MemoryBudgetError

#: Default memory budget for the working set of one batch, in MiB.
DEFAULT_BUDGET_MB = 2048
#: Target wall time of one batch, in seconds.
SLICE_SECONDS = 0.3
#: A batch holds two samples, even past the time slice, while two are expected to take at most this long:
#: on a CPU a batch of one leaves threads idle in parts of each pass (on the sample 3D classifier a
#: gradient pass of two samples takes about 1.5 times one's time, ``benchmarks/README.md``), and a
#: cancel between batches is still felt within a second.
PAIR_SECONDS = 0.8


def batch_for_time(seconds_per_sample: float, slice_seconds: float = SLICE_SECONDS) -> int:
    """Samples per batch for a time slice: as many as fit it, and two while two fit :data:`PAIR_SECONDS`."""
    n = int(slice_seconds / max(seconds_per_sample, 1e-6))
    return max(n, 2 if 2 * seconds_per_sample <= PAIR_SECONDS else 1)


def default_budget_mb() -> int:
    """The budget from ``NAPARI_XAI_MEMORY_BUDGET_MB``, else :data:`DEFAULT_BUDGET_MB`."""
    try:
        return max(1, int(os.environ.get("NAPARI_XAI_MEMORY_BUDGET_MB", DEFAULT_BUDGET_MB)))
    except ValueError:
        return DEFAULT_BUDGET_MB


@contextlib.contextmanager
def counted_activations(module: nn.Module) -> Iterator[list[int]]:
    """Count the bytes of every leaf module's output in the forward passes this thread runs in the block.

    Yields a one-element list holding the count so far, so that a pass the
    caller runs anyway doubles as the planner's probe (see :func:`activation_bytes`).
    """
    total = [0]

    def hook(_m: nn.Module, _inp: object, out: object) -> None:
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    leaves = [m for m in module.modules() if not list(m.children())]
    with run_local_forward_hooks((m, hook) for m in leaves):
        yield total


def activation_bytes(module: nn.Module, x: torch.Tensor) -> int | None:
    """Bytes of every leaf module's output for one forward pass of ``x`` (None if hooks are unavailable)."""
    if isinstance(module, torch.jit.ScriptModule):  # TorchScript modules take no hooks
        return None
    with counted_activations(module) as total, torch.no_grad():
        module(x)
    return total[0]


class BatchPlanner:
    """Decides how many samples go into the next batch.

    Parameters
    ----------
    bytes_per_sample : int
        Estimated working memory of one sample.
    budget_mb : int
        Memory budget for one batch.
    max_batch : int, optional
        Hard cap (e.g. 1 for a model exported with a static batch).
    slice_seconds : float
        Target wall time of one batch.
    first_batch : int
        Size of the first batch, before any batch was timed (1 for gradient
        passes, each of which can take a large part of a second on a 3D
        input; 2 for forward passes).

    Raises
    ------
    MemoryBudgetError
        One sample alone exceeds the budget.
    """

    def __init__(self, bytes_per_sample: int, budget_mb: int, max_batch: int | None = None, slice_seconds: float = SLICE_SECONDS, first_batch: int = 2) -> None:
        self.bytes_per_sample = max(1, int(bytes_per_sample))
        self.budget_mb = budget_mb
        budget = budget_mb * 2**20
        if self.bytes_per_sample > budget:
            need = -(-self.bytes_per_sample // 2**20)
            raise MemoryBudgetError(
                f"One pass of this model on this image needs about {need} MiB, over the memory budget of {budget_mb} MiB.",
                f"Raise the budget (memory_budget_mb={need * 2} or NAPARI_XAI_MEMORY_BUDGET_MB), "
                "or give the model a coarser input_spacing / smaller input_size in its spec.",
            )
        self.memory_cap = max(1, budget // self.bytes_per_sample)
        if max_batch is not None:
            self.memory_cap = min(self.memory_cap, max_batch)
        self.slice_seconds = slice_seconds
        self.first_batch = max(1, int(first_batch))
        self._seconds_per_sample: float | None = None
        self._started: float | None = None
        self._started_n = 0

    def next_size(self, remaining: int) -> int:
        """Size of the next batch (at least 1, at most ``remaining``); starts the clock."""
        if self._seconds_per_sample is None:
            n = min(self.memory_cap, self.first_batch)
        else:
            n = max(1, min(self.memory_cap, batch_for_time(self._seconds_per_sample, self.slice_seconds)))
        n = max(1, min(n, remaining))
        self._started, self._started_n = time.perf_counter(), n
        return n

    def done(self) -> None:
        """Record the wall time of the batch begun by the last :meth:`next_size`."""
        if self._started is None:
            return
        per = (time.perf_counter() - self._started) / self._started_n
        self._seconds_per_sample = per if self._seconds_per_sample is None else 0.5 * (per + self._seconds_per_sample)
        self._started = None


def batches(total: int, planner: BatchPlanner):
    """Yield ``(start, stop)`` index ranges covering ``range(total)``, sized by ``planner``.

    The caller does its work for a range, then the next range is sized with
    the time that work took.
    """
    start = 0
    while start < total:
        n = planner.next_size(total - start)
        yield start, start + n
        planner.done()
        start += n


@contextlib.contextmanager
def gradient_budget(budget_mb: int, module: nn.Module | None = None) -> Iterator[None]:
    """Stop a gradient pass whose tensors saved for backward outgrow the budget.

    Counts, as the forward pass runs, the bytes of every distinct storage
    autograd keeps for the backward pass (the parameters of ``module``, part
    of the model's own size, are not counted) and raises
    :class:`MemoryBudgetError` as soon as they exceed ``budget_mb``, before
    the pass allocates more. Single-pass methods get the same bound as the
    batched ones, whose batches are sized to stay well inside it.

    Raises
    ------
    MemoryBudgetError
        The saved tensors exceed the budget.
    """
    limit = max(1, int(budget_mb)) * 2**20
    skip = {p.untyped_storage().data_ptr() for p in module.parameters()} if module is not None else set()
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and key not in skip:
            seen.add(key)
            total += storage.nbytes()
            if total > limit:
                raise MemoryBudgetError(
                    f"A gradient pass of this model on this image keeps more than the memory budget of {budget_mb} MiB "
                    "of activations for its backward pass; it was stopped there.",
                    f"Raise the budget (memory_budget_mb or NAPARI_XAI_MEMORY_BUDGET_MB; estimate() gives the peak), "
                    "give a fully convolutional network a sliding_window in its spec so it runs window by window, "
                    "or give the spec a coarser input_spacing.",
                )
        # Detached, never ``t`` itself: for a saved output (ReLU's result, an in-place LeakyReLU's) ``t``
        # carries the grad_fn that owns this saved tensor, a cycle through C++ that no gc.collect() breaks.
        # A backward over the whole graph frees it, but a layer-gradient pass (Grad-CAM's) never runs the
        # nodes below the layer, so each pass's graph stayed alive: 1.5 GiB per group of nine 64^3 windows
        # of an nnU-Net-style U-Net. Autograd sets the grad_fn back on unpack, so nothing else changes
        # (the caveat of pytorch/pytorch#115255, documented in #153049).
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield
