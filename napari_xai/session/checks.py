"""A map's checks and its run as text, the same in every host (status lines, the Slicer module's label)."""

from __future__ import annotations

from typing import Any, Callable

from napari_xai.engine import Attribution


def _completeness(value: dict[str, Any]) -> str:
    rel = value.get("relative_delta")
    ok = rel is not None and rel < 0.05
    return f"completeness: sum {value.get('attribution_sum', float('nan')):.3g} vs score change {value.get('score_difference', float('nan')):.3g} ({100 * rel:.1f}% off, {'ok' if ok else 'raise steps'})"


def _layout(value: dict[str, Any]) -> str:
    """The memory layout the run's passes took (``engine/methods/toolkit/layout.py``), in one line."""
    if value.get("layout") == "channels_last":
        text = "memory layout: channels-last copy"
        if "contiguous_s" in value and "channels_last_s" in value:
            text += f", {value['channels_last_s'] / value['contiguous_s']:.2f} x the time of the network's own"
        if "max_score_difference" in value:
            text += f", scores within {value['max_score_difference']:.1g}"
    else:
        text = "memory layout: the network's own"
        if isinstance(value.get("channels_last"), str):
            text += f" (channels-last {value['channels_last']})"
    gradients = value.get("gradients")
    if isinstance(gradients, str) and gradients != value.get("layout"):
        text += f"; gradient passes: {gradients.replace('_', '-')}"
    return text


#: Formatters for known checks; any other check is shown as ``name: value``.
CHECK_FORMATTERS: dict[str, Callable[[Any], str]] = {"completeness": _completeness, "layout": _layout}
#: Checks that are bookkeeping, not sanity: not shown.
HIDDEN_CHECKS = ("model_grid_is_scan_grid",)


def format_checks(checks: dict[str, Any]) -> list[str]:
    """One line per check an Attribution carries."""
    lines = []
    for name, value in checks.items():
        if name in HIDDEN_CHECKS:
            continue
        fmt = CHECK_FORMATTERS.get(name)
        if fmt is not None:
            try:
                lines.append(fmt(value))
                continue
            except (TypeError, ValueError, KeyError):
                pass
        if isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"{name.replace('_', ' ')}: {value}")
    return lines


def completeness_note(checks: dict[str, Any]) -> str:
    """``completeness error 0.80%`` for a map whose method records completeness, else empty (the command line's result line)."""
    completeness = checks.get("completeness")
    return f"completeness error {completeness['relative_delta']:.2%}" if completeness else ""


def summary_line(attribution: Attribution, checks: bool = True) -> str:
    """Status line after a run: name, probability and raw score, time, and (with ``checks``) the checks."""
    t = attribution.timings.get("total_s")
    parts = [attribution.name]
    if attribution.score_text():
        parts.append(attribution.score_text())
    if t is not None:
        parts.append(f"{t:.1f} s")
    if checks:
        parts += format_checks(attribution.checks)
    return "; ".join(parts)
