"""What Meaningful and Extremal Perturbation share: perturbation operators, a normalised score, one optimiser step.

Both learn a smooth low-resolution mask ``m`` (1 keeps a voxel, 0 perturbs
it) by gradient descent through the model. Grad mode is entered only inside
:func:`optimiser_step`, around one forward/backward pass, never across a
``yield`` (see :mod:`.toolkit.context`); gradients are taken with
``torch.autograd.grad`` with respect to the mask alone, so the model's own
``.grad`` fields are never touched.

The target score ``f`` may be a logit or a sum of logits over a region, with
any scale and offset, while the papers' losses are written for softmax
probabilities in [0, 1]. The score is therefore normalised,
``s(m) = (f(perturbed) - f(fully perturbed)) / (f(x) - f(fully perturbed))``,
which is 1 on the input and 0 when everything is perturbed, so the papers'
regulariser weights keep their balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator

import numpy as np
import torch

from ...errors import MethodError
from ...progress import Progress
from ...registry import per_axis
from ..toolkit.context import MethodContext
from ..toolkit.gradients import checked_grad, not_differentiable
from ..toolkit.perturbation import OPERATORS, blend, gaussian_blur
from ..toolkit.resample import upsample as _upsample

#: Sums in the papers' regularisers run over the pixels of a 224 x 224 image (Fong & Vedaldi 2017).
PAPER_PIXELS = 224 * 224


def upsample(mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A low-resolution mask ``(1, 1, *grid)`` upsampled (bi/tri)linearly to ``(1, *shape)``."""
    return _upsample(mask, shape)[:, 0]


