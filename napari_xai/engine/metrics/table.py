"""The trust table both hosts show: columns, cells as text, and the warnings a row raises."""

from __future__ import annotations

from typing import Any

from ..registry import get_method
from .definitions import METRICS, SANITY_SPEARMAN_THRESHOLD, MetricDoc

#: Scalar columns of the table, in order (``sanity_spearman`` / ``sanity_ssim``
#: are the fully randomised model's entries of ``sanity_similarity``).
TABLE_KEYS = (
    "deletion_auc",
    "random_deletion_auc",
    "insertion_auc",
    "random_insertion_auc",
    "faithfulness_gain",
    "sanity_spearman",
    "sanity_ssim",
    "sanity_passed",
    "completeness_error",
    "mass_in_mask",
    "pointing_game",
    "relevance_rank",
    "outside_anatomy_share",
    "outside_anatomy_peak",
    "outside_anatomy_top_share",
    "shortcut_flag",
)

_SANITY_COLUMNS = {
    "sanity_spearman": MetricDoc(
        "sanity_spearman",
        "sanity Spearman",
        "sanity",
        f"Spearman rank correlation of |map| with the fully randomised model's |map| (sanity_similarity['spearman']); below {SANITY_SPEARMAN_THRESHOLD} passes.",
        METRICS["sanity_similarity"].reference,
        "lower",
    ),
    "sanity_ssim": MetricDoc(
        "sanity_ssim",
        "sanity SSIM",
        "sanity",
        "SSIM of |map| with the fully randomised model's |map|, both scaled to [0, 1] (sanity_similarity['ssim']).",
        METRICS["sanity_similarity"].reference,
        "lower",
    ),
}


def column_doc(key: str) -> MetricDoc:
    """The documentation of a table column."""
    return _SANITY_COLUMNS.get(key) or METRICS[key]


def table_row(method: str | None, result: dict[str, Any]) -> dict[str, Any]:
    """One row of the table from an :func:`~napari_xai.engine.evaluate` dict (``method``, ``title`` and the columns)."""
    sim = result.get("sanity_similarity") or {}
    title = get_method(method).title if method else ""
    row: dict[str, Any] = {"method": method, "title": title}
    for key in TABLE_KEYS:
        row[key] = sim.get(key.removeprefix("sanity_")) if key in _SANITY_COLUMNS else result.get(key)
    return row


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
