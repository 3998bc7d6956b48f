"""Integrated gradients: the path integral of gradients from a baseline to the input.

Sundararajan, Taly & Yan 2017 (review refs. [53], [56]). Hand-written rather
than Captum's ``IntegratedGradients`` (whose ``attribute`` is one blocking
call) so that the steps run in batches sized from the memory budget, with a
progress event and a chance to cancel between batches. The quadrature rules
are Captum's, and tests check the result against it. Completeness
(attributions sum to f(x) - f(baseline)) is measured on every run and
recorded in the attribution's checks.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch
from scipy.special import roots_legendre

from ...budget import batches
from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from ..toolkit.context import MethodContext, baseline_value, record_completeness
from ..toolkit.params import baseline_param

RULES = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights for integrating over the straight-line path."""
    if rule == "gausslegendre":
        # scipy's Golub-Welsch nodes equal numpy's leggauss (Captum's) to rounding, but numpy's
        # companion-matrix solve takes many seconds at 1000 steps, before the first progress event.
        nodes, weights = roots_legendre(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if rule == "riemann_trapezoid":
        alphas, w = np.linspace(0, 1, steps), np.full(steps, 1 / steps)
        w[0] /= 2
        w[-1] /= 2
        return alphas, w
    offsets = {"riemann_left": (0, 1 - 1 / steps), "riemann_middle": (1 / (2 * steps), 1 - 1 / (2 * steps)), "riemann_right": (1 / steps, 1)}
    lo, hi = offsets[rule]
    return np.linspace(lo, hi, steps), np.full(steps, 1 / steps)


def path_integral(ctx: MethodContext, x: torch.Tensor, params: dict[str, Any]) -> Generator[Progress, None, tuple[torch.Tensor, torch.Tensor]]:
    """Integrated gradients ``(1, C, *spatial)`` of the input ``x`` (a batch of one), and its baseline.

    The path's steps run in batches sized from the memory budget, with a
    progress event after each batch.
    """
    steps = params["steps"]
    alphas, weights = quadrature(params["rule"], steps)
    baseline = torch.full_like(x, baseline_value(x, params["baseline"]))
    delta = x - baseline
    total = torch.zeros_like(x[0])
    shape = (-1,) + (1,) * (x.ndim - 1)
    for start, stop in batches(steps, ctx.planner(gradients=True, through_gradients=True, passes=steps)):
        a = torch.as_tensor(alphas[start:stop], dtype=x.dtype, device=x.device).view(shape)
        grads, _ = ctx.gradients(baseline + a * delta)
        w = torch.as_tensor(weights[start:stop], dtype=x.dtype, device=x.device).view(shape)
        total += (grads * w).sum(dim=0)
        yield Progress(stop, steps + 1, f"integrated gradients: {stop}/{steps} steps")
    return delta * total, baseline


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    attribution, baseline = yield from path_integral(ctx, ctx.x, params)
    attribution = attribution[0].cpu().numpy()
    record_completeness(ctx, attribution, float(ctx.scores(baseline)[0]))
    yield Progress(params["steps"] + 1, params["steps"] + 1, "integrated gradients: done")
    return attribution


def _batch_map(ctx: MethodContext, params: dict[str, Any]):
    """Integrated gradients of one input at a time (``steps`` passes each, batched under the budget)."""

    def fn(xb: torch.Tensor) -> Generator[Progress, None, torch.Tensor]:
        attribution, _ = yield from path_integral(ctx, xb, params)
        return attribution

    return fn, params["steps"]


SPEC = register_method(
    MethodSpec(
        name="integrated_gradients",
        title="Integrated Gradients",
        family="backpropagation",
        reference="Sundararajan M, Taly A, Yan Q. Axiomatic Attribution for Deep Networks. ICML 2017 (review refs. [53], [56]).",
        summary="Gradients averaged along the straight path from a baseline to the scan, times (scan - baseline); sums to f(scan) - f(baseline).",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=(
            ParamSpec("steps", int, 50, "Points on the path; more is closer to the integral (see the completeness check).", min=2, max=1000),
            baseline_param("Reference image"),
            ParamSpec("rule", str, "gausslegendre", "Quadrature rule along the path (Captum's rules).", choices=RULES),
        ),
        run=_run,
        batch_map=_batch_map,
    )
)
