"""SmoothGrad, SmoothGrad² and VarGrad: a gradient method averaged over noisy copies of the scan.

- **SmoothGrad** (Smilkov et al. 2017, review ref. [58]): the mean of the base
  method's map over ``n_samples`` copies of the input with Gaussian noise
  added. Signed like its base (``absolute`` takes each sample's absolute
  value first, as Captum's ``Saliency`` does by default).
- **SmoothGrad²**: the mean of the squared maps (non-negative).
- **VarGrad** (Adebayo et al. 2018, review ref. [48]): the variance of the
  maps over the noisy copies, ``E[a²] - E[a]²`` (non-negative).

The three are one wrapper of any gradient method, as Captum's
``NoiseTunnel`` is: the base is every method registered before this module
with a ``MethodSpec.batch_map`` (its raw, signed map of a batch of inputs):
``vanilla_gradient``, ``input_x_gradient``, ``integrated_gradients`` (its
defaults: zero baseline, Gauss-Legendre steps, ``ig_steps`` of them; each
noisy sample is a full path), ``guided_backprop`` or ``deconvnet``. The noise standard deviation is
``noise_level`` times the input's intensity range (max - min) in model space,
as in the paper. Sample ``i`` draws its noise from a generator seeded with
``(seed, i)``, so a run is reproducible whatever batch sizes the planner picks.

Hand-written rather than Captum's ``NoiseTunnel``, whose ``attribute`` draws
all samples at once (``n_samples`` x the input in memory) in one blocking call:
here samples run in batches sized from the memory budget (a base of
several passes per sample, such as integrated gradients, one sample at a
time, its steps batched), with progress and a chance to cancel between
batches. Tests check each variant against the same noisy inputs fed through
Captum's base methods.
"""

from __future__ import annotations

import inspect
from typing import Any, Generator

import numpy as np
import torch

from ...budget import batches
from ...progress import Progress, relay
from ...registry import MethodSpec, ParamSpec, get_method, list_methods, register_method
from ..toolkit.context import MethodContext
from ..toolkit.params import seed_param

#: The methods a noise tunnel can wrap: every gradient method registered before this module with a ``batch_map``.
BASES = tuple(spec.name for spec in list_methods() if spec.batch_map is not None)
VARIANTS = {"smoothgrad": "SmoothGrad", "smoothgrad_sq": "SmoothGrad²", "vargrad": "VarGrad"}


def noise_sigma(x: torch.Tensor, noise_level: float) -> float:
    """Noise standard deviation: ``noise_level`` times the intensity range (or times 1 for a constant input)."""
    span = float(x.max() - x.min())
    return noise_level * (span if span > 0 else 1.0)


def noisy_inputs(x: torch.Tensor, sigma: float, seed: int, indices: range) -> torch.Tensor:
    """Noisy copies ``(len(indices), C, *spatial)`` of ``x`` (a batch of one); sample ``i`` seeded by ``(seed, i)``."""
    noise = np.stack([np.random.default_rng([seed, i]).standard_normal(tuple(x.shape[1:])) for i in indices]).astype(np.float32)
    return x + sigma * torch.from_numpy(noise).to(device=x.device, dtype=x.dtype)


def base_params(base: MethodSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The wrapped method's parameters: its defaults, with ``ig_steps`` as its ``steps`` where it has them."""
    out = base.defaults()
    if "steps" in out:
        out["steps"] = base.param("steps").coerce(params["ig_steps"], base.title)
    return out


def noise_tunnel(ctx: MethodContext, params: dict[str, Any], title: str) -> Generator[Progress, None, tuple[torch.Tensor, torch.Tensor]]:
    """Sum and sum of squares over ``n_samples`` noisy copies of the base method's maps (float64, ``(C, *spatial)``)."""
    n, base = params["n_samples"], get_method(params["base"])
    sigma = noise_sigma(ctx.x, params["noise_level"])
    ctx.checks["noise_sigma"] = sigma
    fn, passes = base.batch_map(ctx, base_params(base, params))
    total = torch.zeros_like(ctx.x[0], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    # one pass per input: batches of inputs sized for one gradient pass each; more: one input at a time
    groups = batches(n, ctx.planner(gradients=True, through_gradients=True, passes=n)) if passes == 1 else ((i, i + 1) for i in range(n))
    label = f"{title} ({base.name})"
    for lo, hi in groups:
        maps = fn(noisy_inputs(ctx.x, sigma, params["seed"], range(lo, hi)))
        if inspect.isgenerator(maps):
            maps = yield from relay(maps, lo * passes, (hi - lo) * passes, n * passes, f"{label}, sample {hi}/{n}: ")
        maps = maps.double()
        if params.get("absolute", False):
            maps = maps.abs()
        total += maps.sum(dim=0)
        total_sq += (maps * maps).sum(dim=0)
        yield Progress(hi * passes, n * passes, f"{label}: {hi}/{n} samples")
    return total, total_sq


def _run_variant(variant: str):
    title = VARIANTS[variant]

    def run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
        n = params["n_samples"]
        total, total_sq = yield from noise_tunnel(ctx, params, title)
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
        ParamSpec("base", str, "vanilla_gradient", "Gradient method applied to each noisy copy (its raw, signed map).", choices=BASES),
        ParamSpec("n_samples", int, 25, "Noisy copies averaged (the paper uses ~50; more is smoother).", min=1, max=2000),
        ParamSpec("noise_level", float, 0.15, "Noise standard deviation as a fraction of the input's intensity range (paper: 0.1-0.2).", min=0.0, max=2.0),
        seed_param("the noise"),
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
            params=_params(_variant),
            run=_run_variant(_variant),
            stochastic=True,
            sign_param="absolute" if _variant == "smoothgrad" else None,
        )
    )
