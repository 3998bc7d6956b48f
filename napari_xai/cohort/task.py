"""One scan of a cohort, as one Dask task: read, predict, explain with each method, measure, write, mark complete.

Runs on a worker. The model is never sent to it (a loaded model is not
picklable by design): the task carries the model's path and the worker loads
it once and keeps it (:func:`cached_model`, through the session's model cache). Everything the task writes lives
under the scan's own folder; the completion marker is written last and
atomically, so a folder without one is redone by the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_xai.engine.errors import ImageError, XAIError

from .inputs import CohortInput

#: Name of the completion marker in each scan's folder.
MARKER = "complete.json"


@dataclass(frozen=True)
class ModelRef:
    """How a worker loads the model: a path (and spec), never the object.

    Parameters
    ----------
    path : str
        Model file or spec JSON, as for :func:`napari_xai.engine.load_model`.
    spec : str, optional
        Spec overriding the sidecar.
    trust_pickle : bool
        Allow a pickled whole-model file.
    options : tuple of (str, value)
        Further :func:`~napari_xai.engine.load_model` options (e.g. ``folds``
        of an nnU-Net folder, ``trust_bundle_code``), as sorted pairs so the
        reference stays hashable.
    """

    path: str
    spec: str | None = None
    trust_pickle: bool = False
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class CohortRequest:
    """What to do with every scan (the same for all tasks).

    Parameters
    ----------
    model : ModelRef
    model_identity : str
        SHA-256 of the weights, checked on the worker (a model file changed mid-run fails its scans).
    methods : tuple of str
    params : dict
        Method name to its parameters.
    target : int, str or None
    reduce : str
    map_format : str
    metrics : bool
        Run the engine's evaluation where it exists (the checks are always kept).
    report : bool
        Write a PDF report per scan.
    torch_threads : int
        Intra-op threads for torch on the worker; 0: the worker's cores over its task threads.
    memory_budget_mb : int or None
    """

    model: ModelRef
    model_identity: str
    methods: tuple[str, ...]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: int | str | None = None
    reduce: str = "sum"
    map_format: str = ".nii.gz"
    metrics: bool = True
    report: bool = False
    torch_threads: int = 1
    memory_budget_mb: int | None = None

    def key(self) -> str:
        """A hash of everything that changes the outputs (not threads or memory budget)."""
        record = asdict(self)
        record.pop("torch_threads")
        record.pop("memory_budget_mb")
        return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def worker_name() -> str:
    """The Dask worker running this code, or ``local`` outside one."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def _worker_share_of_cores() -> int:
    """This worker's cores divided by the tasks it runs at once (1 outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return 1
    nthreads = getattr(getattr(worker, "state", worker), "nthreads", None) or 1
    return max(1, available_cores() // int(nthreads))


def available_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def cached_model(ref: ModelRef) -> tuple[Any, bool]:
    """The worker's loaded model for ``ref``, loaded on first use through the process's model cache.

    The cache (:data:`napari_xai.session.models.MODELS`) is keyed by the file,
    its modification time and the load options; two tasks running at once on
    one worker share the module, as two runs in the napari or Slicer hosts do
    (the engine's hooks act only in the thread that set them, and a run never
    changes the model).

    Returns
    -------
    tuple
        The :class:`~napari_xai.engine.LoadedModel` and whether this call loaded it.
    """
    from napari_xai.session.models import MODELS

    return MODELS.load(ref.path, ref.spec, trust_pickle=ref.trust_pickle, **dict(ref.options))


def scan_dir(out_dir: str | os.PathLike, item: CohortInput) -> Path:
    """The folder of one scan's outputs."""
    return Path(out_dir) / "scans" / item.scan_id


