"""The cohort's summary page: the scans to look at first.

Two rankings: by ``outside_anatomy_share`` (the share of a map's relevance
outside the anatomy, the sign of a shortcut; highest over the scan's
methods), and by disagreement between the model's prediction and the given
label (``1 - label_probability``; wrong predictions first). Failed scans are
listed with their message.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

from matplotlib import rc_context

from napari_xai.engine.report import EMBEDDED_FONTS, draw_table, new_page
from napari_xai.engine.trust import format_metric

#: Scans shown per ranking.
TOP = 12


def rank_by_outside_anatomy(rows: Sequence[dict[str, Any]]) -> list[tuple[str, float, str, bool]]:
    """``(scan_id, share, method, shortcut flag)`` per scan, highest share first (scans without the metric left out)."""
    best: dict[str, tuple[str, float, str, bool]] = {}
    for r in rows:
        share = r.get("outside_anatomy_share")
        if not isinstance(share, (int, float)) or isinstance(share, bool) or math.isnan(share):
            continue
        if r["scan_id"] not in best or share > best[r["scan_id"]][1]:
            best[r["scan_id"]] = (r["scan_id"], float(share), str(r.get("method")), bool(r.get("shortcut_flag")))
    return sorted(best.values(), key=lambda t: -t[1])


def rank_by_disagreement(rows: Sequence[dict[str, Any]]) -> list[tuple[str, float, str, str, float | None]]:
    """``(scan_id, disagreement, label, prediction, probability)`` per labelled scan, wrong and confident first."""
    seen: dict[str, tuple[str, float, str, str, float | None]] = {}
    for r in rows:
        if r["scan_id"] in seen or r.get("status") == "failed" or r.get("label") in (None, ""):
            continue
        p_label = r.get("label_probability")
        if isinstance(p_label, (int, float)):
            disagreement = 1.0 - float(p_label)
        elif r.get("label_agrees") is not None:
            disagreement = 0.0 if r["label_agrees"] else 1.0
        else:
            continue
        seen[r["scan_id"]] = (r["scan_id"], disagreement, str(r["label"]), str(r.get("prediction_label") or r.get("prediction")), r.get("probability"))
    return sorted(seen.values(), key=lambda t: -t[1])


def write_summary(rows: Sequence[dict[str, Any]], out_dir: str | Path, *, model_name: str = "", methods: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``summary.pdf`` and ``summary.png`` in ``out_dir``.

    Returns
    -------
    tuple of Path
        The PDF and the PNG.
    """
    out = Path(out_dir)
    scans: dict[str, str] = {}
    for r in rows:
        scans[r["scan_id"]] = "failed" if r.get("status") == "failed" or scans.get(r["scan_id"]) == "failed" else str(r.get("status"))
    counts = {s: sum(1 for v in scans.values() if v == s) for s in ("done", "skipped", "failed")}
    with rc_context(EMBEDDED_FONTS):
        fig = new_page()
        fig.text(0.06, 0.965, "Cohort summary: the scans to look at first", fontsize=15, weight="bold", va="top")
        fig.text(
            0.06, 0.935,
            f"{len(scans)} scans: {counts['done']} explained now, {counts['skipped']} complete from an earlier run, {counts['failed']} failed. "
            f"Model: {model_name}. Methods: {', '.join(methods)}.",
            fontsize=8.5, va="top", wrap=True,
        )
        by_share = rank_by_outside_anatomy(rows)[:TOP]
        fig.text(0.06, 0.9, "Highest share of relevance outside the anatomy", fontsize=11, weight="bold", va="top")
        ax = fig.add_axes((0.06, 0.64, 0.88, 0.245))
        ax.set_axis_off()
        if by_share:
            draw_table(ax, [[s, format_metric(v), m, "yes" if f else "no"] for s, v, m, f in by_share], col_widths=(0.4, 0.2, 0.25, 0.15), header=["scan", "outside anatomy share", "method", "shortcut flag"], fontsize=7.5)
        else:
            ax.text(0, 1, "outside_anatomy_share was not measured (an engine without evaluate, or --no-metrics).", fontsize=8.5, color="0.3", va="top")
        by_label = rank_by_disagreement(rows)[:TOP]
        fig.text(0.06, 0.62, "Largest disagreement between prediction and label", fontsize=11, weight="bold", va="top")
        ax = fig.add_axes((0.06, 0.36, 0.88, 0.245))
        ax.set_axis_off()
        if by_label:
            draw_table(ax, [[s, f"{d:.3f}", lab, pred, format_metric(p)] for s, d, lab, pred, p in by_label], col_widths=(0.36, 0.16, 0.16, 0.16, 0.16), header=["scan", "1 - p(label)", "label", "prediction", "p(prediction)"], fontsize=7.5)
        else:
            ax.text(0, 1, "No scan has a label (give a CSV with a label column).", fontsize=8.5, color="0.3", va="top")
        failed = [(sid, next(r.get("error") or "" for r in rows if r["scan_id"] == sid)) for sid, st in scans.items() if st == "failed"][:TOP]
        fig.text(0.06, 0.34, "Failed scans", fontsize=11, weight="bold", va="top")
        ax = fig.add_axes((0.06, 0.04, 0.88, 0.285))
        ax.set_axis_off()
        if failed:
            draw_table(ax, [[s, "\n".join(textwrap.wrap(e, 90)[:3])] for s, e in failed], col_widths=(0.3, 0.7), header=["scan", "message"], fontsize=7)
        else:
            ax.text(0, 1, "None.", fontsize=8.5, color="0.3", va="top")
        pdf, png = out / "summary.pdf", out / "summary.png"
        fig.savefig(pdf)
        fig.savefig(png, dpi=130)
    return pdf, png
