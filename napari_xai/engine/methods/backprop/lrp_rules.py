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

Each rule is one small class (:class:`Epsilon`, :class:`Gamma`,
:class:`AlphaBeta`, :class:`ZBox`), and a :class:`Composite` maps layer types
to rules, with its own rule for the input layer, as zennit's
``LayerMapComposite`` / ``SpecialFirstLayerMapComposite`` do; a new rule is
one subclass of :class:`Rule` (its ``redistribute``), a new composite one entry of
:data:`COMPOSITE_BUILDERS`.

Composites (which rule goes where) follow zennit's names: ``epsilon``,
``epsilon_plus`` (z+ = alpha1-beta0 on convolutions, epsilon on linear
layers), ``epsilon_gamma_box`` (z-box on the first layer, gamma on other
convolutions, epsilon on linear layers), ``epsilon_alpha2_beta1``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...call_hooks import forward_hooks, tensor_output_hook

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
    """An LRP rule: maps the relevance of a layer's output to the relevance of its input.

    A new rule is one subclass that sets :attr:`tag` and defines
    :meth:`redistribute`; a :class:`Composite` says which layers get it.
    """

    #: Short name recorded in the run's provenance (``checks["lrp"]["rules"]``).
    tag = "rule"

    def relevance(self, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Relevance of the layer's input ``x`` given the relevance ``r`` of its output (what the backward pass calls)."""
        return self.redistribute(layer, x.detach().requires_grad_(True), r)

    def redistribute(self, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """The rule itself: ``r`` handed to the layer's input ``x`` (a leaf requiring grad)."""
        raise NotImplementedError


class Epsilon(Rule):
    """``R_in = x * W^T (R / (z + eps sign(z)))``; layers without weights (pooling, BatchNorm) use their own forward as ``z``."""

    tag = "epsilon"

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = epsilon

    def redistribute(self, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # forward() rather than __call__: the rule hooks stay off inside the rule
        z = _affine(layer)(x, layer.weight, layer.bias) if isinstance(layer, WEIGHTED) else layer.forward(x)
        return _epsilon_step(z, x, r, self.epsilon)


class Gamma(Rule):
    """The epsilon rule with ``W + gamma W+`` and ``b + gamma b+`` (favours positive contributions)."""

    tag = "gamma"

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6) -> None:
        self.gamma, self.epsilon = gamma, epsilon

    def redistribute(self, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:  # noqa: D102
        w, b = layer.weight, layer.bias
        z = _affine(layer)(x, w + self.gamma * _pos(w), None if b is None else b + self.gamma * _pos(b))
        return _epsilon_step(z, x, r, self.epsilon)


class AlphaBeta(Rule):
    """``alpha`` times the positive contributions' share minus ``beta`` times the negative ones' (biases left out)."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.0) -> None:
        self.alpha, self.beta = alpha, beta
        self.tag = f"alpha{alpha:g}_beta{beta:g}"

    def redistribute(self, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:  # noqa: D102
        f, w = _affine(layer), layer.weight
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


class ZBox(Rule):
    """For the first layer, inputs bounded by ``[low, high]``: ``R_in = x W^T s - low W+^T s - high W-^T s``."""

    tag = "zbox"

    def __init__(self, low: float, high: float, epsilon: float = 1e-6) -> None:
        self.low, self.high, self.epsilon = low, high, epsilon

    def redistribute(self, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:  # noqa: D102
        f, w, b = _affine(layer), layer.weight, layer.bias
        lo = torch.full_like(x, self.low).requires_grad_(True)
        hi = torch.full_like(x, self.high).requires_grad_(True)
        zx, zl, zh = f(x, w, b), f(lo, _pos(w), None), f(hi, _neg(w), None)
        s = r / _stab(zx - zl - zh, self.epsilon)
        cx, cl, ch = torch.autograd.grad((zx, zl, zh), (x, lo, hi), (s, s, s))
        return x * cx - lo * cl - hi * ch


def _epsilon_step(z: torch.Tensor, x: torch.Tensor, r: torch.Tensor, epsilon: float) -> torch.Tensor:
    (c,) = torch.autograd.grad(z, x, r / _stab(z, epsilon))
    return x * c


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


@dataclass(frozen=True)
class Composite:
    """Which rule each layer gets (zennit's composites): layer types mapped to rules, and a rule for the input layer.

    Parameters
    ----------
    layer_map : tuple of (types, Rule)
        The first entry whose types match a layer gives its rule; a layer that
        matches none passes relevance on with its gradient.
    first_layer : Rule, optional
        The rule of the first weighted layer run on the input (e.g. z-box).
    """

    layer_map: tuple[tuple[tuple[type, ...], Rule], ...]
    first_layer: Rule | None = None

    def rule_for(self, layer: nn.Module, first: bool) -> Rule | None:
        """The rule of ``layer`` (``first``: it is the first weighted layer run), or None."""
        if first and self.first_layer is not None:
            return self.first_layer
        return next((rule for types, rule in self.layer_map if isinstance(layer, types)), None)


def _eps_map(convolutions: Rule, epsilon: float) -> tuple[tuple[tuple[type, ...], Rule], ...]:
    """Convolutions get ``convolutions``; dense layers, pooling and un-folded BatchNorm get epsilon."""
    return ((CONVS + TRANSPOSED, convolutions), ((nn.Linear,) + POOLS + NORMS, Epsilon(epsilon)))


def _epsilon_plus(epsilon: float, gamma: float, low: float, high: float) -> Composite:
    z_plus = AlphaBeta(1.0, 0.0)
    return Composite(_eps_map(z_plus, epsilon), first_layer=z_plus)


def _epsilon_alpha2_beta1(epsilon: float, gamma: float, low: float, high: float) -> Composite:
    ab = AlphaBeta(2.0, 1.0)
    return Composite(_eps_map(ab, epsilon), first_layer=ab)


def _epsilon_gamma_box(epsilon: float, gamma: float, low: float, high: float) -> Composite:
    return Composite(_eps_map(Gamma(gamma, epsilon), epsilon), first_layer=ZBox(low, high, epsilon))


def _epsilon(epsilon: float, gamma: float, low: float, high: float) -> Composite:
    return Composite(((WEIGHTED + POOLS + NORMS, Epsilon(epsilon)),))


#: Composite name -> ``builder(epsilon, gamma, low, high)``; a new composite is one entry.
COMPOSITE_BUILDERS: dict[str, Callable[[float, float, float, float], Composite]] = {
    "epsilon": _epsilon,
    "epsilon_plus": _epsilon_plus,
    "epsilon_gamma_box": _epsilon_gamma_box,
    "epsilon_alpha2_beta1": _epsilon_alpha2_beta1,
}
COMPOSITES = tuple(COMPOSITE_BUILDERS)


def assign_rules(model: nn.Module, x: torch.Tensor, composite: str, epsilon: float, gamma: float, low: float, high: float) -> dict[str, tuple[nn.Module, Rule]]:
    """Layer name -> (layer, rule) for every layer of ``model`` that has a rule under ``composite``.

    The first weighted layer run on ``x`` counts as the input layer (z-box).
    """
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    with forward_hooks([(m, lambda m, i, o: order.append(names[m])) for m in model.modules() if isinstance(m, WEIGHTED)]), torch.no_grad():
        model(x)
    first = order[0] if order else None
    chosen = COMPOSITE_BUILDERS[composite](epsilon, gamma, low, high)
    assigned: dict[str, tuple[nn.Module, Rule]] = {}
    for name, module in model.named_modules():
        rule = chosen.rule_for(module, name == first) if name else None
        if rule is not None:
            assigned[name] = (module, rule)
    return assigned


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

    def hook(name: str, rule: Rule):
        done = None if after is None else lambda: after(name)

        def replace(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            ran.append(name)
            return _RuleFunction.apply(x, out.detach(), layer, rule, done)

        return tensor_output_hook(replace)

    with forward_hooks([(layer, hook(name, rule)) for name, (layer, rule) in assigned.items()]):
        yield ran
