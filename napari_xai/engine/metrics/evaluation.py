"""How far a map can be trusted: :func:`evaluate_iter` (a generator) and :func:`evaluate`.

One evaluation measures, for one map of one scan:

- *faithfulness* (deletion and insertion curves against a random order),
- the *model-randomisation sanity check* (the same method on a randomised copy of the model),
- *completeness* where the method promises it,
- *localisation* against a mask (relevance mass, pointing game, relevance rank),
- where the evidence lies relative to the *anatomy* (the shortcut check).

Every key of the returned dict is documented, with its published
reference, in :data:`napari_xai.engine.metrics.definitions.METRICS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable

import numpy as np
import torch

from ..attribution import Attribution
from ..errors import MethodError, TargetError, XAIError
from ..call_hooks import shared_eval_mode
from ..explain import explain_iter
from ..image import ScanImage
from ..scan_input import as_scan
from ..methods.toolkit import MethodContext
from ..prepare import checked_budget, forward_once, model_failure, module_device
from ..model_space import ModelSpaceInput, map_to_model_space, region_to_model_space, to_model_space, to_scan_grid
from ..models.loading import LoadedModel, as_loaded_model
from ..progress import Progress, relay, run_to_end
from ..registry import ParamSpec, get_method
from ..targets import ResolvedTarget, resolve_target
from .anatomy import as_anatomy, outside_anatomy
from .definitions import GROUPS, METRICS, SANITY_SPEARMAN_THRESHOLD, TOP_FRACTION
from .faithfulness import REMOVALS, CurveJob, removal_reference, trace_curves, voxel_ranks
from .localisation import localisation, scan_mask
from .randomisation import cascade_checkpoints, independent_layers, randomised_copy, weight_layers
from .similarity import map_similarity

#: Settings of an evaluation, checked like a method's parameters.
PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("steps", int, 20, "Steps of the deletion and insertion curves (each step is one forward pass per curve).", min=2, max=1000),
    ParamSpec("removal", str, "blur", "What a removed voxel becomes: a blurred copy of the input, noise, or a constant baseline.", choices=REMOVALS),
    ParamSpec("blur_sigma", float, 5.0, "Gaussian sigma of removal='blur', in voxels of the model grid.", min=0.0, max=256.0),
    ParamSpec("baseline", str, "zeros", "Constant of removal='baseline': zeros, or the input's minimum or mean (model-space intensities).", choices=("zeros", "min", "mean")),
    ParamSpec("score", str, "auto", "Score on the curves: the class probability (softmax; auto for classifiers) or the target's raw score (logit; auto otherwise).", choices=("auto", "probability", "logit")),
    ParamSpec("seed", int, 0, "Seed of the random order, the noise and the randomised weights.", min=0, max=2**31 - 1),
    ParamSpec("sanity_steps", int, 3, "Checkpoints of the cascading randomisation, and layers randomised one at a time.", min=1, max=64),
    ParamSpec("top_fraction", float, TOP_FRACTION, "Fraction of the highest voxels whose location outside_anatomy_top_share reports.", min=1e-6, max=1.0),
    ParamSpec("pointing_tolerance_mm", float, 0.0, "The pointing game counts a hit within this distance of the mask (mm).", min=0.0, max=1000.0),
)
#: Progress units of one phase (the curves, or one rerun of the method).
_UNITS = 1000


def validate_settings(given: dict[str, Any]) -> dict[str, Any]:
    """All evaluation settings, defaults filled in, each checked (MethodError naming the fix)."""
    names = {p.name for p in PARAMS}
    unknown = sorted(set(given) - names)
    if unknown:
        raise MethodError(f"evaluate has no setting(s) {unknown}.", f"Its settings are {sorted(names)}.")
    return {p.name: p.coerce(given[p.name], "evaluate") if p.name in given else p.default for p in PARAMS}


def selected_groups(metrics: Iterable[str] | str | None) -> tuple[str, ...]:
    """The groups to compute, from group names or metric keys (None: all)."""
    if metrics is None:
        return GROUPS
    wanted = [metrics] if isinstance(metrics, str) else list(metrics)
    groups = set()
    for name in wanted:
        if name in GROUPS:
            groups.add(name)
        elif name in METRICS:
            groups.add(METRICS[name].group)
        else:
            raise MethodError(f"evaluate knows no metric or group {name!r}.", f"Use groups {list(GROUPS)} or keys {sorted(METRICS)}.")
    return tuple(g for g in GROUPS if g in groups)


@dataclass
class Setup:
    """What every evaluation of one model on one scan shares (a Compare run builds it once).

    Parameters
    ----------
    loaded : LoadedModel
        The model.
    scan : ScanImage
        The scan.
    msi : ModelSpaceInput
        The scan as the model sees it.
    output : torch.Tensor
        The model's output on the unperturbed input.
    budget_mb : int
        Memory budget for one batch.
    settings : dict
        Validated evaluation settings.
    groups : tuple of str
        Parts of the evaluation to run.
    anatomy, anatomy_source
        Anatomy mask on the scan grid (None until needed) and ``given`` / ``derived``.
    random_curves : dict
        Random-order curves, per target, so methods on one target share them.
    """

    loaded: LoadedModel
    scan: ScanImage
    msi: ModelSpaceInput
    output: torch.Tensor
    budget_mb: int
    settings: dict[str, Any]
    groups: tuple[str, ...]
    anatomy_arg: Any = None
    anatomy: np.ndarray | None = None
    anatomy_source: str | None = None
    random_curves: dict[Any, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def x(self) -> torch.Tensor:
        return self.msi.tensor.to(module_device(self.loaded.module))

    def anatomy_mask(self) -> np.ndarray:
        """The anatomy, derived from the scan on first use unless given."""
        if self.anatomy is None:
            self.anatomy, self.anatomy_source = as_anatomy(self.anatomy_arg, self.scan)
        return self.anatomy

    def resolve(self, class_index: int | None, region: np.ndarray | None, reduce: str) -> ResolvedTarget:
        """The target as explain resolves it, on this setup's forward pass."""
        region_model = None
        if region is not None:
            region = np.asarray(region)
            if region.shape != self.scan.spatial_shape:
                raise TargetError(
                    f"The region has shape {region.shape} but the image has {self.scan.spatial_shape}.",
                    "Give the region on the image's own grid (the one the map was made for).",
                )
            region_model = region_to_model_space(region.astype(bool), self.msi)
        resolved = resolve_target(self.output, self.x, self.loaded.spec, class_index, region_model, reduce)
        resolved.score_value = float(resolved.score(self.output)[0])
        return resolved


