"""Trust metrics of each method on the sample models: the numbers in docs/methods.md and the README.

    python benchmarks/trust_metrics.py                      # every method below, both models
    python benchmarks/trust_metrics.py --method occlusion   # one method
    python benchmarks/trust_metrics.py --json out.json      # also write the full dicts

Runs :func:`napari_xai.engine.compare` for the class "lesion" with the
shortcut classifier and with the clean lesion classifier, both on the
sample scan with the shortcut model's marker burned in beside the head
(mask: the true lesions), and prints one markdown table per model. CPU,
two threads.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from napari_xai.engine import compare
from napari_xai.engine.metrics import format_cell
from napari_xai.samples import (
    load_lesion_classifier,
    load_sample_lesion_mask,
    load_sample_scan_with_marker,
    load_shortcut_classifier,
)

METHODS = ("vanilla_gradient", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop", "grad_cam", "occlusion")
#: Settings that keep each method to seconds on a CPU. Occlusion's windows
#: overlap by half (48 mm every 24 mm) so that a marker up to 24 mm wide lies
#: whole in some window: a window that covers only part of it cannot remove it.
PARAMS = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"n_samples": 8}, "occlusion": {"window": 16, "stride": 8}}
COLUMNS = ("deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc", "sanity_spearman", "sanity_passed", "completeness_error", "mass_in_mask", "pointing_game", "outside_anatomy_share", "outside_anatomy_peak", "outside_anatomy_top_share", "shortcut_flag")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", action="append", help="method (repeatable; default: %s)" % ", ".join(METHODS))
    parser.add_argument("--sanity-steps", type=int, default=1, help="cascading checkpoints / single layers of the sanity check")
    parser.add_argument("--steps", type=int, default=10, help="steps of the deletion / insertion curves")
    parser.add_argument("--metrics", nargs="+", help="groups to compute (default: all; e.g. --metrics anatomy localisation completeness for a quick run)")
    parser.add_argument("--json", help="write the full metric dicts here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    methods = args.method or list(METHODS)
    lesions = load_sample_lesion_mask().array > 0
    cases = {
        "shortcut classifier, sample scan with marker": (load_shortcut_classifier(), load_sample_scan_with_marker()),
        "lesion classifier, sample scan with marker": (load_lesion_classifier(), load_sample_scan_with_marker()),
    }
    out = {}
    for label, (model, scan) in cases.items():
        t0 = time.perf_counter()
        c = compare(model, scan, {m: PARAMS.get(m, {}) for m in methods}, target="lesion", mask=lesions, metrics=args.metrics, sanity_steps=args.sanity_steps, steps=args.steps)
        seconds = time.perf_counter() - t0
        pred = c.maps[methods[0]].target
        print(f"\n### {label}: predicts {pred['label']!r} (score {pred['score']:.2f}); {seconds:.0f} s\n")
        print("| method | " + " | ".join(COLUMNS) + " |")
        print("| --- " * (len(COLUMNS) + 1) + "|")
        for row in sorted(c.table, key=lambda r: methods.index(r["method"])):
            print(f"| `{row['method']}` | " + " | ".join(format_cell(row[k]) for k in COLUMNS) + " |")
        print(f"\nranking: {', '.join(c.ranking)}; anatomy fraction {c.metrics[methods[0]]['anatomy_fraction']:.2f}", flush=True)
        out[label] = c.to_dict()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