def completed_rows(item: CohortInput, request: CohortRequest, out_dir: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The rows of an earlier run of the same request whose outputs are all there, else None."""
    marker = scan_dir(out_dir, item) / MARKER
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("request") != request.key() or record.get("image") != item.image:
        return None
    rows = record.get("rows") or []
    if {r.get("method") for r in rows} != set(request.methods):
        return None
    for r in rows:
        for key in ("map_path", "report_path"):
            if r.get(key) and not Path(r[key]).is_file():
                return None
    return [{**r, "status": "skipped"} for r in rows]


def run_scan(item: CohortInput, request: CohortRequest, out_dir: str) -> list[dict[str, Any]]:
    """Explain one scan with every method; never raises: a failure comes back as rows with its message.

    Returns
    -------
    list of dict
        One row per method (see :data:`napari_xai.cohort.table.COLUMNS`).
    """
    import torch

    base = {"scan_id": item.scan_id, "image": item.image, "mask": item.mask, "label": item.label, "worker": worker_name()}
    threads = torch.get_num_threads()
    torch.set_num_threads(int(request.torch_threads) or _worker_share_of_cores())
    try:
        return _run(item, request, Path(out_dir), base)
    except Exception as err:  # noqa: BLE001 - a scan's failure is recorded, the cohort goes on
        return [{**base, "status": "failed", "error": failure_message(err), "method": m, "model_loaded": base.get("model_loaded") and i == 0} for i, m in enumerate(request.methods)]
    finally:
        torch.set_num_threads(threads)


def failure_message(err: BaseException) -> str:
    """An XAIError's own message; for anything else its type, message and where it was raised."""
    if isinstance(err, XAIError):
        return str(err)
    where = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    place = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(err).__name__}: {err}{place}"


def _run(item: CohortInput, request: CohortRequest, out: Path, base: dict[str, Any]) -> list[dict[str, Any]]:
    from napari_xai.engine.image_io import read_image
    from napari_xai.engine.trust import trust_metrics
    from napari_xai.session.jobs import Job, model_prediction

    model, loaded_now = cached_model(request.model)
    base["model_loaded"] = loaded_now
    if model.identity != request.model_identity:
        raise ImageError(
            f"The model file {request.model.path} changed during the cohort (weights hash {model.identity[:12]}, expected {request.model_identity[:12]}).",
            "Keep the model file unchanged while a cohort runs, then rerun the cohort.",
        )
    t0 = time.perf_counter()
    scan = read_image(item.image)
    mask = None
    if item.mask:
        mask = read_image(item.mask).array.astype(bool)
        if mask.shape != scan.spatial_shape:
            raise ImageError(f"The mask {item.mask} has shape {mask.shape} but the scan has {scan.spatial_shape}.", "Give each scan a mask on its own grid.")
    time_load = time.perf_counter() - t0
    prediction = model_prediction(model, scan)
    label_index = _label_index(item.label, prediction.labels)
    folder = scan_dir(out, item)
    folder.mkdir(parents=True, exist_ok=True)
    rows, maps, metrics_list = [], [], []
    for method in request.methods:
        t1 = time.perf_counter()
        job = Job(model, scan, method, request.target, None, request.reduce, request.params.get(method, {}), memory_budget_mb=request.memory_budget_mb)
        attribution = job.run()
        t2 = time.perf_counter()
        # the scan's own folder, without a completion marker: what is there is an interrupted or outdated run of this scan
        map_path = attribution.save(folder / f"{item.scan_id}_{method}{request.map_format}", overwrite=True)
        metrics = trust_metrics(attribution, model=model, image=scan, mask=mask, evaluate=request.metrics, on_error="record")
        t3 = time.perf_counter()
        maps.append(attribution)
        metrics_list.append(metrics)
        probs = prediction.probabilities
        rows.append({
            **base,
            "model_loaded": loaded_now and method == request.methods[0],
            "status": "done",
            "method": method,
            "task": prediction.task,
            "prediction": prediction.class_index,
            "prediction_label": prediction.label,
            "probability": prediction.score if prediction.task == "classification" else None,
            "label_probability": probs[label_index] if label_index is not None and label_index < len(probs) else None,
            "label_agrees": (prediction.class_index == label_index) if label_index is not None else None,
            "target": attribution.target.get("class_index"),
            "target_label": attribution.target.get("label"),
            "score": attribution.target.get("score"),
            "time_load_s": time_load,
            "time_method_s": t2 - t1,
            "time_metrics_s": t3 - t2,
            "map_path": str(map_path),
            **metrics,
        })
    if request.report:
        from napari_xai.engine.report import write_report

        report = write_report(scan, maps, folder / f"{item.scan_id}_report.pdf", trust=metrics_list, image_path=item.image)
        for r in rows:
            r["report_path"] = str(report.pdf)
    _write_marker(folder, {"request": request.key(), "image": item.image, "rows": rows})
    return rows


def _label_index(label: str | None, labels: list[str]) -> int | None:
    """The class index a given label names (an index, or a class name, case-insensitive)."""
    if label is None or label == "":
        return None
    text = str(label).strip()
    try:
        return int(float(text))
    except ValueError:
        pass
    lowered = [name.lower() for name in labels]
    return lowered.index(text.lower()) if text.lower() in lowered else None


def _write_marker(folder: Path, record: dict[str, Any]) -> None:
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER)