def make_setup(
    model: Any,
    image: Any,
    *,
    anatomy: Any = None,
    metrics: Iterable[str] | str | None = None,
    spec: Any = None,
    channel_axis: int | None = None,
    memory_budget_mb: int | None = None,
    **params: Any,
) -> Setup:
    """Load, map into model space and run the unperturbed forward pass once (see :class:`Setup`)."""
    settings = validate_settings(params)
    groups = selected_groups(metrics)
    loaded = as_loaded_model(model, spec)
    scan = as_scan(image, channel_axis=channel_axis)
    budget = checked_budget(memory_budget_mb)
    msi = to_model_space(scan, loaded.spec)
    with shared_eval_mode(loaded.module):
        output = forward_once(loaded.module, msi.tensor.to(module_device(loaded.module)))
    setup = Setup(loaded, scan, msi, output, budget, settings, groups, anatomy_arg=anatomy)
    if anatomy is not None:
        setup.anatomy_mask()  # a bad mask is reported before any work
    return setup


def evaluate_iter(
    model: Any,
    image: Any,
    attribution: Attribution | np.ndarray,
    *,
    mask: Any = None,
    anatomy: Any = None,
    metrics: Iterable[str] | str | None = None,
    target: int | str | None = None,
    region: np.ndarray | None = None,
    reduce: str | None = None,
    spec: Any = None,
    channel_axis: int | None = None,
    memory_budget_mb: int | None = None,
    **params: Any,
) -> Generator[Progress, None, dict[str, Any]]:
    """Measure how far a map can be trusted, as a generator of progress events.

    Closing the generator stops the work at the next event (as for
    :func:`napari_xai.engine.explain_iter`); the model is never changed (the
    randomisation test works on deep copies).

    Parameters
    ----------
    model : torch.nn.Module, LoadedModel, str or PathLike
        The model the map explains.
    image : numpy.ndarray, ScanImage, SimpleITK.Image, str or PathLike
        The scan the map was made for.
    attribution : Attribution or numpy.ndarray
        The map (from :func:`explain`), on the scan's grid. A bare array
        gets every metric except the sanity check (which reruns the method).
    mask : numpy.ndarray or ScanImage, optional
        A region the evidence should lie in (a lesion), on the scan's grid,
        for ``mass_in_mask``, ``pointing_game`` and ``relevance_rank``.
    anatomy : numpy.ndarray or ScanImage, optional
        The body, on the scan's grid; None: derived from the scan (see
        :func:`napari_xai.engine.metrics.derive_anatomy`).
    metrics : iterable of str, optional
        Groups (``localisation``, ``anatomy``, ``completeness``,
        ``faithfulness``, ``sanity``) or keys to compute; None: all. Keys of
        groups not computed are present with the value None.
    target : int or str, optional
        For a bare array: the class it explains (None: the predicted class).
        An Attribution carries its own.
    region : numpy.ndarray, optional
        Segmentation targets: the region the map explains, when it was given
        to :func:`explain` (a map of the predicted mask needs none).
    reduce : {"sum", "mean"}, optional
        Segmentation targets: the reduction over the region (default: the map's).
    spec, channel_axis, memory_budget_mb
        As for :func:`explain_iter`.
    **params
        Settings (:data:`PARAMS`): ``steps``, ``removal``, ``blur_sigma``,
        ``baseline``, ``score``, ``seed``, ``sanity_steps``,
        ``top_fraction``, ``pointing_tolerance_mm``.

    Yields
    ------
    Progress

    Returns
    -------
    dict
        Plain JSON types; every key of :data:`METRICS`, plus
        ``random_deletion_curve``, ``random_insertion_curve``, ``settings``,
        ``anatomy_source``, ``anatomy_fraction``, ``method``, ``score_kind``
        and ``timings``. Also stored as ``attribution.metrics`` (and so in
        its provenance) when ``attribution`` is an :class:`Attribution`.

    Raises
    ------
    XAIError
        Bad input, with the fix.
    """
    yield Progress(0, 0, "evaluate: preparing")
    setup = make_setup(model, image, anatomy=anatomy, metrics=metrics, spec=spec, channel_axis=channel_axis, memory_budget_mb=memory_budget_mb, **params)
    return (yield from evaluate_prepared(setup, attribution, mask=mask, target=target, region=region, reduce=reduce))


