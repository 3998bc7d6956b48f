"""``napari-xai-cohort``: explain a cohort of scans on Dask and write maps, a table and a summary page.

    napari-xai-cohort scans/ --model model.pt2 --method integrated_gradients --out cohort_out/
    napari-xai-cohort cohort.csv --model model.pt2 --method grad_cam --method occlusion --report --out out/ --workers 4
    napari-xai-cohort 'data/*/t1.nii.gz' --model model.pt2 --method grad_cam --scheduler tcp://head:8786 --out /shared/out
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from napari_xai.cli import exit_status, model_options, parse_param

from .table import ALL_COLUMNS, COLUMNS


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="napari-xai-cohort",
        description="Explain a model on every scan of a cohort as Dask tasks; write aligned maps, one table (CSV, Parquet) and a summary page. "
        "A rerun skips the scans whose outputs are complete.",
    )
    parser.add_argument("inputs", nargs="*", help="scan files, folders, glob patterns, or a CSV with an image column (optional mask and label columns)")
    parser.add_argument("--model", help="model file (.pt2, TorchScript, weights + <stem>.json spec, or a spec .json)")
    parser.add_argument("--method", action="append", default=[], help="method name (repeatable)")
    parser.add_argument("--param", action="append", type=parse_param, default=[], help="method parameter NAME=VALUE (repeatable; each method takes those it knows)")
    parser.add_argument("--target", help="class index or label for every scan (default: each scan's predicted class)")
    parser.add_argument("--reduce", choices=("sum", "mean"), default="sum", help="reduction of the class logits over the region (segmentation)")
    parser.add_argument("--out", default="napari_xai_cohort", help="output folder")
    parser.add_argument("--format", default=".nii.gz", choices=(".nii.gz", ".nii", ".nrrd", ".mha"), help="map file format")
    parser.add_argument("--report", action="store_true", help="also write a PDF report per scan")
    parser.add_argument("--no-metrics", action="store_true", help="skip the engine's evaluation of each map (keep the methods' own checks)")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster on this machine)")
    parser.add_argument("--workers", type=int, help="LocalCluster workers (default: half the cores, torch threads share the rest)")
    parser.add_argument("--threads", action="store_true", help="LocalCluster workers as threads of this process instead of processes")
    parser.add_argument("--memory-budget-mb", type=int, help="working memory per batch on each worker")
    parser.add_argument("--trust-pickle", action="store_true", help="allow a pickled whole-model file (runs code from the file: only for files you trust)")
    parser.add_argument("--trust-bundle-code", action="store_true", help="MONAI bundle: run the bundle's own Python modules (only for bundles you trust)")
    parser.add_argument("--folds", help="nnU-Net folder: fold(s) to use, e.g. 0 or 0,1,2 (default: every fold, averaged)")
    parser.add_argument("--architecture", action="append", default=[], metavar="MODULE:CLASS", help="allow a weights file's spec to name this architecture (imports MODULE on each worker: only for code you trust; repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-columns", action="store_true", help="describe the table's columns, then exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error, 1 if any scan failed)."""
    args = build_parser().parse_args(argv)
    if args.list_columns:
        for name in ALL_COLUMNS:
            print(f"{name:26s} {COLUMNS.get(name, 'trust metric (napari_xai.engine.trust)')}")
        return 0
    if not args.model or not args.inputs or not args.method:
        print("napari-xai-cohort: give INPUT..., --model and at least one --method (try --help)", file=sys.stderr)
        return 2
    from .run import run_cohort

    def work() -> int:
        result = run_cohort(
            args.inputs,
            args.model,
            args.method,
            args.out,
            params=dict(args.param),
            target=args.target,
            reduce=args.reduce,
            map_format=args.format,
            metrics=not args.no_metrics,
            report=args.report,
            trust_pickle=args.trust_pickle,
            model_options=model_options(args),
            memory_budget_mb=args.memory_budget_mb,
            scheduler=args.scheduler,
            workers=args.workers,
            processes=not args.threads,
            progress=not args.no_progress,
        )
        print(f"{result.count('done')} scans explained, {result.count('skipped')} complete from an earlier run, {result.count('failed')} failed")
        for row in {r["scan_id"]: r for r in result.rows if r.get("status") == "failed"}.values():
            print(f"  failed: {row['scan_id']}: {row.get('error')}", file=sys.stderr)
        print(f"table: {result.table_csv}" + (f", {result.table_parquet}" if result.table_parquet else "") + f"; summary: {result.summary_pdf}")
        return 1 if result.count("failed") else 0

    return exit_status("napari-xai-cohort", work, "interrupted (rerun to resume: complete scans are skipped)")

if __name__ == "__main__":
    raise SystemExit(main())
