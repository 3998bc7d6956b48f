"""SmoothGrad, SmoothGrad² and VarGrad: a gradient method averaged over noisy copies of the scan.

- **SmoothGrad** (Smilkov et al. 2017, review ref. [58]): the mean of the base
  method's map over ``n_samples`` copies of the input with Gaussian noise
  added. Signed like its base (``absolute`` takes each sample's absolute
  value first, as Captum's ``Saliency`` does by default).
- **SmoothGrad²**: the mean of the squared maps (non-negative).
- **VarGrad** (Adebayo et al. 2018, review ref. [48]): the variance of the
  maps over the noisy copies, ``E[a²] - E[a]²`` (non-negative).

The base is any of the engine's gradient methods: ``vanilla_gradient`` (the
raw, signed gradient), ``input_x_gradient``, ``integrated_gradients`` (zero
baseline, Gauss-Legendre steps; each noisy sample is a full path),
``guided_backprop`` or ``deconvnet``. The noise standard deviation is
``noise_level`` times the input's intensity range (max - min) in model space,
as in the paper. Sample ``i`` draws its noise from a generator seeded with
``(seed, i)``, so a run is reproducible whatever batch sizes the planner picks.

Hand-written rather than Captum's ``NoiseTunnel``, whose ``attribute`` draws
all samples at once (``n_samples`` x the input in memory) in one blocking call:
here samples (for integrated gradients, sample x step pairs) run in batches
sized from the memory budget, with progress and a chance to cancel between
batches. Tests check each variant against the same noisy inputs fed through
Captum's base methods.
"""

from __future__ import annotations

from typing import Any, Callable, Generator

import numpy as np
import torch
import torch.nn as nn

from ..budget import batches
from ..progress import Progress
from ..registry import MethodSpec, ParamSpec, register_method
from ._context import MethodContext
from ._modified import copy_model, relu_rule_gradients
from .integrated_gradients import quadrature

BASES = ("vanilla_gradient", "input_x_gradient", "integrated_gradients", "guided_backprop", "deconvnet")
VARIANTS = {"smoothgrad": "SmoothGrad", "smoothgrad_sq": "SmoothGrad²", "vargrad": "VarGrad"}


def noise_sigma(x: torch.Tensor, noise_level: float) -> float:
    """Noise standard deviation: ``noise_level`` times the intensity range (or times 1 for a constant input)."""
    span = float(x.max() - x.min())
    return noise_level * (span if span > 0 else 1.0)


def noisy_inputs(x: torch.Tensor, sigma: float, seed: int, indices: range) -> torch.Tensor:
    """Noisy copies ``(len(indices), C, *spatial)`` of ``x`` (a batch of one); sample ``i`` seeded by ``(seed, i)``."""
    noise = np.stack([np.random.default_rng([seed, i]).standard_normal(tuple(x.shape[1:])) for i in indices]).astype(np.float32)
    return x + sigma * torch.from_numpy(noise).to(device=x.device, dtype=x.dtype)


