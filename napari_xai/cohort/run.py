"""Running a cohort on Dask distributed: a LocalCluster sized to the machine, or an existing scheduler.

Each scan is one task (:func:`napari_xai.cohort.task.run_scan`); the model
travels as its path and is loaded once per worker. Scans whose outputs are
complete for the same request are skipped; a failed scan is listed with its
message and the others go on.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from napari_xai.engine.errors import MethodError, XAIError
from napari_xai.engine.models.loading import load_model
from napari_xai.session.jobs import method_params

from .inputs import CohortInput, collect_inputs
from .summary import write_summary
from .table import normalise_row, write_table
from .task import CohortRequest, ModelRef, available_cores, completed_rows, failure_message, run_scan


@dataclass
class CohortResult:
    """What a cohort run produced.

    Parameters
    ----------
    rows : list of dict
        The table's rows (one per scan and method), in input order.
    table_csv, table_parquet : Path
        The table (Parquet is None without pyarrow).
    summary_pdf, summary_png : Path
        The summary page.
    """

    rows: list[dict[str, Any]]
    table_csv: Path
    table_parquet: Path | None
    summary_pdf: Path
    summary_png: Path

    def count(self, status: str) -> int:
        """Number of scans with this status (``done``, ``skipped``, ``failed``)."""
        return len({r["scan_id"] for r in self.rows if r.get("status") == status})


def plan_cluster(n_scans: int, workers: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """Workers and torch threads per worker so that ``workers x threads <= cores``.

    One task per worker at a time; by default half as many workers as cores
    (each gets two intra-op threads, which convolutions use well), never more
    workers than scans.

    Returns
    -------
    tuple of int
        ``(n_workers, torch_threads)``.
    """
    cores = cores or available_cores()
    if workers is None:
        workers = max(1, min(n_scans, cores // 2))
    workers = max(1, int(workers))
    return workers, max(1, cores // workers)


def run_cohort(
    inputs: Iterable[str | os.PathLike | CohortInput],
    model: str | os.PathLike,
    methods: Sequence[str],
    out: str | os.PathLike,
    *,
    params: dict[str, Any] | None = None,
    target: int | str | None = None,
    reduce: str = "sum",
    map_format: str = ".nii.gz",
    metrics: bool = True,
    report: bool = False,
    spec: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    model_options: dict[str, Any] | None = None,
    memory_budget_mb: int | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    client: Any = None,
    progress: bool = True,
) -> CohortResult:
    """Explain every scan of a cohort with every method, on Dask; write maps, the table and the summary.

    Parameters
    ----------
    inputs : iterable
        Files, folders, glob patterns or CSV tables (see :func:`collect_inputs`), or :class:`CohortInput` items.
    model : str or PathLike
        A model file or spec (loaded on each worker from this path).
    methods : sequence of str
        Method names.
    out : str or PathLike
        Output folder: ``scans/<scan_id>/`` per scan, ``cohort.csv``,
        ``cohort.parquet``, ``summary.pdf`` and ``summary.png``.
    params : dict, optional
        Method parameters; each method takes those it knows.
    target, reduce
        As for :func:`napari_xai.engine.explain`, for every scan.
    map_format : str
        Map file extension.
    metrics : bool
        Run the engine's evaluation of each map where it exists (the checks are always kept).
    report : bool
        A PDF report per scan.
    spec, trust_pickle, model_options
        As for :func:`napari_xai.engine.load_model` (``model_options``: its further keywords, e.g. ``folds``).
    memory_budget_mb : int, optional
        Per batch, on each worker.
    scheduler : str, optional
        Address of an existing Dask scheduler (its workers must see the same paths).
    workers : int, optional
        LocalCluster workers (default: see :func:`plan_cluster`).
    processes : bool
        LocalCluster workers in processes (True) or threads of this process.
    client : distributed.Client, optional
        Use this client (and its cluster) as it is.
    progress : bool
        Show a progress bar (scans done, time left) on stderr.

    Returns
    -------
    CohortResult

    Raises
    ------
    XAIError
        Bad model, methods, parameters or inputs (before anything runs).
    """
    given = list(inputs)
    items = [i for i in given if isinstance(i, CohortInput)]
    raw = [i for i in given if not isinstance(i, CohortInput)]
    items += collect_inputs(raw) if raw else []
    if not items:
        raise XAIError("The cohort holds no scan.", "Give scan files, folders, glob patterns or a CSV.")
    if not methods:
        raise MethodError("No method was chosen.", "Give at least one --method.")
    per_method = method_params(methods, dict(params or {}))
    model_path = str(Path(model).resolve())
    options = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (model_options or {}).items()))
    loaded = load_model(model_path, spec=spec, trust_pickle=trust_pickle, **dict(options))  # fail here, not on every worker
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    done_before: dict[str, list[dict[str, Any]]] = {}
    request = CohortRequest(
        ModelRef(model_path, str(Path(spec).resolve()) if spec else None, trust_pickle, options),
        loaded.identity,
        tuple(methods),
        per_method,
        target,
        reduce,
        map_format,
        metrics,
        report,
        0,
        memory_budget_mb,
    )
    for item in items:
        rows = completed_rows(item, request, out_dir)
        if rows is not None:
            done_before[item.scan_id] = rows
    pending = [i for i in items if i.scan_id not in done_before]
    results: dict[str, list[dict[str, Any]]] = dict(done_before)
    if pending:
        results.update(_run_on_dask(pending, request, out_dir, scheduler, workers, processes, client, progress, len(items), len(done_before)))
    rows = [normalise_row(r) for item in items for r in results[item.scan_id]]
    csv_path, parquet_path = write_table(rows, out_dir)
    pdf, png = write_summary(rows, out_dir, model_name=loaded.name, methods=list(methods))
    return CohortResult(rows, csv_path, parquet_path, pdf, png)


def _run_on_dask(
    pending: list[CohortInput],
    request: CohortRequest,
    out_dir: Path,
    scheduler: str | None,
    workers: int | None,
    processes: bool,
    client: Any,
    progress: bool,
    total: int,
    skipped: int,
) -> dict[str, list[dict[str, Any]]]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise XAIError("Cohort runs need Dask distributed, which is not installed.", "Install the cohort extra: pip install 'napari-xai[cohort]'.") from err
    own_client = own_cluster = None
    if client is None:
        if scheduler:
            try:
                client = own_client = Client(scheduler, timeout="20s")
            except OSError as err:
                raise XAIError(f"No Dask scheduler answered at {scheduler} ({err}).", "Check the address (e.g. tcp://host:8786) and that the scheduler runs.") from err
            threads = 0  # decided on each worker from its own cores and threads
        else:
            n_workers, threads = plan_cluster(len(pending), workers)
            own_cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes, dashboard_address=None, silence_logs=logging.ERROR)
            client = own_client = Client(own_cluster)
    else:
        threads = 0
    request = replace(request, torch_threads=threads)
    results: dict[str, list[dict[str, Any]]] = {}
    bar = _progress_bar(total, skipped, progress)
    try:
        futures = {client.submit(run_scan, item, request, str(out_dir), pure=False): item for item in pending}
        failed = 0
        for future in as_completed(futures):
            item = futures[future]
            try:
                rows = future.result()
            except Exception as err:  # noqa: BLE001 - a lost worker or an unpicklable result: the scan fails, the cohort goes on
                rows = [{"scan_id": item.scan_id, "image": item.image, "mask": item.mask, "label": item.label, "status": "failed", "error": failure_message(err), "method": m} for m in request.methods]
            results[item.scan_id] = rows
            failed += any(r.get("status") == "failed" for r in rows)
            if bar is not None:
                bar.set_postfix(failed=failed, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
    return results


def _progress_bar(total: int, skipped: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=skipped, unit="scan", desc="cohort", file=sys.stderr, dynamic_ncols=True)
