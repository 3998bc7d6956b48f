"""Cohorts: the same screening over many scans, as Dask tasks (the ``cohort`` extra).

    napari-xai-cohort scans/ --model model.pt2 --method integrated_gradients --out cohort_out/

See :func:`run_cohort`; the table's columns are documented in :data:`napari_xai.cohort.table.COLUMNS`.
"""

from .inputs import CohortInput, collect_inputs
from .run import CohortResult, plan_cluster, run_cohort
from .table import ALL_COLUMNS, COLUMNS, read_table

__all__ = ["ALL_COLUMNS", "COLUMNS", "CohortInput", "CohortResult", "collect_inputs", "plan_cluster", "read_table", "run_cohort"]
