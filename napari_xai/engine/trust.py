"""The trust metrics of one map: what a report's trust table and a cohort's table carry.

Two sources. The axiom checks a method measured during its own run
(completeness for integrated gradients and DeepLIFT, in
``Attribution.checks``) are always there. The engine's evaluation,
``napari_xai.engine.evaluate(model, image, attribution, ...)`` (deletion and
insertion curves, the model-randomisation sanity check, localisation against a
mask, the share of relevance outside the anatomy and the shortcut flag), is
used when the installed engine has it: it is looked up, not assumed, so a
report or a cohort made with an engine without it carries the checks alone.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

from .attribution import Attribution
from .errors import XAIError
from .metrics.definitions import TABLE_KEYS, canonical_key, column_doc, column_values, reading

#: Metric names in the order tables show them (others follow, sorted): the
#: engine's one ordered list of trust columns (``metrics.definitions.METRIC_COLUMNS``),
#: which the napari dock and the Slicer module show too.
METRIC_ORDER: tuple[str, ...] = TABLE_KEYS

#: Keys of an evaluation's result that describe the run, not the map (they would clash with table columns).
_NOT_METRICS = frozenset({"method", "target", "timings", "settings"})


def evaluator() -> Callable[..., dict[str, Any]] | None:
    """The engine's ``evaluate`` function, or None where this engine has none."""
    import importlib

    fn = getattr(importlib.import_module(__package__), "evaluate", None)
    return fn if callable(fn) and not inspect.ismodule(fn) else None


def check_metrics(attribution: Attribution) -> dict[str, Any]:
    """The metrics a map already carries, flat: its method's checks and any earlier evaluation.

    ``completeness_error`` is ``|sum of the map - (score - baseline score)|``
    over ``|score - baseline score|``, as :func:`napari_xai.engine.explain`
    records it for integrated gradients and DeepLIFT. An evaluation stored on
    the map (an ``metrics`` attribute, where the engine keeps one) adds its
    scalar metrics.
    """
    out: dict[str, Any] = {}
    completeness = attribution.checks.get("completeness")
    if isinstance(completeness, dict) and completeness.get("relative_delta") is not None:
        out["completeness_error"] = float(completeness["relative_delta"])
    stored = getattr(attribution, "metrics", None)
    if isinstance(stored, dict):
        out.update(scalar_metrics(stored))
    return out


def scalar_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The one-number entries of an evaluation, for table cells.

    The columns of the one list (:data:`METRIC_ORDER`) the dict holds, read
    where each column says (``sanity_spearman`` is the sanity check's
    ``sanity_similarity["spearman"]``), then any other top-level number
    (e.g. ``anatomy_fraction``). Curves, records, settings and timings are
    left out.
    """
    out = column_values(result)
    for k, v in result.items():
        if k in _NOT_METRICS or k in out or isinstance(v, (dict, list, tuple, str)):
            continue
        if v is None or isinstance(_plain(v), (bool, int, float)):
            out[k] = v
    return {k: _plain(v) for k, v in out.items()}


def metric_reading(name: str) -> str:
    """How to read a metric (``lower is better`` ...), from its definition in the one list."""
    try:
        return reading(column_doc(name))
    except KeyError:
        return ""


def metric_label(name: str) -> str:
    """A metric's label in tables: its title in the one list, else the name with spaces."""
    try:
        return column_doc(name).title
    except KeyError:
        return name.replace("_", " ")


def trust_metrics(
    attribution: Attribution,
    *,
    model: Any = None,
    image: Any = None,
    mask: Any = None,
    evaluate: bool = True,
    on_error: str = "raise",
    **options: Any,
) -> dict[str, Any]:
    """The metrics of one map: its own checks, plus the engine's evaluation where it exists.

    Parameters
    ----------
    attribution : Attribution
        The map.
    model, image : optional
        The model and scan it explains; the evaluation needs both.
    mask : numpy.ndarray, optional
        A region on the scan's grid (e.g. the lesion) for the localisation metrics.
    evaluate : bool
        False: the checks only (the evaluation re-runs the model many times).
    on_error : {"raise", "record"}
        What a failing evaluation does: raise, or leave the checks and say why
        under ``metrics_error`` (a cohort's or a report's map stays usable).
    **options
        Passed on to the evaluation where its signature takes them.

    Returns
    -------
    dict
        Metric name to value (plain Python types).
    """
    metrics = check_metrics(attribution)
    fn = evaluator() if evaluate else None
    if fn is not None and model is not None and image is not None:
        accepted = inspect.signature(fn).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        kwargs = {k: v for k, v in {"mask": mask, **options}.items() if v is not None and (takes_any or k in accepted)}
        try:
            metrics.update(scalar_metrics(fn(model, image, attribution, **kwargs)))
        except Exception as err:  # noqa: BLE001 - recorded on request: the map itself is fine
            if on_error != "record":
                raise
            metrics["metrics_error"] = str(err) if isinstance(err, XAIError) else f"{type(err).__name__}: {err}"
    return {k: _plain(v) for k, v in metrics.items()}


def ordered_names(rows: list[dict[str, Any]]) -> list[str]:
    """The metric names present in any of ``rows``, in :data:`METRIC_ORDER` first."""
    present = {canonical_key(k) for row in rows for k in row}
    return [k for k in METRIC_ORDER if k in present] + sorted(present - set(METRIC_ORDER))


def format_metric(value: Any) -> str:
    """A metric as a table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars, so metrics go into JSON, CSV and Parquet unchanged."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