def _base_fn(ctx: MethodContext, base: str, title: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from a batch of inputs to the base method's maps (one backward pass)."""
    if base == "vanilla_gradient":
        return lambda xb: ctx.gradients(xb)[0]
    if base == "input_x_gradient":
        return lambda xb: xb * ctx.gradients(xb)[0]
    clone: nn.Module = copy_model(ctx, title)
    rule = "guided" if base == "guided_backprop" else "deconv"
    return lambda xb: relu_rule_gradients(ctx, clone, xb, rule)


def _run_variant(variant: str):
    title = VARIANTS[variant]

    def run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
        n, base = params["n_samples"], params["base"]
        sigma = noise_sigma(ctx.x, params["noise_level"])
        ctx.checks["noise_sigma"] = sigma
        absolute = params.get("absolute", False)
        total = torch.zeros_like(ctx.x[0], dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        planner = ctx.planner(gradients=True, through_gradients=True)

        def add(maps: torch.Tensor) -> None:
            nonlocal total, total_sq
            maps = maps.double()
            if absolute:
                maps = maps.abs()
            total += maps.sum(dim=0)
            total_sq += (maps * maps).sum(dim=0)

        if base == "integrated_gradients":
            steps = params["ig_steps"]
            alphas, weights = quadrature("gausslegendre", steps)
            partial: dict[int, torch.Tensor] = {}
            for lo, hi in batches(n * steps, planner):
                units = range(lo, hi)
                samples = sorted({u // steps for u in units})
                noisy = dict(zip(samples, noisy_inputs(ctx.x, sigma, params["seed"], range(samples[0], samples[-1] + 1))))
                shape = (-1,) + (1,) * (ctx.x.ndim - 1)
                a = torch.as_tensor([alphas[u % steps] for u in units], dtype=ctx.x.dtype, device=ctx.x.device).view(shape)
                w = torch.as_tensor([weights[u % steps] for u in units], dtype=ctx.x.dtype, device=ctx.x.device).view(shape)
                xs = torch.stack([noisy[u // steps] for u in units])
                grads, _ = ctx.gradients(a * xs)  # zero baseline: the path is alpha * x
                for j, u in enumerate(units):
                    s = u // steps
                    partial[s] = partial.get(s, 0) + grads[j] * w[j]
                    if u % steps == steps - 1:
                        add((noisy[s] * partial.pop(s))[None])
                yield Progress(hi, n * steps, f"{title} ({base}): {hi // steps}/{n} samples")
        else:
            fn = _base_fn(ctx, base, title)
            for lo, hi in batches(n, planner):
                add(fn(noisy_inputs(ctx.x, sigma, params["seed"], range(lo, hi))))
                yield Progress(hi, n, f"{title} ({base}): {hi}/{n} samples")
        mean = total / n
        if variant == "smoothgrad":
            out = mean
        elif variant == "smoothgrad_sq":
            out = total_sq / n
        else:
            out = (total_sq / n - mean * mean).clamp(min=0)
        return out.float().cpu().numpy()

    return run


def _params(variant: str) -> tuple[ParamSpec, ...]:
    common = (
        ParamSpec("base", str, "vanilla_gradient", "Gradient method applied to each noisy copy.", choices=BASES),
        ParamSpec("n_samples", int, 25, "Noisy copies averaged (the paper uses ~50; more is smoother).", min=1, max=2000),
        ParamSpec("noise_level", float, 0.15, "Noise standard deviation as a fraction of the input's intensity range (paper: 0.1-0.2).", min=0.0, max=2.0),
        ParamSpec("seed", int, 0, "Random seed of the noise (same seed, same map).", min=0, max=2**31 - 1),
        ParamSpec("ig_steps", int, 16, "Path steps per noisy copy when the base is integrated_gradients.", min=2, max=1000),
    )
    if variant == "smoothgrad":
        return common + (ParamSpec("absolute", bool, False, "Absolute value of each sample's map before averaging; off keeps the sign."),)
    return common


_REFS = {
    "smoothgrad": "Smilkov D, Thorat N, Kim B, Viégas F, Wattenberg M. SmoothGrad: removing noise by adding noise. "
    "arXiv:1706.03825, 2017 (review ref. [58]).",
    "smoothgrad_sq": "Smilkov D, Thorat N, Kim B, Viégas F, Wattenberg M. SmoothGrad: removing noise by adding noise. arXiv:1706.03825, 2017 (review ref. [58]); squared variant as in Hooker S, Erhan D, Kindermans PJ, Kim B. "
    "A Benchmark for Interpretability Methods in Deep Neural Networks. NeurIPS 2019.",
    "vargrad": "Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity Checks for Saliency Maps. "
    "NeurIPS 2018 (review ref. [48]).",
}
_SUMMARIES = {
    "smoothgrad": "A gradient method averaged over noisy copies of the scan: less speckle than one gradient.",
    "smoothgrad_sq": "Mean of the squared maps of a gradient method over noisy copies of the scan.",
    "vargrad": "Variance of a gradient method's maps over noisy copies of the scan.",
}

for _variant, _title in VARIANTS.items():
    register_method(
        MethodSpec(
            name=_variant,
            title=_title,
            family="backpropagation",
            reference=_REFS[_variant],
            summary=_SUMMARIES[_variant],
            needs=frozenset({"gradients"}),
            sign="signed" if _variant == "smoothgrad" else "non-negative",
            model_agnostic=False,
            params=_params(_variant),
            run=_run_variant(_variant),
            stochastic=True,
            sign_param="absolute" if _variant == "smoothgrad" else None,
        )
    )
