"""How far a map can be trusted: faithfulness, the model-randomisation sanity check, localisation, shortcuts.

Beside the methods (``napari_xai.engine.methods``), host-neutral: the napari
dock and the Slicer module show what :func:`evaluate` and :func:`compare`
return. Every key is documented in :data:`METRICS`; every trust table
shows the columns of :data:`METRIC_COLUMNS`, in its order.
"""

from .anatomy import derive_anatomy
from .comparison import Comparison, compare, compare_iter, evaluate_maps_iter, rank_methods
from .definitions import (
    METRIC_ALIASES,
    METRIC_COLUMNS,
    METRICS,
    SANITY_SPEARMAN_THRESHOLD,
    SHORTCUT_TOP_SHARE,
    TABLE_KEYS,
    TOP_FRACTION,
    MetricDoc,
    canonical_key,
    column_doc,
    column_values,
    definitions_html,
    documented,
    shortcut_rule,
)
from .evaluation import PARAMS, evaluate, evaluate_iter
from .table import format_cell, row_warnings, table_row

__all__ = [
    "METRICS",
    "METRIC_ALIASES",
    "METRIC_COLUMNS",
    "PARAMS",
    "SANITY_SPEARMAN_THRESHOLD",
    "SHORTCUT_TOP_SHARE",
    "TABLE_KEYS",
    "TOP_FRACTION",
    "Comparison",
    "MetricDoc",
    "canonical_key",
    "compare",
    "column_doc",
    "column_values",
    "compare_iter",
    "definitions_html",
    "derive_anatomy",
    "documented",
    "evaluate",
    "evaluate_iter",
    "evaluate_maps_iter",
    "format_cell",
    "rank_methods",
    "row_warnings",
    "shortcut_rule",
    "table_row",
]
