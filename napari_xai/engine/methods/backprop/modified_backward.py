"""Modified backward passes on a private copy of the model (``toolkit.model_copy``).

Guided Backprop, DeconvNet, DeepLIFT and LRP change how gradients flow
through some layers. They do it on a deep copy of the user's module (the
user's model is never mutated, not even temporarily), with forward hooks that
route the layer's output through a small ``torch.autograd.Function`` whose
backward applies the method's rule. Hooks live on the copy only; the copy is
dropped when the run ends.

The copy costs one more set of weights in memory for the run.

Only ``nn.Module`` layers are seen: an activation written as a functional
call (``F.relu(x)``) inside ``forward`` keeps its ordinary gradient. This is
the same limitation Captum's hook-based methods have.
"""

from __future__ import annotations

from typing import Any, Generator

import torch
import torch.nn as nn

from ...call_hooks import output_hooks
from ...errors import MethodError
from ...progress import Progress
from ..toolkit.context import MethodContext
from ..toolkit.gradients import checked_grad, input_gradient, scored_leaf
from ..toolkit.model_copy import copy_model

#: Element-wise non-linearities DeepLIFT's rescale rule is applied to.
NONLINEAR = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.PReLU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Mish, nn.Hardtanh, nn.ReLU6)


class _GuidedReLU(torch.autograd.Function):
    """Identity on the ReLU's output; backward passes positive gradients where the input was positive."""

    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(inp)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (inp,) = ctx.saved_tensors
        return grad.clamp(min=0) * (inp > 0).to(grad.dtype), None


class _DeconvReLU(torch.autograd.Function):
    """Identity on the ReLU's output; backward is a ReLU of the gradient, ignoring the forward mask."""

    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad.clamp(min=0), None


RELU_RULES = {"guided": _GuidedReLU, "deconv": _DeconvReLU}


def relu_rule_map(rule: str, title: str):
    """``batch_map(ctx, params)`` (see ``MethodSpec.batch_map``) of the ReLU ``rule`` (``guided`` or ``deconv``).

    The map of each input of a batch is its raw, signed gradient through one
    private copy of the model with the rule (one pass each).
    """

    def batch_map(ctx: MethodContext, params: dict[str, Any]):
        clone = copy_model(ctx, title)
        return (lambda xb: relu_rule_gradients(ctx, clone, xb, rule)), 1

    return batch_map


def relu_rule_gradients(ctx: MethodContext, clone: nn.Module, xb: torch.Tensor, rule: str) -> torch.Tensor:
    """Input gradients of the target score through ``clone`` with the ReLU backward replaced by ``rule``."""
    fn = RELU_RULES[rule]
    with output_hooks(clone, (nn.ReLU,), lambda _m, i, o: fn.apply(i, o)):
        # the same forward as the model's: a one-pass method's target is resolved from it
        grad, _ = input_gradient(clone, lambda out: ctx.resolve_from(out).score(out), xb, copy_input=True)
    return grad


class _AgainstReference(torch.autograd.Function):
    """Identity on the layer's output, keeping its input and output and the reference's for a DeepLIFT backward."""

    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor, out: torch.Tensor, ref_in: torch.Tensor, ref_out: torch.Tensor, layer: nn.Module) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(inp, out, ref_in, ref_out)
        ctx.layer = layer
        return out.clone()


class _Rescale(_AgainstReference):
    """DeepLIFT's rescale rule: the multiplier is (f(x) - f(x0)) / (x - x0), the gradient where x == x0."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        inp, out, ref_in, ref_out = ctx.saved_tensors
        dx, dy = inp - ref_in, out - ref_out
        with torch.enable_grad():
            z = inp.detach().requires_grad_(True)
            (local,) = torch.autograd.grad(ctx.layer.forward(z).sum(), z)  # forward(): no hooks
        small = dx.abs() < 1e-7
        mult = torch.where(small, local, dy / torch.where(small, torch.ones_like(dx), dx))
        return grad * mult, None, None, None, None


#: Max pooling gets DeepLIFT's max-pool rule (as Captum's): completeness holds through it.
MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


class _MaxPoolRescale(_AgainstReference):
    """DeepLIFT through max pooling: each output's difference goes to the winning inputs.

    With ``M = max(y, y0)``, the part ``M - y0`` of an output's difference goes
    to the input's winner and ``y - M`` to the reference's winner (one of them
    is zero); the multiplier is that contribution over the input difference
    there, so contributions add up to ``sum g (y - y0)``. Scattering uses the
    pooling's own gradient, so overlapping windows accumulate correctly.
    """

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        inp, out, ref_in, ref_out = ctx.saved_tensors
        top = torch.maximum(out, ref_out)
        with torch.enable_grad():
            z = inp.detach().requires_grad_(True)
            z0 = ref_in.detach().requires_grad_(True)
            y, y0 = ctx.layer.forward(z), ctx.layer.forward(z0)  # forward(): no hooks
            (win,) = torch.autograd.grad(y, z, grad * (top - ref_out), retain_graph=True)
            (win0,) = torch.autograd.grad(y0, z0, grad * (out - top))
            (local,) = torch.autograd.grad(y, z, grad)
        dx = inp - ref_in
        small = dx.abs() < 1e-7
        mult = torch.where(small, local, (win + win0) / torch.where(small, torch.ones_like(dx), dx))
        return mult, None, None, None, None


def deeplift_multipliers(
    ctx: MethodContext, clone: nn.Module, xb: torch.Tensor, refs: torch.Tensor, between: Progress
) -> Generator[Progress, None, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """DeepLIFT (rescale) multipliers of the target score for inputs ``xb`` against references ``refs``.

    Two passes: the references' non-linearity inputs and outputs are recorded
    (call order), then the inputs run with every non-linearity's backward
    replaced by the rescale multiplier against its recorded reference. A
    generator: it yields ``between`` after the first pass, and an event after
    the rescaled forward, before its backward (grad mode is never held across
    a yield).

    Returns
    -------
    multipliers, scores, reference_scores
    """
    recorded: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(_m: nn.Module, i: torch.Tensor, o: torch.Tensor) -> None:
        recorded.append((i.detach(), o.detach()))

    kinds = NONLINEAR + MAXPOOLS
    with output_hooks(clone, kinds, record), torch.no_grad():
        ref_scores = ctx.target.score(clone(refs)).float()
    yield between
    calls = iter(range(len(recorded)))

    def rescale(layer: nn.Module, i: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        k = next(calls, None)
        if k is None or recorded[k][0].shape != i.shape:
            raise MethodError(
                "DeepLIFT: the model ran a different sequence of layers on the reference than on the scan.",
                "Use a model whose forward does not branch on its input, or Integrated Gradients.",
            )
        fn = _MaxPoolRescale if isinstance(layer, MAXPOOLS) else _Rescale
        return fn.apply(i, o, recorded[k][0], recorded[k][1], layer)

    # The modified forward and its backward are split by an event: on a 3D network each is a few
    # forward passes' worth of work, too long together for Cancel to wait (the graph, not grad mode,
    # is held across the yield).
    with output_hooks(clone, kinds, rescale), torch.enable_grad():
        leaf, score = scored_leaf(clone, ctx.target.score, xb, copy_input=True)
    yield Progress(between.done, between.total, f"{between.message.split(':')[0]}: rescaled forward done, its backward pass")
    with torch.enable_grad():
        (grad,) = checked_grad(score.sum(), leaf)
    return grad, score.detach().float(), ref_scores
