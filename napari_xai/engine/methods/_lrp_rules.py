"""LRP rules, composites and the BatchNorm canoniser, for 1D, 2D and 3D networks.

Written here rather than taken from zennit (the one library with full 3D
LRP): zennit is LGPL-licensed and imports torchvision at import time, which
fails in this environment. The design follows zennit's idea of small
orthogonal pieces (rules, composites, canonisers), not its code.

How it works: the model is deep-copied (the user's model is never touched),
every BatchNorm that directly follows a convolution / linear layer inside an
``nn.Sequential`` is folded into it (canonisation), and every layer that has
a rule (convolutions of any dimension, transposed convolutions, linear,
average pooling incl. adaptive, un-folded BatchNorm) gets a forward hook (on
the copy) that routes the layer's output through a small
autograd function whose backward maps the relevance of the output to the
relevance of the input with the rule; the module tree is left as it is. The
quantity that flows backward is *relevance* (zennit's convention), so the
relevance at the input is the map itself. Layers without rules pass relevance
on with their gradient, which is the LRP convention for them: ReLU and other
gates (relevance stays where the unit was active), max pooling (winner takes
all), reshapes, and multiplication by constant masks.

Rules, for a layer ``z = W x + b`` with incoming relevance ``R``
(``W+``/``W-``: positive/negative parts):

- ``epsilon``: ``R_in = x * W^T (R / (z + eps sign(z)))``.
- ``gamma``: the epsilon rule with ``W + gamma W+`` and ``b + gamma b+``.
- ``alpha_beta``: ``alpha`` times the positive contributions' share minus
  ``beta`` times the negative ones', splitting inputs by sign; biases are left
  out, so relevance is conserved for ``alpha - beta = 1``; with ``beta = 0``
  (z+) the negative share is not computed at all.
- ``zbox`` (first layer, inputs bounded by ``[low, high]``):
  ``R_in = x W^T s - low W+^T s - high W-^T s`` with
  ``s = R / (W x + b - W+ low - W- high)``.
- pooling and un-folded BatchNorm always use ``epsilon``.

Composites (which rule goes where) follow zennit's names: ``epsilon``,
``epsilon_plus`` (z+ = alpha1-beta0 on convolutions, epsilon on linear
layers), ``epsilon_gamma_box`` (z-box on the first layer, gamma on other
convolutions, epsilon on linear layers), ``epsilon_alpha2_beta1``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
WEIGHTED = CONVS + TRANSPOSED + (nn.Linear,)

COMPOSITES = ("epsilon", "epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1")


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a conv / linear layer in an ``nn.Sequential`` into it (in place, on a copy).

    Returns
    -------
    int
        How many BatchNorm layers were folded.
    """
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            layer, norm = seq._modules[a], seq._modules[b]
            if not (isinstance(layer, CONVS + (nn.Linear,)) and isinstance(norm, NORMS)) or not norm.track_running_stats:
                continue
            if norm.running_var is None or norm.num_features != layer.weight.shape[0]:
                continue
            with torch.no_grad():
                scale = (norm.running_var + norm.eps).rsqrt()
                if norm.affine:
                    scale = scale * norm.weight
                shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0.0)
                bias = layer.bias if layer.bias is not None else torch.zeros_like(norm.running_mean)
                layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.ndim - 1))))
                new_bias = bias * scale + shift
                if layer.bias is None:
                    layer.bias = nn.Parameter(new_bias)
                else:
                    layer.bias.copy_(new_bias)
            seq._modules[b] = nn.Identity()
            folded += 1
    return folded


def _affine(layer: nn.Module) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """``f(x, W, b)``: the layer's affine map with the given weight and bias."""
    if isinstance(layer, CONVS):
        return layer._conv_forward
    if isinstance(layer, nn.Linear):
        return F.linear
    fn = {nn.ConvTranspose1d: F.conv_transpose1d, nn.ConvTranspose2d: F.conv_transpose2d, nn.ConvTranspose3d: F.conv_transpose3d}[type(layer)]
    return lambda x, w, b: fn(x, w, b, layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation)


