"""A map's checks and its run as text, the same in every host (status lines, the Slicer module's label)."""

from __future__ import annotations

from typing import Any, Callable

from napari_xai.engine import Attribution


def _completeness(value: dict[str, Any]) -> str:
    rel = value.get("relative_delta")
    ok = rel is not None and rel < 0.05
    return f"completeness: sum {value.get('attribution_sum', float('nan')):.3g} vs score change {value.get('score_difference', float('nan')):.3g} ({100 * rel:.1f}% off, {'ok' if ok else 'raise steps'})"


#: Formatters for known checks; any other check is shown as ``name: value``.
CHECK_FORMATTERS: dict[str, Callable[[Any], str]] = {"completeness": _completeness}
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
