"""Compare: several methods on one scan, each map evaluated, in a table with a ranking.

One Compare run loads the model, maps the scan into model space, runs the
unperturbed forward pass, derives the anatomy and traces the random-order
deletion/insertion curves once, and shares them between the methods (each
method still runs its own forward pass inside :func:`explain_iter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Mapping

import numpy as np

from ..attribution import Attribution
from ..errors import MethodError
from ..explain import explain_iter
from ..progress import Progress, relay, run_to_end
from ..registry import get_method
from .table import table_row
from .evaluation import evaluate_prepared, make_setup

@dataclass
class Comparison:
    """The result of :func:`compare`.

    Parameters
    ----------
    maps : dict
        Method name -> :class:`Attribution` (each with its ``metrics``).
    metrics : dict
        Method name -> the full :func:`evaluate` dict (curves included).
    table : list of dict
        One row per method, in ranking order: ``method``, ``title``, ``rank``
        and the :data:`~napari_xai.engine.metrics.table.TABLE_KEYS` columns.
    ranking : list of str
        Method names, most trustworthy first (see :func:`rank_methods`).
    """

    maps: dict[str, Attribution]
    metrics: dict[str, dict[str, Any]]
    table: list[dict[str, Any]]
    ranking: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the table, the ranking and every method's metrics (no maps)."""
        return {"table": self.table, "ranking": self.ranking, "metrics": self.metrics}


def rank_methods(results: Mapping[str, dict[str, Any]]) -> list[str]:
    """Methods ordered by how far their maps earn trust on this model and scan.

    The rule, in order: maps that fail the sanity check go last (one not
    checked sits between); then the higher ``faithfulness_gain`` (the
    curves' advantage over a random order); then the higher ``mass_in_mask``
    when a mask was given; then the name.
    """

    def key(name: str) -> tuple:
        r = results[name]
        sanity = {True: 0, None: 1, False: 2}[r.get("sanity_passed")]
        gain = r.get("faithfulness_gain")
        mass = r.get("mass_in_mask")
        return (sanity, -(gain if gain is not None else -np.inf), -(mass if mass is not None else -np.inf), name)

    return sorted(results, key=key)


def evaluate_maps_iter(
    model: Any,
    image: Any,
    maps: Mapping[str, Attribution | np.ndarray],
    *,
    mask: Any = None,
    anatomy: Any = None,
    metrics: Iterable[str] | str | None = None,
    region: np.ndarray | None = None,
    spec: Any = None,
    channel_axis: int | None = None,
    memory_budget_mb: int | None = None,
    **params: Any,
) -> Generator[Progress, None, tuple[dict[str, dict[str, Any]], list[str]]]:
    """Evaluate maps already made of one scan, sharing one setup; returns ``(results by name, ranking)``.

    What hosts run for "evaluate every map of this scan": the model is
    loaded and run on the scan once, the anatomy derived once, the random
    curves traced once per target. Arguments as for :func:`evaluate_iter`.
    """
    if not maps:
        raise MethodError("There is no map to evaluate.", "Make a saliency map first (Run), then evaluate it.")
    yield Progress(0, 0, "evaluate: preparing")
    setup = make_setup(model, image, anatomy=anatomy, metrics=metrics, spec=spec, channel_axis=channel_axis, memory_budget_mb=memory_budget_mb, **params)
    results: dict[str, dict[str, Any]] = {}
    n = len(maps)
    for i, (name, attribution) in enumerate(maps.items()):
        gen = evaluate_prepared(setup, attribution, mask=mask, region=region)
        results[name] = yield from relay(gen, 1000 * i, 1000, 1000 * n, f"[{i + 1}/{n}] {name}: " if n > 1 else "")
    yield Progress(1000 * n, 1000 * n, "evaluate: done")
    return results, rank_methods(results)


def _method_list(methods: Iterable[str] | Mapping[str, dict[str, Any]], method_params: Mapping[str, dict[str, Any]] | None) -> list[tuple[str, dict[str, Any]]]:
    items = list(methods.items()) if isinstance(methods, Mapping) else [(m, {}) for m in methods]
    if not items:
        raise MethodError("No method was given to compare.", "Name two or more methods, e.g. ['vanilla_gradient', 'integrated_gradients', 'occlusion'].")
    out = []
    for name, params in items:
        spec = get_method(name)
        if spec.output != "map":
            raise MethodError(f"{spec.title} makes a synthetic image, not a map, so it cannot be compared.", "Leave it out of the comparison.")
        out.append((spec.name, {**dict(params or {}), **dict((method_params or {}).get(spec.name, {}))}))
    return out


def compare_iter(
    model: Any,
    image: Any,
    methods: Iterable[str] | Mapping[str, dict[str, Any]],
    target: int | str | None = None,
    *,
    region: np.ndarray | None = None,
    reduce: str = "sum",
    mask: Any = None,
    anatomy: Any = None,
    metrics: Iterable[str] | str | None = None,
    method_params: Mapping[str, dict[str, Any]] | None = None,
    spec: Any = None,
    channel_axis: int | None = None,
    memory_budget_mb: int | None = None,
    **params: Any,
) -> Generator[Progress, None, Comparison]:
    """Run each method on one scan, evaluate each map, and rank them; a generator of progress events.

    Parameters
    ----------
    model, image, target, region, reduce, spec, channel_axis, memory_budget_mb
        As for :func:`napari_xai.engine.explain_iter`; every method explains
        the same target (None: the predicted class, resolved once).
    methods : iterable of str, or dict
        Method names, or name -> parameters.
    mask, anatomy, metrics, **params
        As for :func:`napari_xai.engine.evaluate_iter`.
    method_params : dict, optional
        Name -> parameters (merged over those in ``methods``).

    Returns
    -------
    Comparison
    """
    items = _method_list(methods, method_params)
    yield Progress(0, 0, "compare: preparing")
    setup = make_setup(model, image, anatomy=anatomy, metrics=metrics, spec=spec, channel_axis=channel_axis, memory_budget_mb=memory_budget_mb, **params)
    resolved = setup.resolve(target, region, reduce)
    class_index = resolved.class_index if resolved.task != "regression" else None
    n = len(items)
    maps: dict[str, Attribution] = {}
    results: dict[str, dict[str, Any]] = {}
    total = 2000 * n
    for i, (name, kwargs) in enumerate(items):
        prefix = f"[{i + 1}/{n}] {get_method(name).title}: "
        explaining = explain_iter(setup.loaded, setup.scan, name, class_index, region=region, reduce=reduce, memory_budget_mb=setup.budget_mb, **kwargs)
        maps[name] = yield from relay(explaining, 2000 * i, 1000, total, prefix)
        evaluating = evaluate_prepared(setup, maps[name], mask=mask, region=region, reduce=reduce)
        results[name] = yield from relay(evaluating, 2000 * i + 1000, 1000, total, prefix)
    ranking = rank_methods(results)
    table = [{**table_row(name, results[name]), "rank": r + 1} for r, name in enumerate(ranking)]
    yield Progress(total, total, "compare: done")
    return Comparison(maps=maps, metrics=results, table=table, ranking=ranking)


def compare(
    model: Any,
    image: Any,
    methods: Iterable[str] | Mapping[str, dict[str, Any]],
    target: int | str | None = None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> Comparison:
    """Run :func:`compare_iter` to completion (``on_progress`` / ``should_cancel`` as for :func:`explain`)."""
    return run_to_end(compare_iter(model, image, methods, target, **kwargs), on_progress, should_cancel, "compare")