def mask_grid(shape: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """Cells of the low-resolution mask per axis: ``ceil(n / stride)``, at least 2."""
    return tuple(max(2, -(-n // s)) for n, s in zip(shape, stride))


class Operator:
    """``apply(keep)`` -> the perturbed input for a full-resolution mask ``keep`` ``(1, *spatial)``.

    Parameters
    ----------
    x : torch.Tensor
        Model-space input ``(1, C, *spatial)``.
    kind : str
        ``blur`` (Gaussian of ``sigma`` voxels), ``noise`` (Gaussian noise of
        ``noise_level`` times the input's standard deviation, seeded) or
        ``constant`` (the input's mean).
    sigma, noise_level : float
    seed : int
    pyramid_levels : int
        0: blend with one reference, ``m x + (1 - m) r`` (Fong & Vedaldi
        2017). ``L > 1`` and ``blur``: the blur's sigma grows with ``1 - m``
        through ``L`` precomputed levels, linearly interpolated (Fong,
        Patrick & Vedaldi 2019).
    """

    def __init__(self, x: torch.Tensor, kind: str, sigma: float, noise_level: float, seed: int, pyramid_levels: int = 0) -> None:
        if kind not in OPERATORS:
            raise ValueError(kind)
        self.x = x
        self.levels: torch.Tensor | None = None
        if kind == "blur" and pyramid_levels > 1:
            sigmas = np.linspace(0.0, sigma, pyramid_levels)
            self.levels = torch.cat([gaussian_blur(x, float(s)) for s in sigmas])  # (L, C, *spatial)
            self.ref = self.levels[-1:]
        elif kind == "blur":
            self.ref = gaussian_blur(x, sigma)
        elif kind == "noise":
            gen = torch.Generator().manual_seed(int(seed))
            eps = torch.randn(x.shape, generator=gen).to(device=x.device, dtype=x.dtype)
            self.ref = x + noise_level * float(x.std()) * eps
        else:
            self.ref = torch.full_like(x, float(x.mean()))

    def apply(self, keep: torch.Tensor) -> torch.Tensor:
        if self.levels is None:
            return blend(self.x, self.ref, keep)
        n = self.levels.shape[0]
        t = (1.0 - keep) * (n - 1)  # (1, *spatial): which blur level
        idx = torch.arange(n, device=keep.device, dtype=keep.dtype).view(-1, *([1] * (keep.ndim - 1)))
        w = torch.clamp(1.0 - (t - idx).abs(), min=0.0)  # hat weights (L, *spatial), sum to 1
        return (w.unsqueeze(1) * self.levels).sum(dim=0, keepdim=True)


def normaliser(ctx: MethodContext, op: Operator, title: str) -> tuple[float, float]:
    """``(f(fully perturbed), f(x) - f(fully perturbed))``; refuses an operator that does not move the score."""
    f_ref = float(ctx.scores(op.apply(torch.zeros((1,) + ctx.spatial_shape, device=ctx.x.device, dtype=ctx.x.dtype)))[0])
    span = ctx.target.score_value - f_ref
    if not np.isfinite(span) or abs(span) < 1e-6 * max(1.0, abs(ctx.target.score_value)):
        raise MethodError(
            f"{title}: perturbing the whole input does not change the target score ({ctx.target.score_value:.4g}), so there is nothing to explain with this operator.",
            "Choose another perturbation (blur with a larger sigma, noise, or constant), or check the target.",
        )
    return f_ref, span


def normalised_score(ctx: MethodContext, xp: torch.Tensor, f_ref: float, span: float) -> torch.Tensor:
    """``s = (f(xp) - f_ref) / span`` with autograd (call inside grad mode)."""
    score = ctx.target.score(ctx.module(xp))
    if not score.requires_grad:
        raise not_differentiable()
    return (score[0] - f_ref) / span


def optimiser_step(param: torch.Tensor, optimiser: torch.optim.Optimizer, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """One step on ``param`` (clamped to [0, 1] afterwards); grad mode only inside. Returns the loss."""
    with torch.enable_grad():
        loss = loss_fn(param)
        (grad,) = checked_grad(loss, [param])
    with torch.no_grad():
        param.grad = grad
        optimiser.step()
        param.grad = None
        param.clamp_(0.0, 1.0)
    return float(loss.detach())


def tv_norm(mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Total variation ``sum over axes of |finite difference| ** beta`` of a mask ``(1, 1, *spatial)``."""
    total = mask.new_zeros(())
    for axis in range(2, mask.ndim):
        total = total + (mask.diff(dim=axis).abs() ** beta).sum()
    return total


OPERATOR_HELP = "Perturbation: blur (default; constant replacement is implausible for medical images, review ref. [34]), noise or constant."


def as_param(value: Any, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A leaf tensor ``(1, 1, *shape)`` filled with ``value``, requiring grad."""
    return torch.full((1, 1) + tuple(shape), float(value), device=device, dtype=torch.float32).requires_grad_(True)


@dataclass
class MaskProblem:
    """What both mask optimisers start from: the grids, the perturbation and the score's normalisation."""

    shape: tuple[int, ...]  # the model input's spatial shape
    grid: tuple[int, ...]  # the mask parameters' grid
    op: Operator
    f_ref: float  # f(fully perturbed)
    span: float  # f(x) - f(fully perturbed)

    def final_score(self, ctx: MethodContext, keep: torch.Tensor) -> float:
        """The normalised score of the input perturbed with the full-resolution ``keep`` mask, without autograd."""
        with torch.no_grad():
            return float((ctx.scores(self.op.apply(keep.to(ctx.x.dtype)))[0] - self.f_ref) / self.span)


def mask_problem(ctx: MethodContext, params: dict[str, Any], title: str, pyramid_levels: int = 0) -> MaskProblem:
    """Check the budget, size the mask grid from ``mask_stride`` and build the perturbation; refuses one that moves nothing.

    Raises
    ------
    MemoryBudgetError
        One gradient pass does not fit the budget.
    MethodError
        Perturbing the whole input does not change the score.
    """
    ctx.planner(gradients=True)  # raises when one gradient pass does not fit
    shape = ctx.spatial_shape
    grid = mask_grid(shape, per_axis(params["mask_stride"], ctx.dim, "mask_stride", title))
    op = Operator(ctx.x, params["perturbation"], params["blur_sigma"], params["noise_level"], params["seed"], pyramid_levels=pyramid_levels)
    f_ref, span = normaliser(ctx, op, title)
    return MaskProblem(shape, grid, op, f_ref, span)


def optimise(
    param: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    label: str,
    before_step: Callable[[int], None] | None = None,
) -> Generator[Progress, None, float]:
    """``n`` optimiser steps with a progress event after each; returns the last loss."""
    loss = float("nan")
    for it in range(n):
        if before_step is not None:
            before_step(it)
        loss = optimiser_step(param, optimiser, loss_fn)
        yield Progress(it + 1, n, f"{label}: step {it + 1}/{n}, loss {loss:.4g}")
    return loss