def _stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def _safe_div(r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    nz = z != 0
    return torch.where(nz, r / torch.where(nz, z, torch.ones_like(z)), torch.zeros_like(r))


def _pos(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(max=0)


class Rule:
    """One rule with its settings; ``relevance(layer, x, R)`` maps output relevance to input relevance."""

    def __init__(self, name: str, epsilon: float = 1e-6, gamma: float = 0.25, alpha: float = 1.0, beta: float = 0.0, low: float = 0.0, high: float = 1.0) -> None:
        self.name, self.epsilon, self.gamma, self.alpha, self.beta, self.low, self.high = name, epsilon, gamma, alpha, beta, low, high

    def relevance(self, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Relevance of the layer's input ``x`` given the relevance ``r`` of its output."""
        x = x.detach().requires_grad_(True)
        if not isinstance(layer, WEIGHTED) or self.name == "epsilon":
            # forward() rather than __call__: the rule hooks stay off inside the rule
            z = layer.forward(x) if not isinstance(layer, WEIGHTED) else _affine(layer)(x, layer.weight, layer.bias)
            (c,) = torch.autograd.grad(z, x, r / _stab(z, self.epsilon))
            return x * c
        f, w, b = _affine(layer), layer.weight, layer.bias
        if self.name == "gamma":
            z = f(x, w + self.gamma * _pos(w), None if b is None else b + self.gamma * _pos(b))
            (c,) = torch.autograd.grad(z, x, r / _stab(z, self.epsilon))
            return x * c
        if self.name == "alpha_beta":
            xp = x.detach().clamp(min=0).requires_grad_(True)
            xn = x.detach().clamp(max=0).requires_grad_(True)
            wp, wn = _pos(w), _neg(w)
            out = []
            # beta = 0 (z+): the negative contributions' share is multiplied by zero and never computed (half the work)
            for wa, wb in ((wp, wn), (wn, wp))[: 1 if self.beta == 0 else 2]:
                za, zb = f(xp, wa, None), f(xn, wb, None)
                s = _safe_div(r, za + zb)
                ca, cb = torch.autograd.grad((za, zb), (xp, xn), (s, s))
                out.append(xp * ca + xn * cb)
            return self.alpha * out[0] - self.beta * out[1] if self.beta != 0 else self.alpha * out[0]
        if self.name == "zbox":
            lo = torch.full_like(x, self.low).requires_grad_(True)
            hi = torch.full_like(x, self.high).requires_grad_(True)
            zx, zl, zh = f(x, w, b), f(lo, _pos(w), None), f(hi, _neg(w), None)
            s = r / _stab(zx - zl - zh, self.epsilon)
            cx, cl, ch = torch.autograd.grad((zx, zl, zh), (x, lo, hi), (s, s, s))
            return x * cx - lo * cl - hi * ch
        raise ValueError(self.name)


class _RuleFunction(torch.autograd.Function):
    """Identity on the layer's (already computed) output; backward maps output relevance to input relevance."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor, layer: nn.Module, rule: Rule, after: Callable[[], None] | None) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        ctx.layer, ctx.rule, ctx.after = layer, rule, after
        return out.clone()

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            rel = ctx.rule.relevance(ctx.layer, x, r).detach()
        if ctx.after is not None:
            ctx.after()
        return rel, None, None, None, None


def composite_rule(composite: str, kind: str, epsilon: float, gamma: float, low: float, high: float) -> Rule:
    """The rule a composite assigns to a layer of ``kind`` (``first``, ``conv``, ``linear`` or ``other``)."""
    eps = Rule("epsilon", epsilon=epsilon)
    if kind == "other" or composite == "epsilon" or kind == "linear":
        return eps
    if composite == "epsilon_plus":
        return Rule("alpha_beta", alpha=1.0, beta=0.0)
    if composite == "epsilon_alpha2_beta1":
        return Rule("alpha_beta", alpha=2.0, beta=1.0)
    if composite == "epsilon_gamma_box":
        return Rule("zbox", epsilon=epsilon, low=low, high=high) if kind == "first" else Rule("gamma", epsilon=epsilon, gamma=gamma)
    raise ValueError(composite)


def assign_rules(model: nn.Module, x: torch.Tensor, composite: str, epsilon: float, gamma: float, low: float, high: float) -> dict[str, tuple[nn.Module, Rule]]:
    """Layer name -> (layer, rule) for every layer of ``model`` that has a rule under ``composite``.

    The first weighted layer run on ``x`` counts as the input layer (z-box).
    """
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    handles = [m.register_forward_hook(lambda m, i, o: order.append(names[m])) for m in model.modules() if isinstance(m, WEIGHTED)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    first = order[0] if order else None
    assigned: dict[str, tuple[nn.Module, Rule]] = {}
    for name, module in model.named_modules():
        if not name or not isinstance(module, WEIGHTED + POOLS + NORMS):
            continue
        kind = "first" if name == first else "conv" if isinstance(module, CONVS + TRANSPOSED) else "linear" if isinstance(module, nn.Linear) else "other"
        assigned[name] = (module, composite_rule(composite, kind, epsilon, gamma, low, high))
    return assigned


def rule_tag(rule: Rule) -> str:
    """Short name of a rule, e.g. ``alpha2_beta1``."""
    return rule.name if rule.name != "alpha_beta" else f"alpha{rule.alpha:g}_beta{rule.beta:g}"


@contextlib.contextmanager
def rule_hooks(assigned: dict[str, tuple[nn.Module, Rule]], after: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """Forward hooks that make each assigned layer back-propagate relevance with its rule; removed on exit.

    The hook routes the layer's output through :class:`_RuleFunction`, so the
    module tree (and any code that reads a layer's attributes) is unchanged.

    Parameters
    ----------
    assigned : dict
        Layer name -> (layer, rule), from :func:`assign_rules`.
    after : callable, optional
        Called with the layer's name in the backward pass, once its rule has
        handed on the relevance (where LRP yields and polls cancel).

    Yields
    ------
    list of str
        The names of the ruled layers in the order the forward passes ran
        them (a layer run twice is listed twice): the backward pass meets
        them in reverse, one ``after`` call each.
    """
    ran: list[str] = []

    def make_hook(name: str, rule: Rule):
        done = None if after is None else lambda: after(name)

        def hook(layer: nn.Module, inputs: tuple[Any, ...], out: Any) -> Any:
            if not inputs or not isinstance(inputs[0], torch.Tensor) or not isinstance(out, torch.Tensor):
                return None
            ran.append(name)
            return _RuleFunction.apply(inputs[0], out.detach(), layer, rule, done)

        return hook

    handles = [layer.register_forward_hook(make_hook(name, rule)) for name, (layer, rule) in assigned.items()]
    try:
        yield ran
    finally:
        for h in handles:
            h.remove()
