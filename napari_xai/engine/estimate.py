"""What a run will cost before it starts: passes, seconds (from a timed probe) and peak memory.

:func:`estimate` maps the scan into model space as a run would, counts the
forward and backward passes the method needs for its parameters, times one
probe pass of the model (a forward pass, plus a backward pass for gradient
methods when it fits the budget) and measures the activations of that pass.
For a model run by sliding windows (the spec's ``sliding_window``), passes
are counted in windows and the probe is one window. Hosts show
:meth:`Estimate.describe` and ask before starting a run estimated above
:data:`CONFIRM_SECONDS`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from .budget import BatchPlanner, activation_bytes, batch_for_time
from .call_hooks import shared_eval_mode
from .checkpointing import CHECKPOINTED_METHODS, plan_checkpointing
from .errors import MemoryBudgetError, MethodError, XAIError
from .methods.toolkit import MethodContext, capture_activation, find_cam_layer, layout
from .methods.toolkit.layout import can_use_channels_last, layout_for_probe
from .prepare import model_failure, prepare_run
from .registry import per_axis
from .sliding_window import WindowPlan, plan_windows

#: Hosts ask before starting a run estimated longer than this, in seconds.
CONFIRM_SECONDS = 30.0


def confirm_seconds() -> float:
    """The threshold from ``NAPARI_XAI_CONFIRM_SECONDS`` (``inf``: never ask), else :data:`CONFIRM_SECONDS`."""
    try:
        return float(os.environ.get("NAPARI_XAI_CONFIRM_SECONDS", CONFIRM_SECONDS))
    except ValueError:
        return CONFIRM_SECONDS
#: Working memory of a gradient pass relative to a forward pass (as the methods plan it).
_GRADIENT_FACTOR = 3
#: Methods whose gradient passes run in the planner's batches (and in the faster memory layout); the
#: other gradient methods' passes follow each other one sample at a time (optimisation steps).
_BATCHED_GRADIENTS = frozenset({"integrated_gradients", "smoothgrad", "smoothgrad_sq", "vargrad"})
#: Forward-only methods that score their perturbed inputs in ``toolkit.scored_batches`` (so in the faster
#: layout); occlusion replays its windows incrementally in the network's own layout instead.
_SCORED_BATCHES = frozenset({"rise", "lime", "kernel_shap", "hipe", "score_cam"})


@dataclass
class Estimate:
    """The cost of one run, before it starts.

    Parameters
    ----------
    method : str
        Registry name.
    forward_passes : int
        Forward passes of the model, including the one that resolves the
        target and those that precede a backward pass.
    backward_passes : int
        Backward passes.
    unit : str
        What one pass covers: ``"volume"`` (the model-space input) or
        ``"window"`` (one sliding window).
    seconds : float
        Estimated wall time of the run.
    forward_seconds : float
        Timed probe: one forward pass of one unit.
    backward_seconds : float
        One forward + backward pass of one unit (timed when the method runs
        more than one and it fits the budget, else 3 x the forward pass).
    peak_mb : float
        Bound on the run's peak working memory in MiB: the largest batch the
        budget allows (batches sized to a time slice are often smaller), plus the model-space input, output and map, plus the
        model's own weights.
    budget_mb : int
        The memory budget the run would use.
    model_mb : float
        The model's weights and buffers.
    fits : bool
        False when the run would refuse (one pass over the budget); ``problem`` says why.
    problem : str or None
        The refusal message the run would raise, with its fix.
    approximate : bool
        The pass count is a bound or a guess (adaptive methods, unknown methods).
    model_shape : tuple of int
        The model-space spatial shape.
    """

    method: str
    forward_passes: int
    backward_passes: int
    unit: str
    seconds: float
    forward_seconds: float
    backward_seconds: float
    peak_mb: float
    budget_mb: int
    model_mb: float
    fits: bool
    problem: str | None
    approximate: bool
    model_shape: tuple[int, ...]

    @property
    def needs_confirmation(self) -> bool:
        """True when a host should ask before starting (over :func:`confirm_seconds`)."""
        return self.seconds > confirm_seconds()

    def describe(self) -> str:
        """One line for a host, e.g. ``about 2 min: 1 forward + 1 backward pass ...``."""
        if not self.fits:
            return f"will not run: {self.problem}"
        shape = "x".join(str(v) for v in self.model_shape)
        what = f"{self.forward_passes} forward + {self.backward_passes} backward pass(es)"
        if self.unit == "window":
            what += " of sliding windows"
        bound = "at most " if self.approximate else "about "
        return (
            f"{bound}{format_seconds(self.seconds)}: {what} on {shape} voxels; "
            f"peak memory at most {self.peak_mb:.0f} MiB (budget {self.budget_mb} MiB + model {self.model_mb:.0f} MiB)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        out = asdict(self)
        out["model_shape"] = list(self.model_shape)
        return out


def format_seconds(seconds: float) -> str:
    """``12 s``, ``3.5 min`` or ``1.2 h``."""
    if seconds < 90:
        return f"{max(seconds, 0.0):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def time_left(elapsed: float, fraction: float) -> float | None:
    """Seconds left from the time spent and the fraction done (None before anything is done)."""
    if fraction <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (1 - fraction) / fraction)


class RemainingTime:
    """Time left of a run from its progress, for a host's progress bar.

    Created when the run starts; :meth:`text` gives e.g. ``about 2.1 min left``.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def seconds(self, fraction: float) -> float | None:
        """Seconds left at ``fraction`` done (None before anything is done)."""
        return time_left(time.perf_counter() - self.started, fraction)

    def text(self, fraction: float) -> str:
        """``about N s left``, or an empty string while nothing is done."""
        left = self.seconds(fraction)
        return "" if left is None else f"about {format_seconds(left)} left"


