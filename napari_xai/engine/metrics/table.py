"""The trust table both hosts show: rows, cells as text, and the warnings a row raises.

The columns are :data:`~napari_xai.engine.metrics.definitions.METRIC_COLUMNS`,
the one ordered list every trust table reads.
"""

from __future__ import annotations

from typing import Any

from ..registry import get_method
from .definitions import TABLE_KEYS, column_doc, column_values

__all__ = ["TABLE_KEYS", "column_doc", "format_cell", "row_warnings", "table_row"]


def table_row(method: str | None, result: dict[str, Any]) -> dict[str, Any]:
    """One row of the table from an :func:`~napari_xai.engine.evaluate` dict (``method``, ``title`` and the columns)."""
    title = get_method(method).title if method else ""
    values = column_values(result)
    return {"method": method, "title": title, **{key: values.get(key) for key in TABLE_KEYS}}


def format_cell(value: Any) -> str:
    """A cell as text: 3 significant digits, yes / no, or a dash for not computed."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def row_warnings(row: dict[str, Any]) -> list[str]:
    """What a reader must know about a row: a failed sanity check, a shortcut flag, a map no better than random."""
    out = []
    if row.get("sanity_passed") is False:
        out.append("fails the model-randomisation sanity check: the map barely changes when the model's weights are randomised, so it explains the image more than the model")
    if row.get("shortcut_flag"):
        out.append("shortcut: the strongest evidence lies outside the anatomy; check the scan for markers, text or devices the model may read")
    gain = row.get("faithfulness_gain")
    if gain is not None and gain <= 0:
        out.append("no more faithful than a random order of the voxels (deletion / insertion)")
    return out
