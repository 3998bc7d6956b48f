"""What a method gets to work with: the model, the input, the target, the budget; scores and gradients.

Grad mode is thread-local in torch and a ``with torch.enable_grad()`` block
left open across a ``yield`` would leak into whatever code runs while the
generator is suspended. Methods therefore enter grad / inference mode only
inside the helpers here, around one batch, never across a yield.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from ...budget import BatchPlanner, activation_bytes, gradient_budget
from ...checkpointing import checkpointed, plan_checkpointing
from ...errors import MemoryBudgetError, MethodError, XAIError
from ...models.loading import LoadedModel
from ...prepare import model_failure
from ...targets import ResolvedTarget
from . import layout
from .gradients import input_gradient
from .layout import LayoutChoice, agrees, can_use_channels_last, layout_for_probe

#: Working memory of a gradient pass relative to a forward pass: activations
#: kept for backward, their gradients, and the input gradient.
GRADIENT_MEMORY_FACTOR = 3
#: Fallback activation size (x input size) when hooks cannot measure it.
UNMEASURED_ACTIVATION_FACTOR = 32


@dataclass
class MethodContext:
    """The model, the model-space input and the target, for one run.

    Parameters
    ----------
    model : LoadedModel
        The model (in eval mode for the run).
    x : torch.Tensor
        Model-space input ``(1, C, *spatial)`` on the model's device.
    target : ResolvedTarget or None
        Turns model output into one score per sample. None for a one-pass
        method (``MethodSpec.one_pass``): the target is then resolved by
        ``resolver`` from the output of the method's own first pass
        (:meth:`resolve_from`), so that no separate forward pass is run.
    budget_mb : int
        Memory budget for one batch.
    checks : dict
        Where a method records axiom checks (e.g. completeness) for provenance.
    resolver : callable, optional
        ``resolver(output) -> ResolvedTarget`` for an unresolved target; it
        checks the output and records the score on the unperturbed input.
    windows : WindowedModel, optional
        Set when the spec runs the network by sliding windows: scores and
        gradients then run window by window (``_windows.py``), and methods that
        need the whole network at once (``module``) refuse.
    """

    model: LoadedModel
    x: torch.Tensor
    target: ResolvedTarget | None
    budget_mb: int
    checks: dict[str, Any] = field(default_factory=dict)
    resolver: Callable[[torch.Tensor], ResolvedTarget] | None = None
    windows: Any = None
    _activation_bytes: int | None = None
    #: The network gradient passes run: None until decided, then the model's or its checkpointed copy
    #: (``checkpointing.py``) when a gradient pass of the whole input would not fit the budget.
    _gradient_module: nn.Module | None = None
    #: The channels-last copy gradient passes run through (``layout.py``); None: the network's own layout.
    _gradient_layout: LayoutChoice | None = None
    #: Set by :meth:`planner` for a method of many gradient passes: the next gradient pass checks the copy.
    _gradient_layout_check: LayoutChoice | None = None

    @property
    def module(self) -> nn.Module:
        """The network, for methods that run it on the whole input.

        Raises
        ------
        MethodError
            The model runs by sliding windows and the method does not.
        """
        if self.windows is not None:
            raise MethodError(
                "This model runs by sliding windows (its spec's sliding_window), and this method needs the whole "
                "network at once: it does not run window by window.",
                "Use a method that does: vanilla gradient, input x gradient, integrated gradients, SmoothGrad, "
                "Grad-CAM, Grad-CAM++, occlusion, RISE, LIME, KernelSHAP or HiPe.",
            )
        return self.model.module

    @property
    def probe_input(self) -> torch.Tensor:
        """An input the network takes as it is: the whole input, or one window's."""
        return self.windows.probe_input() if self.windows is not None else self.x

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[2:])

    @property
    def dim(self) -> int:
        return self.x.ndim - 2

    def planner(self, gradients: bool, through_gradients: bool = False, passes: int = 0) -> BatchPlanner:
        """A batch planner for forward-only or gradient passes under the budget.

        With sliding windows a sample is a whole volume (its copy, mask and
        gradient); the windows' own work is sized by the windowed model, and
        gradient samples go one at a time. ``through_gradients``: the batches
        run through :meth:`gradients`, so a pass over the budget may run as
        checkpointed segments (``checkpointing.py``) instead of being refused.
        ``passes``: how many gradient passes the batches hold; from
        ``layout.TRIAL_MIN_GRADIENT_PASSES`` on, they run in the faster memory
        layout of the network (``layout.py``): the choice an earlier run or the
        estimate made, else one made now, checked on the first batch.
        """
        if self.windows is not None:
            return BatchPlanner(3 * self.x.numel() * self.x.element_size(), self.budget_mb, 1 if gradients else self.model.max_batch)
        if self._activation_bytes is None:
            measured = activation_bytes(self.module, self.x) if self.model.takes_hooks else None
            self._activation_bytes = measured if measured is not None else UNMEASURED_ACTIVATION_FACTOR * self.x.numel() * 4
        per_sample = self._activation_bytes * (GRADIENT_MEMORY_FACTOR if gradients else 1) + 2 * self.x.numel() * self.x.element_size()
        if gradients and through_gradients and per_sample > self.budget_mb * 2**20 and self._can_checkpoint():
            per_sample = self._use_checkpointing(per_sample) + 2 * self.x.numel() * self.x.element_size()
        elif gradients and through_gradients and self._gradient_module is None:
            self._gradient_module = self.model.module
        if gradients and through_gradients and passes >= layout.TRIAL_MIN_GRADIENT_PASSES and self._gradient_module is self.model.module:
            if can_use_channels_last(self.model.module, self.x):
                choice = layout_for_probe(self.model.module, self.x)  # made by an earlier run or the estimate, else now
                self._gradient_layout_check = choice if choice.module is not None else None
                if choice.module is None:
                    self.checks["layout"] = {**choice.record, "gradients": "contiguous"}
        return BatchPlanner(per_sample, self.budget_mb, self.model.max_batch, first_batch=1 if gradients else 2)

    def _can_checkpoint(self) -> bool:
        return self.model.takes_hooks and self.model.kind != "export" and isinstance(self.model.module, nn.Module)

    def _use_checkpointing(self, plain_bytes: int) -> int:
        """Run gradient passes as checkpointed segments; their estimated bytes per sample, or a refusal.

        Raises
        ------
        MemoryBudgetError
            Even checkpointed, one gradient pass needs more than the budget (raised before it allocates).
        """
        room = self.budget_mb * 2**20 - 2 * self.x.numel() * self.x.element_size()
        plan = plan_checkpointing(self.model.module, self.x, room, GRADIENT_MEMORY_FACTOR)
        need = -(-(max(plan.plain_bytes, plain_bytes)) // 2**20)
        low = -(-(plan.peak_bytes + 2 * self.x.numel() * self.x.element_size()) // 2**20)
        if not plan.fits:
            raise MemoryBudgetError(
                f"One gradient pass of this model on this image needs about {need} MiB, and about {low} MiB with "
                f"activation checkpointing ({len(plan.segments)} segments), over the memory budget of {self.budget_mb} MiB.",
                f"Raise the budget (memory_budget_mb={low + low // 2} or NAPARI_XAI_MEMORY_BUDGET_MB), give a fully "
                "convolutional network a sliding_window in its spec so it runs window by window, or give the spec a "
                "coarser input_spacing.",
            )
        try:
            self._gradient_module = checkpointed(self.model.module, plan.segments)
        except (TypeError, RuntimeError, AttributeError) as err:  # a network that refuses deepcopy
            raise MemoryBudgetError(
                f"One gradient pass of this model on this image needs about {need} MiB, over the memory budget of "
                f"{self.budget_mb} MiB, and the network cannot be copied for activation checkpointing ({type(err).__name__}).",
                f"Raise the budget (memory_budget_mb={need + need // 2} or NAPARI_XAI_MEMORY_BUDGET_MB), or give the "
                "spec a coarser input_spacing.",
            ) from err
        self.checks["checkpointing"] = {
            "segments": len(plan.segments),
            "plain_estimate_mb": need,
            "checkpointed_estimate_mb": low,
        }
        return plan.peak_bytes

    def resolve_from(self, output: torch.Tensor) -> ResolvedTarget:
        """The target, resolved from ``output`` (the model's output on ``x``) when it is not yet known."""
        if self.target is None:
            assert self.resolver is not None, "an unresolved target needs a resolver"
            self.target = self.resolver(output.detach() if isinstance(output, torch.Tensor) else output)
        return self.target

    def forward(self, xb: torch.Tensor, module: nn.Module | None = None) -> torch.Tensor:
        """The model's output on a batch; a model that raises becomes a :class:`ModelError`.

        The first pass of a one-pass method (target still unresolved) is the
        run's pass on the unperturbed input, and its failures are reported
        like the engine's own first pass. ``module`` is the network to run
        (default the model's; a gradient pass may run its checkpointed copy).
        """
        module = self.module if module is None else module
        if self.target is not None:
            return module(xb)
        try:
            return module(xb)
        except XAIError:
            raise
        except Exception as err:  # any failure inside a user's model
            raise model_failure(err, xb) from err

    def scores(self, xb: torch.Tensor, module: nn.Module | None = None) -> torch.Tensor:
        """Target scores ``(N,)`` for a batch, without autograd; ``module``: a copy of the network to run instead."""
        if self.windows is not None:
            return self.windows.scores(xb)
        with torch.inference_mode():
            out = self.forward(xb, module)
            return self.resolve_from(out).score(out).float()

    def gradients(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the target score w.r.t. each input of a batch, and the scores.

        Raises
        ------
        MethodError
            The score does not depend differentiably on the input.
        MemoryBudgetError
            The pass keeps more than the budget for its backward pass.
        """
        if self.windows is not None:
            return self.windows.gradients(xb)
        if self._gradient_layout is not None:
            copy = self._gradient_layout.module
            return self._gradients(self._gradient_layout.prepare(xb), copy, copy)
        if self._gradient_layout_check is not None:
            return self._check_gradient_layout(xb)
        if self._gradient_module is None:  # a one-pass method: no probe pass, unless the plain pass meets the budget
            try:
                result = self._gradients(xb, self.model.module)
            except MemoryBudgetError as err:
                if not self._can_checkpoint():
                    raise
                # the plain pass was stopped at the budget: the same pass, checkpointed (or a refusal naming both)
                self._use_checkpointing(int(self.budget_mb * 2**20 * 1.01))
                err.__traceback__ = None  # drop the stopped pass's frames (and tensors) now
            else:
                self._gradient_module = self.model.module
                return result
        return self._gradients(xb, self._gradient_module)

    def _check_gradient_layout(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This batch's gradients in the network's own layout; its channels-last copy is kept if it gives the same ones."""
        choice, self._gradient_layout_check = self._gradient_layout_check, None
        own = self._gradients(xb, self._gradient_module)
        try:
            copied = self._gradients(choice.prepare(xb), choice.module, choice.module)
        except MemoryBudgetError:
            raise
        except Exception as err:  # the copy ran forward passes; a backward pass may still refuse the layout
            self.checks["layout"] = {**choice.record, "gradients": f"contiguous: channels-last failed ({type(err).__name__})"}
            return own
        same = all(agrees(c, o) for c, o in zip(copied, own))
        self.checks["layout"] = {**choice.record, "gradients": "channels_last" if same else "contiguous: channels-last gave other gradients"}
        if same:
            self._gradient_layout = choice
        return own

    def _gradients(self, xb: torch.Tensor, module: nn.Module, owner: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``owner``: whose parameters the budget does not count (default the model's; a layout copy has its own)."""
        with gradient_budget(self.budget_mb, self.model.module if owner is None else owner):
            grad, score = input_gradient(lambda xg: self.forward(xg, module), lambda out: self.resolve_from(out).score(out), xb)
        return grad, score.float()


def record_completeness(ctx: MethodContext, attribution: np.ndarray, baseline_score: float) -> None:
    """Record how closely a map sums to f(x) - f(baseline) (the completeness axiom) in ``ctx.checks``."""
    expected = ctx.target.score_value - baseline_score
    got = float(np.asarray(attribution, dtype=np.float64).sum())
    ctx.checks["completeness"] = {
        "attribution_sum": got,
        "score_difference": expected,
        "baseline_score": baseline_score,
        "delta": got - expected,
        "relative_delta": abs(got - expected) / max(abs(expected), 1e-12),
    }


def baseline_value(x: torch.Tensor, kind: str) -> float:
    """A constant reference intensity in model space: ``zeros``, ``min`` or ``mean`` of the input."""
    if kind == "zeros":
        return 0.0
    if kind == "min":
        return float(x.min())
    if kind == "mean":
        return float(x.mean())
    raise ValueError(kind)