def estimate(
    model: Any,
    image: Any,
    method: str,
    target: int | str | None = None,
    *,
    region: np.ndarray | None = None,
    spec: Any = None,
    channel_axis: int | None = None,
    memory_budget_mb: int | None = None,
    **params: Any,
) -> Estimate:
    """Estimate the passes, time and peak memory of :func:`explain` with these arguments.

    Parameters
    ----------
    model, image, method, target, region, spec, channel_axis, memory_budget_mb, **params
        As for :func:`napari_xai.engine.explain`; ``target`` is accepted for
        the same call signature and does not change the cost.

    Returns
    -------
    Estimate

    Raises
    ------
    XAIError
        The same input problems a run would raise (unknown method, bad
        parameters, an image that does not fit the model).
    """
    run = prepare_run(model, image, method, params, region, spec, channel_axis, memory_budget_mb)
    method_spec, checked, loaded, scan, budget, msi = run.method, run.params, run.loaded, run.scan, run.budget_mb, run.msi
    x = msi.tensor
    shape = tuple(x.shape[2:])
    gradients = "gradients" in method_spec.needs
    sw = loaded.spec.sliding_window
    plan = plan_windows(shape, sw) if sw else None
    probe = x if plan is None else x[(slice(None), slice(None)) + tuple(slice(0, min(r, n)) for r, n in zip(plan.roi, shape))]
    if plan is not None and probe.shape[2:] != plan.roi:
        probe = torch.nn.functional.pad(probe, [v for r, n in zip(reversed(plan.roi), reversed(probe.shape[2:])) for v in (0, r - n)])
    module = loaded.module
    with shared_eval_mode(module):
        t0 = time.perf_counter()
        try:
            act = activation_bytes(module, probe) if loaded.takes_hooks else None  # also warms the model up
            if act is None:
                _time_forward(module, probe, 1)
        except XAIError:
            raise
        except Exception as err:  # any failure inside a user's model, worded as a run words it
            raise model_failure(err, probe) from err
        t_fwd = time.perf_counter() - t0
        if plan is not None:  # many window passes: time a warm one (the first paid one-off costs)
            t_fwd = min(t_fwd, _time_forward(module, probe, 1))
        if act is None:
            act = 32 * probe.numel() * 4
        per_sample = act * (_GRADIENT_FACTOR if gradients else 1) + 2 * probe.numel() * probe.element_size()
        problem = None
        try:
            BatchPlanner(per_sample, budget, loaded.max_batch)
        except MemoryBudgetError as err:
            problem = str(err)
        checkpointing = None
        if problem is not None and plan is None and method_spec.name in CHECKPOINTED_METHODS and loaded.takes_hooks and loaded.kind != "export":
            # the run would use activation checkpointing (checkpointing.py): its estimate instead, one more forward per pass
            room = budget * 2**20 - 2 * probe.numel() * probe.element_size()
            checkpointing = plan_checkpointing(module, probe, room, _GRADIENT_FACTOR)
            if checkpointing.fits:
                per_sample, problem = checkpointing.peak_bytes + 2 * probe.numel() * probe.element_size(), None
        counter = _PASSES.get(method_spec.name)
        fwd, bwd = counter(checked, shape, 0) if counter else ((1, 1) if gradients else (1, 0))
        if not gradients and problem is None and loaded.max_batch is None and fwd > 50:
            # forward-only methods run batches, sized to a time slice (budget.BatchPlanner): time
            # the per-sample cost of the batch the run will use (one sample when one pass fills
            # the slice, as on a slow CPU), not of a larger, more efficient one
            # in the memory layout the run will choose for so many passes (methods/toolkit/layout.py)
            run_module, prepare = _run_layout(module, probe, method_spec.name in _SCORED_BATCHES and fwd >= layout.TRIAL_MIN_PASSES)
            t_one = _time_forward(run_module, probe, 1, prepare)
            memory_cap = max(1, (budget * 2**20) // max(per_sample, 1))
            batch = int(max(1, min(8, memory_cap, batch_for_time(t_one))))
            timed = t_one if batch == 1 else _time_forward(run_module, probe, batch, prepare)
            t_fwd = min(t_fwd, timed) if run_module is module else timed
        t_bwd = 3 * t_fwd
        if gradients and problem is None and checkpointing is None and (bwd > 1 or plan is not None):
            batched = method_spec.name in _BATCHED_GRADIENTS and plan is None
            back_module, prepare = _run_layout(module, probe, batched and bwd >= layout.TRIAL_MIN_GRADIENT_PASSES)
            # the first backward pass pays one-off costs (kernel selection): time a second one too
            first = _time_backward(back_module, probe, 1, prepare)
            t_bwd = min(first, _time_backward(back_module, probe, 1, prepare) or first) if first else t_bwd
            if first and batched and batch_for_time(t_bwd) >= 2 and 2 * per_sample <= budget * 2**20:
                pair = _time_backward(back_module, probe, 2, prepare)  # the run's batches hold two (budget.PAIR_SECONDS)
                t_bwd = min(t_bwd, pair / 2) if pair else t_bwd
        if checkpointing is not None and checkpointing.fits:
            t_bwd += t_fwd  # each segment runs again during the backward pass
        channels = _layer_channels(loaded, probe, checked) if "layer" in method_spec.needs and method_spec.name == "score_cam" else 0
    if channels:
        fwd, bwd = counter(checked, shape, channels)
    approximate = counter is None or method_spec.name in _BOUNDS
    if not (method_spec.one_pass and plan is None):
        fwd += 1  # the run's first pass resolves the target (a one-pass method resolves it from its own)
    if "layer" in method_spec.needs and not (checked.get("layer") or loaded.spec.cam_layer):
        fwd += 1  # a pass that finds the last layer with spatial output
    unit = "volume"
    if plan is not None:
        unit = "window"
        carrying = _carrying_windows(plan, run.region_model)
        occl = method_spec.name == "occlusion"
        per_volume_bwd = carrying
        per_volume_fwd = carrying if region is not None else plan.n_windows
        fwd_windows = per_volume_fwd + (_occlusion_window_runs(plan, checked, shape, carrying) if occl else (fwd - 1) * carrying)
        if method_spec.name in ("grad_cam", "grad_cam_pp"):
            fwd_windows += plan.n_windows  # the stitched activations cover every window
        fwd, bwd = fwd_windows, bwd * per_volume_bwd
    forward_only = max(fwd - bwd, 0)
    seconds = forward_only * t_fwd + bwd * t_bwd
    cap = max(1, (budget * 2**20) // max(per_sample, 1))
    batch = min(cap, max(forward_only, bwd, 1))
    volume_bytes = x.numel() * 4 * 4  # input, output channels (two), map
    model_bytes = sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))
    if plan is None:
        peak = (min(batch * per_sample, budget * 2**20) + volume_bytes + model_bytes) / 2**20
    else:  # windows are sized to leave room for the volume's buffers inside the budget
        peak = (min(batch * per_sample + volume_bytes, budget * 2**20) + model_bytes) / 2**20
    return Estimate(
        method=method_spec.name,
        forward_passes=int(fwd),
        backward_passes=int(bwd),
        unit=unit,
        seconds=float(seconds),
        forward_seconds=float(t_fwd),
        backward_seconds=float(t_bwd),
        peak_mb=float(peak),
        budget_mb=budget,
        model_mb=model_bytes / 2**20,
        fits=problem is None,
        problem=problem,
        approximate=approximate,
        model_shape=shape,
    )


