"""The cohort's table: one row per scan and method, written as CSV and Parquet."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

from napari_xai.engine.metrics.definitions import TABLE_KEYS, canonical_key

#: Every column of the table, in order, with what it holds. Trust metric columns
#: follow: the engine's one ordered list of trust columns
#: (:data:`napari_xai.engine.metrics.definitions.METRIC_COLUMNS`, which the
#: napari dock, the Slicer module and the report show too); they are empty
#: where a metric was not measured (no mask, --no-metrics). Tables written
#: before that list named two of them ``sanity_similarity_spearman`` /
#: ``sanity_similarity_ssim``: :func:`read_table` and a resumed run read those
#: under the new names (``METRIC_ALIASES``; docs/cohort.md).
COLUMNS: dict[str, str] = {
    "scan_id": "unique id of the scan in this cohort (file name, plus a hash of the path where two scans share a name)",
    "image": "path of the scan as given",
    "mask": "path of its mask (CSV mask column), or empty",
    "label": "the given label (CSV label column), or empty",
    "status": "done, skipped (complete outputs from an earlier run of the same request) or failed",
    "error": "the failure's message (status failed), else empty",
    "method": "attribution method (registry name)",
    "task": "classification, segmentation or regression",
    "prediction": "the model's predicted class index on the scan",
    "prediction_label": "its name",
    "probability": "softmax probability of the predicted class (classification)",
    "label_probability": "softmax probability of the given label's class (classification with a label)",
    "label_agrees": "the prediction equals the given label (empty without a label)",
    "target": "the class the map explains (index)",
    "target_label": "its name",
    "score": "the model's output for the target (the logit, or the reduced logits over the region)",
    "time_load_s": "seconds spent reading the scan (and mask)",
    "time_method_s": "seconds of explain() for this method",
    "time_metrics_s": "seconds spent on the trust metrics for this map",
    "model_loaded": "this task loaded the model (false: the worker's cached model was used)",
    "worker": "the Dask worker that ran the scan",
    "map_path": "the map (NIfTI/NRRD/MHA with the scan's geometry and a provenance sidecar .json)",
    "report_path": "the scan's PDF report (--report), or empty",
    "metrics_error": "why the engine's evaluation of this map failed (the map and the checks are kept), else empty",
}
METRIC_COLUMNS: tuple[str, ...] = TABLE_KEYS
ALL_COLUMNS: tuple[str, ...] = tuple(COLUMNS) + METRIC_COLUMNS
#: Columns that hold numbers (Parquet types; CSV cells are parsed back with them).
FLOAT_COLUMNS = {"probability", "label_probability", "score", "time_load_s", "time_method_s", "time_metrics_s"}
INT_COLUMNS = {"prediction", "target"}
BOOL_COLUMNS = {"label_agrees", "model_loaded", "sanity_passed", "pointing_game", "shortcut_flag"}


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row with every column (missing ones None); extra metric keys are kept after them, earlier column names renamed."""
    row = {canonical_key(k): v for k, v in row.items()}
    out = {c: row.get(c) for c in ALL_COLUMNS}
    out.update({k: v for k, v in row.items() if k not in out})
    return out


def write_table(rows: Sequence[dict[str, Any]], out_dir: str | Path, name: str = "cohort") -> tuple[Path, Path | None]:
    """Write ``<name>.csv`` and ``<name>.parquet`` (Parquet needs pyarrow; None when it is missing).

    Returns
    -------
    tuple of Path
        The CSV and the Parquet file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [normalise_row(r) for r in rows]
    columns = list(ALL_COLUMNS) + sorted({k for r in rows for k in r} - set(ALL_COLUMNS))
    csv_path = out / f"{name}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: _cell(r.get(c)) for c in columns})
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return csv_path, None
    arrays = {}
    for c in columns:
        kind = _arrow_type(pa, c, rows)
        values = [_typed(c, r.get(c)) for r in rows]
        if kind == pa.string():
            values = [None if v is None else str(v) for v in values]
        elif kind == pa.float64():
            values = [None if v is None else float(v) for v in values]
        arrays[c] = pa.array(values, type=kind)
    parquet_path = out / f"{name}.parquet"
    pq.write_table(pa.table(arrays), parquet_path)
    return csv_path, parquet_path


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Read a cohort CSV back with its columns typed (empty cells are None; earlier column names under their new names)."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [{canonical_key(k): _parse(canonical_key(k), v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _parse(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in BOOL_COLUMNS:
        return text == "True"
    if column in INT_COLUMNS:
        return int(text)
    if column in FLOAT_COLUMNS or column in METRIC_COLUMNS:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _typed(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in BOOL_COLUMNS:
        return bool(value)
    if column in INT_COLUMNS:
        return int(value)
    if column in FLOAT_COLUMNS:
        return float(value)
    return value


def _arrow_type(pa: Any, column: str, rows: Sequence[dict[str, Any]]) -> Any:
    if column in BOOL_COLUMNS:
        return pa.bool_()
    if column in INT_COLUMNS:
        return pa.int64()
    if column in FLOAT_COLUMNS:
        return pa.float64()
    values = [r.get(column) for r in rows if r.get(column) is not None]
    if values and all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()