def evaluate(
    model: Any,
    image: Any,
    attribution: Attribution | np.ndarray,
    *,
    mask: Any = None,
    anatomy: Any = None,
    metrics: Iterable[str] | str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Run :func:`evaluate_iter` to completion and return its dict.

    Takes the same arguments as :func:`evaluate_iter`, plus ``on_progress``
    and ``should_cancel`` as :func:`napari_xai.engine.explain` does.

    Raises
    ------
    Cancelled
        ``should_cancel`` returned True.
    """
    gen = evaluate_iter(model, image, attribution, mask=mask, anatomy=anatomy, metrics=metrics, **params)
    return run_to_end(gen, on_progress, should_cancel, "evaluate")


def evaluate_prepared(
    setup: Setup,
    attribution: Attribution | np.ndarray,
    *,
    mask: Any = None,
    target: int | str | None = None,
    region: np.ndarray | None = None,
    reduce: str | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """The evaluation proper, on a :class:`Setup` (shared by :func:`evaluate_iter` and Compare)."""
    t0 = time.perf_counter()
    values, method, method_params, class_index, reduce = _unpack(attribution, setup.scan, target, reduce)
    resolved = _resolve_for_map(setup, attribution, class_index, region, reduce)
    mask_arr = None if mask is None else scan_mask(mask, setup.scan, "mask", TargetError, "Paint the region the evidence should lie in, or leave the mask unset.")
    s = setup.settings
    result: dict[str, Any] = {key: None for key in METRICS}
    result.update(random_deletion_curve=None, random_insertion_curve=None)
    groups = setup.groups
    n_reruns = _sanity_reruns(setup, method) if "sanity" in groups else 0
    total = _UNITS * (("faithfulness" in groups) + n_reruns) or 1
    timings: dict[str, float] = {}

    if "localisation" in groups and mask_arr is not None:
        result.update(localisation(values, mask_arr, _spacing_zyx(setup.scan), s["pointing_tolerance_mm"]))
    if "anatomy" in groups:
        anatomy = setup.anatomy_mask()
        result.update(outside_anatomy(values, anatomy, s["top_fraction"]))
        result["anatomy_fraction"] = float(anatomy.mean())
    if "completeness" in groups and isinstance(attribution, Attribution):
        result["completeness_error"] = completeness_error(attribution.checks)
    t_local = time.perf_counter()
    timings["localisation_s"] = t_local - t0

    done = 0
    if "faithfulness" in groups:
        yield Progress(0, total, "evaluate: deletion and insertion curves")
        curves, score_kind = yield from _faithfulness(setup, values, resolved, total)
        result.update(curves)
        result["score_kind"] = score_kind
        done = _UNITS
    timings["faithfulness_s"] = time.perf_counter() - t_local

    if n_reruns:
        t_s = time.perf_counter()
        sim = yield from _sanity(setup, values, method, method_params, resolved, region, done, total)
        result["sanity_similarity"] = sim
        full = sim["spearman"]
        result["sanity_passed"] = None if full is None else bool(full < SANITY_SPEARMAN_THRESHOLD)
        timings["sanity_s"] = time.perf_counter() - t_s
    yield Progress(total, total, "evaluate: done")
    timings["total_s"] = time.perf_counter() - t0
    result.update(
        method=method,
        target=resolved.to_dict(),
        anatomy_source=setup.anatomy_source,
        settings={**s, "metrics": list(groups), "sanity_spearman_threshold": SANITY_SPEARMAN_THRESHOLD},
        timings=timings,
    )
    result.setdefault("anatomy_fraction", None)
    result.setdefault("score_kind", None)
    if isinstance(attribution, Attribution):
        attribution.metrics = result
    return result


def completeness_error(checks: dict[str, Any]) -> float | None:
    """Relative completeness (or LRP conservation) error recorded by the method, None where it promises neither."""
    for key in ("completeness", "conservation"):
        value = checks.get(key)
        if isinstance(value, dict) and value.get("relative_delta") is not None:
            return float(value["relative_delta"])
    return None


def _unpack(attribution: Any, scan: ScanImage, target: Any, reduce: str | None) -> tuple[np.ndarray, str | None, dict[str, Any], Any, str]:
    if isinstance(attribution, Attribution):
        if get_method(attribution.method).output != "map":
            raise MethodError(
                f"{attribution.method_title} makes a synthetic image, not an attribution map of this scan, so it cannot be evaluated.",
                "Evaluate a map method (e.g. integrated gradients, occlusion).",
            )
        values = np.asarray(attribution.values, dtype=np.float32)
        tgt = attribution.target
        class_index = tgt.get("class_index")
        red = reduce or tgt.get("reduce") or "sum"
        method, method_params = attribution.method, dict(attribution.params)
    else:
        values = np.asarray(attribution, dtype=np.float32)
        method, method_params, class_index, red = None, {}, target, reduce or "sum"
    if values.shape != scan.spatial_shape:
        raise TargetError(
            f"The map has shape {values.shape} but the scan has {scan.spatial_shape}.",
            "Evaluate a map on the scan it was made for (the same image given to explain).",
        )
    if not np.isfinite(values).all():
        raise TargetError("The map holds NaN or infinite values.", "Recompute the map; a map with NaN cannot be ranked.")
    return values, method, method_params, class_index, red


def _resolve_for_map(setup: Setup, attribution: Any, class_index: Any, region: Any, reduce: str) -> ResolvedTarget:
    if isinstance(attribution, Attribution) and attribution.target.get("task") == "segmentation" and region is None and attribution.target.get("region_source") == "given":
        raise TargetError(
            "The map explains a class over a region you gave, and the evaluation needs that region to score the model the same way.",
            "Pass the same region: evaluate(..., region=<the mask given to explain>).",
        )
    return setup.resolve(class_index, region, reduce)


def _spacing_zyx(scan: ScanImage) -> tuple[float, ...]:
    return tuple(float(v) for v in scan.geometry.spacing[::-1])


def _score_kind(setup: Setup, resolved: ResolvedTarget) -> str:
    kind = setup.settings["score"]
    if kind == "auto":
        return "probability" if resolved.task == "classification" and setup.output.shape[1] > 1 else "logit"
    if kind == "probability" and resolved.task != "classification":
        raise MethodError(
            f"score='probability' needs a classifier, but the target is a {resolved.task} target.",
            "Use score='logit' (the target's raw score) or 'auto'.",
        )
    return kind


def _faithfulness(setup: Setup, values: np.ndarray, resolved: ResolvedTarget, total: int) -> Generator[Progress, None, tuple[dict[str, Any], str]]:
    s = setup.settings
    x = setup.x
    kind = _score_kind(setup, resolved)
    module = setup.loaded.module

    def score_fn(xb: torch.Tensor) -> torch.Tensor:
        try:
            out = module(xb)
        except XAIError:
            raise
        except Exception as err:  # a failure inside the user's model
            raise model_failure(err, xb) from err
        if kind == "probability":
            return torch.softmax(out.float(), dim=1)[:, resolved.class_index]
        return resolved.score(out).float()

    reference = removal_reference(x, s["removal"], s["blur_sigma"], s["baseline"], s["seed"])
    model_map = map_to_model_space(values, setup.msi)
    rng = np.random.default_rng(s["seed"])
    ranks = torch.from_numpy(voxel_ranks(model_map, rng)).to(x.device)
    jobs = [CurveJob("deletion", ranks, "deletion"), CurveJob("insertion", ranks, "insertion")]
    key = (resolved.class_index, None if resolved.region is None else hash(resolved.region.numpy().tobytes()), resolved.reduce, kind)
    cached = setup.random_curves.get(key)
    if cached is None:  # the random order does not depend on the map: one Compare run traces it once per target
        random_ranks = torch.from_numpy(voxel_ranks(np.zeros(model_map.shape, dtype=np.float32), rng)).to(x.device)
        jobs += [CurveJob("random_deletion", random_ranks, "deletion"), CurveJob("random_insertion", random_ranks, "insertion")]
    with shared_eval_mode(module):  # the planner's probe pass too: BatchNorm statistics must not move
        planner = MethodContext(setup.loaded, x, resolved, setup.budget_mb).planner(gradients=False)
        curves = yield from relay(trace_curves(x, reference, jobs, s["steps"], score_fn, planner), 0, _UNITS, total, "evaluate: ")
    if cached is None:
        cached = {k: curves[k] for k in ("random_deletion", "random_insertion")}
        setup.random_curves[key] = cached
    curves.update(cached)
    out: dict[str, Any] = {}
    for name in ("deletion", "insertion", "random_deletion", "random_insertion"):
        curve = curves[name]
        out[f"{name}_auc"] = curve["auc"]
        out[f"{name}_curve"] = {"fraction": curve["fraction"], "score": curve["score"]}
    out["faithfulness_gain"] = (out["random_deletion_auc"] - out["deletion_auc"]) + (out["insertion_auc"] - out["random_insertion_auc"])
    return out, kind


def _region_on_scan(setup: Setup, resolved: ResolvedTarget) -> np.ndarray | None:
    """The original model's predicted region on the scan grid, so the randomised models explain the same voxels."""
    region = resolved.region.numpy()
    if region.shape != tuple(setup.msi.tensor.shape[2:]):
        return None  # output grid differs from the input grid: the randomised model's own prediction is used
    return to_scan_grid(region.astype(np.float32), setup.msi) > 0.5


def _sanity_reruns(setup: Setup, method: str | None) -> int:
    if method is None:
        return 0
    n = len(weight_layers(setup.loaded.module))
    steps = setup.settings["sanity_steps"]
    return len(cascade_checkpoints(n, steps)) + len(independent_layers(n, steps))


def _sanity(
    setup: Setup,
    values: np.ndarray,
    method: str,
    method_params: dict[str, Any],
    resolved: ResolvedTarget,
    region: np.ndarray | None,
    done: int,
    total: int,
) -> Generator[Progress, None, dict[str, Any]]:
    layers = weight_layers(setup.loaded.module)
    steps, seed = setup.settings["sanity_steps"], setup.settings["seed"]
    plan = [("cascading", k, layers[-k:]) for k in cascade_checkpoints(len(layers), steps)]
    plan += [("independent", i, [layers[i]]) for i in independent_layers(len(layers), steps)]
    entries: dict[str, list[dict[str, Any]]] = {"cascading": [], "independent": []}
    target = resolved.class_index if resolved.task != "regression" else None
    region = _region_on_scan(setup, resolved) if resolved.task == "segmentation" and region is None else region
    for n, (mode, which, names) in enumerate(plan):
        copy = randomised_copy(setup.loaded, names, seed + 1 + n)
        label = f"top {which} of {len(layers)} layers" if mode == "cascading" else f"layer {names[0]!r} alone"
        entry: dict[str, Any] = {"layers_randomised": len(names), "layer": names[0]}  # cascading: randomised from the top down to it
        rerun = explain_iter(copy, setup.scan, method, target, region=region, reduce=resolved.reduce, memory_budget_mb=setup.budget_mb, **method_params)
        try:
            randomised = yield from relay(rerun, done + _UNITS * n, _UNITS, total, f"evaluate: sanity check, {label}: ")
            entry.update(map_similarity(values, randomised.values))
        except XAIError as err:  # e.g. the randomised model's output overflows: that step has no map
            entry.update(spearman=None, ssim=None, error=str(err))
        entries[mode].append(entry)
    full = entries["cascading"][-1] if entries["cascading"] else {"spearman": None, "ssim": None}
    return {"spearman": full.get("spearman"), "ssim": full.get("ssim"), "layers": len(layers), **entries}
