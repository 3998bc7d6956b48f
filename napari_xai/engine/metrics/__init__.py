"""How far a map can be trusted: faithfulness, the model-randomisation sanity check, localisation, shortcuts.

Beside the methods (``napari_xai.engine.methods``), host-neutral: the napari
dock and the Slicer module show what :func:`evaluate` and :func:`compare`
return. Every key is documented in :data:`METRICS`.
"""

from .anatomy import derive_anatomy
from .comparison import Comparison, compare, compare_iter, evaluate_maps_iter, rank_methods
from .definitions import METRICS, SANITY_SPEARMAN_THRESHOLD, SHORTCUT_TOP_SHARE, TOP_FRACTION, MetricDoc, shortcut_rule
from .evaluation import PARAMS, evaluate, evaluate_iter
from .table import TABLE_KEYS, column_doc, format_cell, row_warnings, table_row

__all__ = [
    "METRICS",
    "PARAMS",
    "SANITY_SPEARMAN_THRESHOLD",
    "SHORTCUT_TOP_SHARE",
    "TABLE_KEYS",
    "TOP_FRACTION",
    "Comparison",
    "MetricDoc",
    "compare",
    "column_doc",
    "compare_iter",
    "derive_anatomy",
    "evaluate",
    "evaluate_iter",
    "evaluate_maps_iter",
    "format_cell",
    "rank_methods",
    "row_warnings",
    "shortcut_rule",
    "table_row",
]
