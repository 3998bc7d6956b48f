"""Activation checkpointing for networks that must see the whole volume at once.

A gradient pass keeps, for its backward pass, every activation autograd
saves. A network run by sliding windows (``methods/windowed_model.py``) bounds that
by the window; one that must see the whole volume (a classifier, or a
segmentation network without a ``sliding_window`` in its spec) cannot. Its
gradient pass then runs the network as *checkpointed segments*
(``torch.utils.checkpoint``, non-reentrant): during the forward pass only a
segment's outputs are kept, and its inner activations are recomputed, one
segment at a time, during the backward pass. The gradient is the same (the
segments are run again with the same weights and inputs); the cost is about
one more forward pass.

Segments are chosen from one no-gradient probe pass:

- start with the modules the network's ``forward`` calls directly (its
  top-level children, looking through never-called containers such as
  ``ModuleList``);
- while the estimated peak is over the budget, split the segment with the
  largest inner activations into the modules it calls.

The estimate for one sample is, with ``F`` the gradient-pass factor of leaf
outputs (``methods/toolkit/context.GRADIENT_MEMORY_FACTOR``)::

    F * (leaf outputs outside every segment) + (outputs of every segment)
      + F * (inner leaf outputs of the largest segment)

(the outside activations kept as usual, the segments' outputs kept as the
next segments' inputs, and one segment recomputed at a time).

The run's network is a structural copy of the model that shares its
parameters and buffers (no weights are copied), with each segment's
``forward`` wrapped in ``checkpoint``: the model itself is never changed, so
another run on it in another thread sees the network as it was.
"""

from __future__ import annotations

import copy
import functools
import itertools
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .call_hooks import run_local_forward_hooks

#: Methods whose gradient passes all go through ``MethodContext.gradients`` (and so may run checkpointed).
CHECKPOINTED_METHODS = frozenset(
    {"vanilla_gradient", "input_x_gradient", "integrated_gradients", "smoothgrad", "smoothgrad_sq", "vargrad"}
)


@dataclass
class CheckpointPlan:
    """The segments a gradient pass runs checkpointed, and the estimates behind the choice.

    Attributes
    ----------
    segments : list of str
        Dotted names of the modules each run as one checkpointed segment.
    plain_bytes : int
        Estimated gradient-pass memory of one sample without checkpointing.
    peak_bytes : int
        The same with these segments checkpointed.
    fits : bool
        Whether ``peak_bytes`` is within the room it was planned for.
    """

    segments: list[str]
    plain_bytes: int
    peak_bytes: int
    fits: bool
    notes: dict = field(default_factory=dict)


def _tensor_bytes(out: object) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_tensor_bytes(o) for o in out)
    if isinstance(out, dict):
        return sum(_tensor_bytes(o) for o in out.values())
    return 0


def _profile(module: nn.Module, x: torch.Tensor) -> tuple[dict[str, int], dict[str, int]]:
    """Output bytes of every module the forward pass calls (summed over calls), and of every leaf module's."""
    outputs: dict[str, int] = {}
    leaves: dict[str, int] = {}
    pairs = []
    for name, m in module.named_modules():
        is_leaf = not list(m.children())

        def hook(_m: nn.Module, _i: object, out: object, name: str = name, is_leaf: bool = is_leaf) -> None:
            n = _tensor_bytes(out)
            outputs[name] = outputs.get(name, 0) + n
            if is_leaf:
                leaves[name] = leaves.get(name, 0) + n

        pairs.append((m, hook))
    with run_local_forward_hooks(pairs), torch.no_grad():
        module(x)
    return outputs, leaves


def _inner(name: str, leaves: dict[str, int]) -> int:
    """Leaf output bytes inside the module ``name`` (the module itself, if it is a leaf)."""
    prefix = name + "."
    return sum(n for leaf, n in leaves.items() if leaf == name or leaf.startswith(prefix) or name == "")


def _called_children(module: nn.Module, name: str, outputs: dict[str, int]) -> list[str]:
    """The modules directly called under ``name``: its children, looking through containers never called."""
    found: list[str] = []
    for child, _ in module.get_submodule(name).named_children() if name else module.named_children():
        full = f"{name}.{child}" if name else child
        if full in outputs:
            found.append(full)
        else:
            found.extend(_called_children(module, full, outputs))
    return found


def plan_checkpointing(module: nn.Module, x: torch.Tensor, room_bytes: int, factor: float) -> CheckpointPlan:
    """Choose checkpointed segments of ``module`` so that one gradient pass on ``x`` fits ``room_bytes``.

    Parameters
    ----------
    module : torch.nn.Module
        The network (in eval mode; it is run once without gradients).
    x : torch.Tensor
        One sample's input ``(1, C, *spatial)``.
    room_bytes : int
        Memory the gradient pass may use.
    factor : float
        Working memory of a gradient pass relative to the leaf outputs it keeps.

    Returns
    -------
    CheckpointPlan
        The best split found; ``fits`` says whether it is within ``room_bytes``.
    """
    outputs, leaves = _profile(module, x)
    total = sum(leaves.values())
    plain = int(factor * total)

    def peak(segments: list[str]) -> int:
        inner = {s: _inner(s, leaves) for s in segments}
        outside = total - sum(inner.values())
        return int(factor * outside + sum(outputs.get(s, 0) for s in segments) + factor * max(inner.values(), default=0))

    segments = _called_children(module, "", outputs)
    best = (peak(segments), list(segments))
    while best[0] > room_bytes:
        splittable = [s for s in segments if _called_children(module, s, outputs)]
        if not splittable:
            break
        largest = max(splittable, key=lambda s: _inner(s, leaves))
        i = segments.index(largest)
        segments = segments[:i] + _called_children(module, largest, outputs) + segments[i + 1:]
        estimate = peak(segments)
        if estimate < best[0]:
            best = (estimate, list(segments))
    return CheckpointPlan(best[1], plain, best[0], best[0] <= room_bytes, {"leaf_output_bytes": total})


def checkpointed(module: nn.Module, segments: list[str]) -> nn.Module:
    """A copy of ``module`` sharing its parameters and buffers, whose ``segments`` run under ``checkpoint``.

    Raises
    ------
    TypeError, RuntimeError
        The network cannot be copied (e.g. it holds objects that refuse ``deepcopy``).
    """
    shared = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    clone = copy.deepcopy(module, shared)
    for name in segments:
        seg = clone.get_submodule(name)
        seg.forward = functools.partial(_checkpointed_call, seg.forward)
    return clone


def _checkpointed_call(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
