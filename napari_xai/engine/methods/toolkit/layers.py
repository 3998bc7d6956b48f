"""Finding and hooking the layer that class activation methods read."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

from ...budget import gradient_budget
from ...call_hooks import run_local_forward_hooks
from ...errors import MethodError
from ...registry import ParamSpec
from .context import MethodContext
from .gradients import checked_grad

#: The ``layer`` parameter every class activation method takes.
LAYER_PARAM = ParamSpec("layer", str, "", "Layer to read (dotted name); empty: the spec's cam_layer, else the last layer with spatial output.")


def find_cam_layer(ctx: MethodContext, requested: str) -> str:
    """The layer to use: ``requested``, else the spec's ``cam_layer``, else the last layer with spatial output.

    Raises
    ------
    MethodError
        No layer has spatial output, or the model takes no hooks.
    """
    if requested or ctx.model.spec.cam_layer:
        name = requested or ctx.model.spec.cam_layer
        ctx.model.get_layer(name)  # an unknown name is refused before any pass
        if ctx.windows is not None:
            # a windowed run reads the layer window by window: one window's probe pass is cheap beside them
            _check_spatial_output(ctx, name)
        # otherwise the method's own pass checks what it captures (require_spatial): no pass of its own
        return name
    ctx.model.get_layer("")  # raises the TorchScript message where hooks cannot work
    # (name, output) in the order outputs are produced; a container and its
    # last child return the same tensor, and the child's name is the one to show.
    spatial: list[tuple[str, torch.Tensor]] = []  # tensors kept alive so identity is meaningful

    def make_hook(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if _is_spatial(out, ctx.x.ndim):
                spatial.append((name, out))

        return hook

    hooks = [(module, make_hook(name)) for name, module in ctx.model.module.named_modules() if name]
    with run_local_forward_hooks(hooks), torch.inference_mode():
        ctx.model.module(ctx.probe_input)  # one window of a sliding-window model has the same layers
    if not spatial:
        raise MethodError(
            "No layer of this model has a spatial output, so there is nothing for a class activation map to read.",
            "Name a convolutional layer with the 'layer' parameter or the spec's cam_layer, or use a gradient or perturbation method.",
        )
    last_tensor = spatial[-1][1]
    return next(name for name, tensor in spatial if tensor is last_tensor)


def _is_spatial(out: object, ndim: int) -> bool:
    return isinstance(out, torch.Tensor) and out.ndim == ndim and max(out.shape[2:]) > 1


def _check_spatial_output(ctx: MethodContext, name: str) -> None:
    """Refuse a named layer whose output on one probe pass is no feature map."""
    seen: list[object] = []
    with run_local_forward_hooks([(ctx.model.get_layer(name), lambda _m, _i, out: seen.append(out))]), torch.inference_mode():
        ctx.model.module(ctx.probe_input)
    require_spatial(ctx, name, seen[-1] if seen else None, ctx.probe_input)


def require_spatial(ctx: MethodContext, name: str, out: object, x: torch.Tensor | None = None) -> None:
    """Refuse a layer whose output ``out`` (for the input ``x``, default the run's) is no feature map (a linear head, a pooled vector).

    Raises
    ------
    MethodError
        ``out`` is not a tensor with the input's spatial axes.
    """
    x = ctx.x if x is None else x
    if _is_spatial(out, x.ndim):
        return
    where = "the spec's cam_layer" if name == ctx.model.spec.cam_layer else "the 'layer' parameter"
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__ if out is not None else "nothing"
    raise MethodError(
        f"Layer {name!r} (from {where}) has no spatial output (it gives {shape} for an input of shape "
        f"{tuple(x.shape)}), so there is no map for a class activation method to read.",
        "Name a convolutional layer whose output keeps the image's spatial axes, or leave the layer empty to use "
        "the last such layer.",
    )


@contextlib.contextmanager
def capture_activation(layer: nn.Module, leaf: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Record the layer's output of the next forward pass in ``store['activation']`` (this thread's passes only).

    With ``leaf`` the layer's output is replaced by a detached leaf that
    requires grad (the network goes on from a copy of it), so a backward from
    the score stops at the layer; and from the layer on this thread records
    the graph (grad mode is thread-local), so a caller may run the pass under
    ``torch.no_grad``: the part of the network below the layer, which the
    backward never reaches, then keeps no tensors for it. The caller's grad
    mode comes back when its ``no_grad`` block ends.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: object, out: object) -> torch.Tensor | None:
        if not isinstance(out, torch.Tensor):
            raise MethodError(
                f"The chosen layer returns a {type(out).__name__}, not a tensor.",
                "Choose a layer whose output is one feature map tensor (e.g. a convolution or activation).",
            )
        if not leaf:
            store["activation"] = out
            return None
        store["activation"] = out.detach().requires_grad_(True)
        torch.set_grad_enabled(True)
        # the network goes on from a copy, so that an in-place op after the layer
        # (ReLU(inplace=True)) neither fails on the leaf nor changes the activation read
        return store["activation"].clone()

    with run_local_forward_hooks([(layer, hook)]):
        yield store


def activation_and_gradient(ctx: MethodContext, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's activation ``A``, the gradient of the target score w.r.t. it, and the score (batch of one).

    Raises
    ------
    MethodError
        The score does not depend differentiably on the layer.
    """
    # The layer's output becomes the leaf the gradient is taken for, so the
    # backward never runs below the layer (nor into the input).
    layer = ctx.model.get_layer(name)
    # no_grad below the layer: its hook turns recording on for the rest of the pass
    with capture_activation(layer, leaf=True) as store, torch.no_grad(), gradient_budget(ctx.budget_mb, ctx.model.module):
        out = ctx.forward(ctx.x)
        if "activation" not in store:
            raise MethodError(f"The layer {name!r} was not run by the model's forward pass.", "Choose a layer the model uses.")
        act = store["activation"]
        require_spatial(ctx, name, act)
        score = ctx.resolve_from(out).score(out)
        (grad,) = checked_grad(score.sum(), act)
    return act.detach(), grad, score.detach()