def _run_layout(module: torch.nn.Module, probe: torch.Tensor, wanted: bool) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The network and the input layout the run's passes will take (``methods/toolkit/layout.py``), if ``wanted``."""
    if wanted and can_use_channels_last(module, probe):
        fast = layout_for_probe(module, probe)
        if fast.module is not None:
            return fast.module, fast.prepare
    return module, None


def _time_forward(module: torch.nn.Module, probe: torch.Tensor, batch: int, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Seconds per sample of one forward pass of a batch of ``batch`` copies of ``probe`` (laid out by ``prepare``)."""
    xb = probe.expand(batch, *probe.shape[1:]) if batch > 1 else probe
    if prepare is not None:
        xb = prepare(xb)
    t0 = time.perf_counter()
    with torch.inference_mode():
        module(xb)
    return (time.perf_counter() - t0) / batch


def _time_backward(module: torch.nn.Module, probe: torch.Tensor, batch: int = 1, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float | None:
    """Seconds of one forward + backward pass of a batch of ``batch`` copies of ``probe`` (None if the output is not differentiable)."""
    xb = probe.repeat(batch, *([1] * (probe.ndim - 1))) if batch > 1 else probe.detach().clone()
    xb = prepare(xb) if prepare is not None else xb
    t0 = time.perf_counter()
    try:
        with torch.enable_grad():
            xg = xb.detach().requires_grad_(True)
            out = module(xg)
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                return None
            torch.autograd.grad(out.float().sum(), xg, allow_unused=True)
    except Exception:  # the run reports a model failure itself; the estimate keeps its guess
        return None
    return time.perf_counter() - t0


def _layer_channels(loaded: Any, probe: torch.Tensor, params: dict[str, Any]) -> int:
    """Channels of the layer a CAM method reads (Score-CAM runs one pass per channel)."""
    ctx = MethodContext(loaded, probe, None, 1)  # type: ignore[arg-type]  # no target is needed to find a layer
    try:
        name = find_cam_layer(ctx, params.get("layer", ""))
    except MethodError:
        return 0
    with capture_activation(loaded.get_layer(name)) as store, torch.inference_mode():
        loaded.module(probe)
    act = store.get("activation")
    return int(act.shape[1]) if isinstance(act, torch.Tensor) and act.ndim >= 2 else 0


def _carrying_windows(plan: WindowPlan, region_model: np.ndarray | None) -> int:
    """Windows whose blended output meets the region on the model grid (all windows without a region)."""
    if region_model is None:
        return plan.n_windows
    idx = np.nonzero(region_model)
    box = tuple(slice(int(i.min()) + lo, int(i.max()) + lo + 1) for i, lo in zip(idx, plan.pad_low))
    return len(plan.overlapping(box))


def _occlusion_window_runs(plan: WindowPlan, params: dict[str, Any], shape: tuple[int, ...], carrying: int) -> int:
    """Window passes of windowed occlusion: each patch re-runs the carrying windows it meets (a bound)."""

    window = per_axis(params["window"], len(shape), "window", "Occlusion")
    # a window of edge r meets about (r + w) / s patch positions per axis
    per_window = math.prod(min(math.ceil(n / s), math.ceil((r + w) / s)) for n, r, w, s in zip(shape, plan.roi, window, per_axis(params["stride"], len(shape), "stride", "Occlusion")))
    return carrying * per_window


def _occlusion(p: dict, shape: tuple[int, ...], _c: int) -> tuple[int, int]:

    window = per_axis(p["window"], len(shape), "window", "Occlusion")
    stride = per_axis(p["stride"], len(shape), "stride", "Occlusion")
    n = math.prod(max(0, math.ceil((s_ - w) / st)) + 1 for s_, w, st in zip(shape, window, stride))
    return n, 0


def _smooth(p: dict, _s: tuple[int, ...], _c: int) -> tuple[int, int]:
    per = p["ig_steps"] if p["base"] == "integrated_gradients" else 1
    n = p["n_samples"] * per
    return n, n


def _hipe(p: dict, shape: tuple[int, ...], _c: int) -> tuple[int, int]:
    # a bound: every cell refined down to min_cell
    total, cells = 0, p["start_cells"]
    while True:
        total += cells ** len(shape)
        if min(n / cells for n in shape) <= p["min_cell"]:
            return total, 0
        cells *= 2


#: Network passes of one LRP rule per weighted layer, by composite: the rule re-runs the layer on
#: each (input part, weight part) pair it uses and takes that run's input gradient. Alpha-beta
#: uses four pairs on convolutions (positive and negative inputs and weights, for both signs),
#: two when beta is 0 (``epsilon_plus``: the negative share is not computed); epsilon and gamma one.
_LRP_RULE_PASSES = {"epsilon": 1, "epsilon_gamma_box": 1, "epsilon_plus": 2, "epsilon_alpha2_beta1": 4}


def _lrp(p: dict, _s: tuple[int, ...], _c: int) -> tuple[int, int]:
    # the pass that assigns rules (forward), the relevance pass (a forward with the rules; its
    # backward is the rules' own passes), and the rules' passes (forward + input gradient each)
    rule = _LRP_RULE_PASSES.get(p["composite"], 4)
    return 2 + rule, rule


def _kernel_shap(p: dict, _s: tuple[int, ...], _c: int) -> tuple[int, int]:
    from .methods.perturbation.kernel_shap import auto_samples

    n = p["n_samples"] or auto_samples(p["n_segments"])
    return n, 0


#: (forward passes, backward passes) a method needs beyond the target's, from its parameters.
_PASSES: dict[str, Callable[[dict, tuple[int, ...], int], tuple[int, int]]] = {
    "occlusion": _occlusion,
    "lime": lambda p, s, c: (p["n_samples"], 0),
    "kernel_shap": _kernel_shap,
    "rise": lambda p, s, c: (p["n_masks"], 0),
    "hipe": _hipe,
    "meaningful_perturbation": lambda p, s, c: (p["iterations"] + 2, p["iterations"]),
    "extremal_perturbation": lambda p, s, c: (p["iterations"] + 2, p["iterations"]),
    "vanilla_gradient": lambda p, s, c: (1, 1),
    "input_x_gradient": lambda p, s, c: (1, 1),
    "guided_backprop": lambda p, s, c: (1, 1),
    "deconvnet": lambda p, s, c: (1, 1),
    "lrp": _lrp,
    "integrated_gradients": lambda p, s, c: (p["steps"] + 1, p["steps"]),
    "smoothgrad": _smooth,
    "smoothgrad_sq": _smooth,
    "vargrad": _smooth,
    "deeplift": lambda p, s, c: (2, 1),
    "deeplift_shap": lambda p, s, c: (2 * p["n_baselines"], p["n_baselines"]),  # a forward of each reference, then forward + backward
    "grad_cam": lambda p, s, c: (1, 1),
    "grad_cam_pp": lambda p, s, c: (1, 1),
    "guided_grad_cam": lambda p, s, c: (2, 2),
    "cam": lambda p, s, c: (6, 1),
    "score_cam": lambda p, s, c: (c + 2, 0),
    "class_model_visualisation": lambda p, s, c: (p["steps"] + 2, p["steps"]),
    "deep_dream": lambda p, s, c: (p["steps"] + 2, p["steps"]),
}
#: Methods whose count is an upper bound (adaptive refinement).
_BOUNDS = frozenset({"hipe"})
