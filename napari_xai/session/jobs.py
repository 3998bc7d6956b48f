"""What to explain (:class:`Job`) and the run of a list of jobs, with progress, cancel and a cost estimate first.

Every host builds jobs from its own widgets and runs them through
:func:`run_jobs` (a generator of the engine's ``Progress`` events, closed to
cancel) in its own kind of thread: napari's thread worker, a Python thread
polled by Slicer's QTimer (:class:`~napari_xai.session.background.BackgroundRun`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

import numpy as np

from napari_xai.engine import Attribution, MethodError, Prediction, Progress, ScanImage, explain_iter, get_method
from napari_xai.engine import predict as engine_predict
from napari_xai.engine.estimate import Estimate, format_seconds
from napari_xai.engine.estimate import estimate as engine_estimate
from napari_xai.engine.progress import relay, run_to_end

from .models import get_model
from .slices import embed_slice, slice_region, slice_scan


@dataclass
class Job:
    """One explanation to compute.

    Parameters
    ----------
    model : LoadedModel, nn.Module or path
    scan : ScanImage
        The host's image with its geometry (already copied off the host's data).
    method : str
        Registry name.
    target : int, str or None
        Class index or name; None: the predicted class.
    region : numpy.ndarray or None
        Boolean mask on the scan grid (segmentation models).
    reduce : str
        ``sum`` or ``mean`` over the region.
    params : dict
        Method parameters.
    slice_index : int or None
        For a 2D model on a volume: the slice (along z) explained; the map
        is put back on the volume's grid, zero elsewhere.
    memory_budget_mb : int or None
        Working memory for one batch (None: the engine's default).
    """

    model: Any
    scan: ScanImage
    method: str
    target: Any = None
    region: np.ndarray | None = None
    reduce: str = "sum"
    params: dict[str, Any] = field(default_factory=dict)
    slice_index: int | None = None
    memory_budget_mb: int | None = None

    def engine_input(self) -> tuple[ScanImage, np.ndarray | None]:
        """The image and region the engine is given: the volume, or the job's slice of it."""
        k = self.slice_index
        image = slice_scan(self.scan, k) if k is not None else self.scan
        return image, slice_region(self.region, k)

    def explain_iter(self) -> Generator[Progress, None, Attribution]:
        """The engine's run of this job; its map on the job's scan grid."""
        image, region = self.engine_input()
        attribution = yield from explain_iter(
            get_model(self.model), image, self.method, self.target, region=region, reduce=self.reduce,
            memory_budget_mb=self.memory_budget_mb, **self.params,
        )
        return attribution if self.slice_index is None else embed_slice(attribution, self.scan, self.slice_index)

    def run(self, on_progress: Callable[[Progress], None] | None = None, should_cancel: Callable[[], bool] | None = None) -> Attribution:
        """This job's map, computed in the calling thread (the command lines, a cohort's task, scripts).

        The engine's :func:`~napari_xai.engine.progress.run_to_end` over
        :meth:`explain_iter`: ``on_progress`` gets every event,
        ``should_cancel`` is polled after each.

        Raises
        ------
        Cancelled
            ``should_cancel`` returned True.
        """
        return run_to_end(self.explain_iter(), on_progress, should_cancel, self.method)

    def estimate(self) -> Estimate:
        """The engine's cost estimate of this job (a timed probe)."""
        image, region = self.engine_input()
        return engine_estimate(get_model(self.model), image, self.method, self.target, region=region,
                               memory_budget_mb=self.memory_budget_mb, **self.params)


def run_jobs(jobs: list[Job]) -> Generator[Progress, None, list[Attribution]]:
    """Run the jobs one after the other: yields overall progress, returns their attributions.

    ``done``/``total`` count thousandths of the whole set of jobs. Closing the
    generator closes the engine's generator of the job in flight (cancel).
    """
    results: list[Attribution] = []
    n = len(jobs)
    for i, job in enumerate(jobs):
        prefix = f"[{i + 1}/{n}] " if n > 1 else ""
        results.append((yield from relay(job.explain_iter(), 1000 * i, 1000, 1000 * n, prefix)))
    yield Progress(1000 * n, 1000 * n, "done")
    return results


def method_params(methods: Sequence[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's share of ``params`` (those it takes), validated: one set of parameters for several methods.

    Raises
    ------
    MethodError
        Unknown method, a parameter no chosen method takes, or an invalid value.
    """
    specs = [get_method(name) for name in methods]
    known = {p.name for spec in specs for p in spec.params}
    unknown = sorted(set(params) - known)
    if unknown:
        listing = "; ".join(f"{spec.name}: {', '.join(p.name for p in spec.params) or '(none)'}" for spec in specs)
        raise MethodError(
            f"No chosen method takes the parameter(s) {', '.join(unknown)} (--param {', '.join(unknown)}).",
            f"Use the parameters of the chosen methods ({listing}); see napari-xai-explain --list-methods.",
        )
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        own = {k: v for k, v in params.items() if k in {p.name for p in spec.params}}
        spec.validate_params(own)
        out[spec.name] = own
    return out


def estimate_jobs(jobs: list[Job]) -> list[Estimate]:
    """The engine's cost estimate of each job, as :func:`run_jobs` would run it (a timed probe per job)."""
    return [job.estimate() for job in jobs]


def describe_estimates(estimates: list[Estimate]) -> str:
    """One line for the status bar: the total, and each job's estimate when there are several."""
    if len(estimates) == 1:
        return "Estimate: " + estimates[0].describe()
    total = sum(e.seconds for e in estimates)
    return f"Estimate: about {format_seconds(total)} for {len(estimates)} methods (" + "; ".join(
        f"{e.method} {format_seconds(e.seconds)}" for e in estimates) + ")"


def model_prediction(model: Any, scan: ScanImage, slice_index: int | None = None) -> Prediction:
    """The model's decision on ``scan`` (or on its slice ``slice_index``), for a host's target menu."""
    image = slice_scan(scan, slice_index) if slice_index is not None else scan
    return engine_predict(get_model(model), image)


def target_choices(prediction: Prediction | None, labels: list[str] | None) -> list[tuple[str, Any]]:
    """Target menu entries ``(text, value)``: the predicted class first (value None), then each class by name."""
    first = f"{prediction.describe()}" if prediction is not None else "predicted class"
    names = (prediction.labels if prediction is not None else None) or labels or []
    if prediction is not None and prediction.task == "regression":
        return [(first, None)]
    return [(first, None)] + [(f"{k}: {name}", k) for k, name in enumerate(names)]
