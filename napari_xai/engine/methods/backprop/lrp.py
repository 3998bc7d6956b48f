"""Layer-wise Relevance Propagation (LRP) for 1D, 2D and 3D networks.

Bach et al. 2015 (review ref. [50]); applied to 3D MRI by Böhle et al. 2019
(review ref. [51]). The target score is decomposed into voxel relevances,
layer by layer, backwards: the output relevance is the model output weighted
by the target (the class logit; for a region target the class logits in the
region), and each layer hands its relevance to its inputs with a rule
(epsilon, gamma, alpha-beta, z-box; see ``_lrp_rules``). Composites choose
the rule per layer, as zennit's do. BatchNorm after a convolution is folded
into it first (canonisation), since LRP rules are defined for affine layers.

Signed: positive relevance supports the target, negative speaks against it.
Conservation: with the epsilon rule, small epsilon and zero biases, the map
sums to the target score; every run records the sum and the score in
``checks["conservation"]`` (biases, epsilon and the alpha-beta / z-box rules
absorb or add some relevance by design).

Known limits: a residual addition written as ``a + b`` in ``forward`` passes
the full relevance to both terms (zennit needs a model-specific canoniser for
that too), and a non-linearity other than a gate (e.g. a sigmoid inside the
network) passes relevance with its gradient; the conservation check shows the
effect. BatchNorm that does not directly follow a conv / linear layer inside
an ``nn.Sequential`` is not folded and gets the epsilon rule as an
element-wise affine layer.

Progress and cancel: the relevance pass is one backward pass (about ten
forward passes' work on the sample 3D model), so it runs step by step
(``_stepped``): one event per ruled layer as the relevance passes through
it, and Cancel stops it at the next layer. The map is the one the
uninterrupted pass gives, bit for bit (``tests/engine/methods/test_cancel_events.py``).

Implemented by hand rather than with zennit, the one library with full 3D
LRP: zennit is LGPL-licensed and imports torchvision at import time, which
fails in this environment; Captum's ``LRP`` is limited to 2D layers
(``Conv2d``, ``AvgPool2d``...). Rules run on a private deep copy of the model
(the user's model is never touched). Tests check LRP-epsilon and the z+
(alpha1-beta0) composite against Captum's ``LRP`` on a 2D network,
LRP-epsilon against Input x Gradient (equal for ReLU networks with zero
biases), and conservation in 1D, 2D and 3D (through max / average pooling
and un-folded BatchNorm too).
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch

from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from .lrp_rules import COMPOSITES, assign_rules, fold_batchnorm, rule_hooks
from ..toolkit.stepped import Stepper
from ..toolkit.context import MethodContext
from ..toolkit.gradients import checked_grad, not_differentiable
from ..toolkit.model_copy import copy_model


def lrp_relevance(ctx: MethodContext, composite: str, epsilon: float, gamma: float) -> Generator[Progress, None, tuple[torch.Tensor, dict[str, Any]]]:
    """Input relevance ``(1, C, *spatial)`` of the target score, and what was done (rules per layer, folds).

    A generator: one event after the rules are assigned (a forward pass),
    one after the forward pass with the rules, then one per ruled layer as
    the backward pass hands relevance through it (the pass runs step by step
    in a worker thread, :mod:`._stepped`), so Cancel stops it between layers.
    """
    clone = copy_model(ctx, "LRP")
    folded = fold_batchnorm(clone)
    low, high = float(ctx.x.min()), float(ctx.x.max())
    assigned = assign_rules(clone, ctx.x, composite, epsilon, gamma, low, high)
    rules = {name: rule.tag for name, (_, rule) in assigned.items()}
    yield Progress(0, 0, f"LRP ({composite}): {len(assigned)} layers with rules")
    stepper = Stepper()
    with rule_hooks(assigned, after=lambda name: stepper.checkpoint(f"LRP: relevance through {name}")) as ran, torch.enable_grad():
        xg = ctx.x.detach().clone().requires_grad_(True)
        out = clone(xg)
        (weight,) = checked_grad(ctx.target.score(out).sum(), out, retain_graph=True)
    total = len(ran) + 1
    yield Progress(1, total, f"LRP ({composite}): forward pass done, backward through {len(ran)} ruled layers")

    def backward() -> torch.Tensor | None:
        with torch.enable_grad():
            (rel,) = torch.autograd.grad(out, xg, weight * out.detach(), allow_unused=True)
        return rel

    rel = yield from stepper.run(backward, total=total, done=1)
    if rel is None:
        raise not_differentiable()
    info = {"rules": rules, "batchnorm_folded": folded, "box": [low, high], "output_relevance": float((weight * out.detach()).sum())}
    return rel.detach(), info


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    yield Progress(0, 0, f"LRP ({params['composite']}): canonising a copy of the model")
    rel, info = yield from lrp_relevance(ctx, params["composite"], params["epsilon"], params["gamma"])
    out = rel[0].cpu().numpy()
    total = float(out.astype(np.float64).sum())
    ctx.checks["conservation"] = {
        "relevance_sum": total,
        "score": ctx.target.score_value,
        "output_relevance": info["output_relevance"],
        "relative_delta": abs(total - info["output_relevance"]) / max(abs(info["output_relevance"]), 1e-12),
    }
    ctx.checks["lrp"] = info
    yield Progress(1, 1, "LRP: done")
    return out


SPEC = register_method(
    MethodSpec(
        name="lrp",
        title="LRP",
        family="backpropagation",
        reference="Bach S, Binder A, Montavon G, Klauschen F, Müller KR, Samek W. On Pixel-Wise Explanations for Non-Linear "
        "Classifier Decisions by Layer-Wise Relevance Propagation. PLoS One 2015 (review ref. [50]).",
        summary="The target score redistributed backwards layer by layer with relevance rules; sums to about the score. One pass.",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=(
            ParamSpec("composite", str, "epsilon_plus", "Rules per layer: epsilon everywhere, or z+ / gamma+z-box / alpha2-beta1 on convolutions with epsilon on dense layers.", choices=COMPOSITES),
            ParamSpec("epsilon", float, 1e-6, "Stabiliser of the epsilon rule; larger absorbs weak, contradictory relevance.", min=1e-12, max=100.0),
            ParamSpec("gamma", float, 0.25, "Weight of positive contributions in the gamma rule (epsilon_gamma_box).", min=0.0, max=100.0),
        ),
        run=_run,
    )
)
