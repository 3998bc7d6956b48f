"""The method menu as every host shows it: grouped by family in catalogue order, with help text."""

from __future__ import annotations

from napari_xai.engine import MethodSpec, get_method, list_methods
from napari_xai.engine.registry import FAMILIES

#: Method selected when a host opens (fast and faithful on the sample model), if registered.
DEFAULT_METHOD = "integrated_gradients"


def methods_by_family() -> list[tuple[str, list[MethodSpec]]]:
    """Registered methods grouped by family, families in catalogue order (new methods appear by themselves)."""
    groups: dict[str, list[MethodSpec]] = {}
    for spec in list_methods():
        groups.setdefault(spec.family, []).append(spec)
    order = list(FAMILIES) + sorted(set(groups) - set(FAMILIES))
    return [(fam, groups[fam]) for fam in order if fam in groups]


def method_help(spec: MethodSpec) -> str:
    """The method's help label: summary, then the paper (authors, title, venue, year) a user can look up."""
    return f"{spec.summary}\n{spec.citation}" if spec.citation else spec.summary


def method_title(name: str | None) -> str:
    """Display name of a registered method (the name itself if unknown)."""
    try:
        return get_method(name).title if name else "the chosen method"
    except Exception:
        return str(name)
