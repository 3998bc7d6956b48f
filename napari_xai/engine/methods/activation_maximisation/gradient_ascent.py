"""Activation maximisation: regularised gradient ascent on the input, shared by class model visualisation and Deep Dream.

Those images raise the target score; they are not attribution maps.

Each step takes the gradient of the target score (the engine's target: a
class logit, or a class's logits summed/averaged over a region) at a
randomly shifted copy (jitter, shifted back after), normalises it by its mean
absolute value, and steps ``step_size`` times the input's intensity range.
Regularisers: L2 decay towards the start intensity (class model
visualisation) or towards the scan (Deep Dream), a total-variation step, and
a Gaussian blur every few steps (Yosinski et al. 2015). Everything is seeded.

Output: the synthetic image in model space, ``(C, *spatial)``; the method
spec says ``output="image"``, so :func:`explain` maps each channel back to
the scan grid rather than summing channels. Values are intensities (model
space, after the spec's intensity transform), signed. ``checks`` records the
target score at the start and at the end.

Hand-written: Captum's optim module is 2D-only and built around torchvision
image parameterisations.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch

from ...progress import Progress
from ...registry import ParamSpec
from ..toolkit.context import MethodContext
from ..toolkit.params import blur_sigma_param, seed_param
from ..toolkit.perturbation import gaussian_blur


def _tv_gradient(img: torch.Tensor) -> torch.Tensor:
    """Gradient of the (squared-difference) total variation of ``img`` ``(1, C, *spatial)``."""
    with torch.enable_grad():
        z = img.detach().clone().requires_grad_(True)
        tv = sum((z.diff(dim=d) ** 2).mean() for d in range(2, z.ndim) if z.shape[d] > 1)
        if not isinstance(tv, torch.Tensor):
            return torch.zeros_like(img)
        (g,) = torch.autograd.grad(tv, z)
    return g.detach()


def ascend(ctx: MethodContext, start: torch.Tensor, anchor: torch.Tensor, params: dict[str, Any], title: str, clip: tuple[float, float] | None) -> Generator[Progress, None, torch.Tensor]:
    """Regularised, jittered, normalised gradient ascent on the target score from ``start``.

    Parameters
    ----------
    start : torch.Tensor
        ``(1, C, *spatial)`` first image.
    anchor : torch.Tensor
        What the L2 decay pulls towards (same shape, or broadcastable).
    clip : tuple, optional
        Intensity bounds kept after every step.
    """
    steps = params["steps"]
    span = float(ctx.x.max() - ctx.x.min()) or 1.0
    rng = np.random.default_rng(params["seed"])
    img = start.clone()
    ctx.checks["start_score"] = float(ctx.scores(img)[0])
    for t in range(steps):
        shift = tuple(int(s) for s in rng.integers(-params["jitter"], params["jitter"] + 1, size=ctx.dim))
        dims = tuple(range(2, img.ndim))
        grad, _ = ctx.gradients(torch.roll(img, shift, dims))
        grad = torch.roll(grad, tuple(-s for s in shift), dims)
        step = grad / grad.abs().mean().clamp(min=1e-12)
        if params["tv"] > 0:
            tvg = _tv_gradient(img)
            step = step - params["tv"] * tvg / tvg.abs().mean().clamp(min=1e-12)
        img = img + params["step_size"] * span * step
        img = anchor + (1.0 - params["l2"]) * (img - anchor)
        if params["blur_every"] and params["blur_sigma"] > 0 and (t + 1) % params["blur_every"] == 0:
            img = gaussian_blur(img, params["blur_sigma"])
        if clip is not None:
            img = img.clamp(*clip)
        yield Progress(t + 1, steps, f"{title}: step {t + 1}/{steps}")
    ctx.checks["final_score"] = float(ctx.scores(img)[0])
    return img


def ascent_params(steps: int, step_size: float, l2: float, tv: float, blur_every: int) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("steps", int, steps, "Gradient-ascent steps.", min=1, max=10000),
        ParamSpec("step_size", float, step_size, "Step as a fraction of the input's intensity range (per mean-normalised gradient).", min=0.0, max=10.0),
        ParamSpec("l2", float, l2, "L2 decay per step towards the start intensity / the scan (0: none).", min=0.0, max=1.0),
        ParamSpec("tv", float, tv, "Weight of the total-variation step relative to the score step (0: none).", min=0.0, max=100.0),
        ParamSpec("blur_every", int, blur_every, "Gaussian blur every this many steps (0: never).", min=0, max=10000),
        blur_sigma_param(0.5, "Blur standard deviation in voxels.", maximum=20.0),
        ParamSpec("jitter", int, 1, "Random shift of the image before each gradient, in voxels (shifted back after).", min=0, max=64),
        seed_param("the start noise and jitter"),
    )
