"""Trust metrics of every method on the sample models: the table in docs/methods.md.

    python benchmarks/trust_metrics.py --model lesion --all          # every map method, the 3D lesion classifier
    python benchmarks/trust_metrics.py --model shortcut --fast       # the one-pass methods, the shortcut model
    python benchmarks/trust_metrics.py --model lesion --method lime  # one method (repeatable)
    python benchmarks/trust_metrics.py --render                      # the markdown tables from what was measured
    python benchmarks/trust_metrics.py --render --write              # ... written into docs/methods.md

Each method runs at its registry defaults (the GUI's) through
:func:`napari_xai.engine.explain` for the class "lesion" on the sample scan
with the shortcut model's marker burned in beside the head, and its map is
evaluated with :func:`napari_xai.engine.evaluate`'s machinery (the lesion
mask as the mask, the anatomy derived from the scan). One setup per model
is shared between the methods of a run, as Compare shares it (the
unperturbed pass, the anatomy, the random-order curves).

The evaluation uses ``--steps`` curve steps (default 10) and
``--sanity-steps`` randomisation checkpoints (default 1: the fully randomised
model, cascading, and the top layer alone). A method whose own run takes
longer than ``--sanity-max-seconds`` gets no sanity check (its reruns would
take that long each); the table says so. Each method's result is written to
``--out-dir`` as JSON as soon as it is measured, so a long table can be
measured in several runs (``--render`` reads them all, and gives every
registered method a row on the lesion classifier: a method not measured, or
one that makes an image rather than a map, says so). CPU, two threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from napari_xai.engine import estimate, explain, list_methods  # noqa: E402
from napari_xai.engine.metrics import format_cell  # noqa: E402
from napari_xai.engine.metrics.evaluation import evaluate_prepared, make_setup  # noqa: E402
from napari_xai.engine.progress import run_to_end  # noqa: E402

#: One forward and one backward pass each (the table's "fast methods").
FAST = ("vanilla_gradient", "input_x_gradient", "guided_backprop", "deconvnet", "deeplift", "lrp", "grad_cam", "grad_cam_pp", "guided_grad_cam")
MODELS = {"lesion": "lesion classifier (clean)", "shortcut": "shortcut classifier (reads the marker)"}
#: Where the measured records live (committed: docs/methods.md's tables are ``--render`` of them, and a test checks that).
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "trust_metrics"


def map_methods() -> list[str]:
    """Every registered method that makes a map of the scan (activation maximisation makes an image)."""
    return [s.name for s in list_methods() if s.output == "map"]


def load_case(model: str):
    from napari_xai.samples import load_lesion_classifier, load_sample_lesion_mask, load_sample_scan_with_marker, load_shortcut_classifier

    loaded = load_lesion_classifier() if model == "lesion" else load_shortcut_classifier()
    return loaded, load_sample_scan_with_marker(), load_sample_lesion_mask().array > 0


def measure(model: str, methods: list[str], args: argparse.Namespace) -> None:
    loaded, scan, lesions = load_case(model)
    setup = make_setup(loaded, scan, steps=args.steps, sanity_steps=args.sanity_steps)
    setup.anatomy_mask()  # derived once; the per-method copies below share it
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in methods:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            attribution = explain(setup.loaded, scan, name, target="lesion")
        except Exception as err:  # noqa: BLE001 - a method that cannot run on this model gets a row saying why
            record = {"model": model, "method": name, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
            print(f"{name}: {record['error']}", flush=True)
            (out_dir / f"{model}__{name}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
            continue
        method_s = time.perf_counter() - t0
        groups = ["localisation", "anatomy", "completeness", "faithfulness"]
        # an adaptive method (HiPe) refines far more cells on a randomised model than on the trained one: its
        # sanity reruns are bounded by the estimate's worst case, not by the run just measured
        bound_s = method_s
        if method_s <= args.sanity_max_seconds:  # the estimate's probe pass only where it can change the answer
            worst = estimate(setup.loaded, scan, name, target="lesion")
            bound_s = worst.seconds if worst.approximate else method_s
        sanity = max(method_s, bound_s) <= args.sanity_max_seconds
        if sanity:
            groups.append("sanity")
        run = replace(setup, groups=tuple(groups))  # shares the anatomy and the random curves
        t1 = time.perf_counter()
        result = run_to_end(evaluate_prepared(run, attribution, mask=lesions), None, None, "evaluate")
        record = {
            "model": model,
            "method": name,
            "method_s": method_s,
            "worst_case_s": bound_s if bound_s != method_s else None,
            "evaluate_s": time.perf_counter() - t1,
            "load": load,
            "steps": args.steps,
            "sanity_steps": args.sanity_steps if sanity else None,
            "timed": not args.untimed,
            "target": attribution.target,
            "result": result,
        }
        (out_dir / f"{model}__{name}.json").write_text(json.dumps(record, indent=1, default=float), encoding="utf-8")
        print(f"{name}: method {method_s:.0f} s, evaluate {record['evaluate_s']:.0f} s (load {load:.1f}); " + row_text(record), flush=True)


def _pair(a, b) -> str:
    return f"{format_cell(a)} / {format_cell(b)}"


def row_cells(record: dict) -> list[str]:
    """The table's cells of one measured method."""
    name = f"`{record['method']}`"
    if "error" in record:
        return [name, "not evaluated: " + record["error"].replace("|", "/")] + [""] * 5
    r = record["result"]
    sim = r.get("sanity_similarity") or {}
    if record["sanity_steps"] is None and record.get("worst_case_s"):
        sanity = (f"not run (adaptive: {record['method_s']:.0f} s on the trained model, up to "
                  f"{record['worst_case_s'] / 60:.0f} min a rerun on a randomised one)")
    elif record["sanity_steps"] is None:
        sanity = f"not run (the method takes {record['method_s']:.0f} s a run)"
    else:
        sanity = f"{format_cell(sim.get('spearman'))} / {format_cell(sim.get('ssim'))} / {format_cell(r['sanity_passed'])}"
    return [
        name,
        f"{_pair(r['deletion_auc'], r['random_deletion_auc'])}; {_pair(r['insertion_auc'], r['random_insertion_auc'])}",
        sanity,
        f"{format_cell(r['outside_anatomy_share'])} / {format_cell(r['outside_anatomy_peak'])} / {format_cell(r['outside_anatomy_top_share'])} / {format_cell(r['shortcut_flag'])}",
        _pair(r["mass_in_mask"], r["pointing_game"]),
        format_cell(r["completeness_error"]),
        f"{record['method_s']:.0f} + {record['evaluate_s']:.0f} s (load {record['load']:.0f}{'' if record.get('timed', True) else ', outside the timing lock'})",
    ]


def row_text(record: dict) -> str:
    return " | ".join(row_cells(record)[1:])


HEADER = (
    "method",
    "deletion AUC / random; insertion AUC / random",
    "sanity Spearman / SSIM / passed",
    "outside anatomy: share / peak / top 0.1 % / shortcut flag",
    "mass in lesions / pointing game",
    "completeness error",
    "time: method + evaluation",
)


def render(out_dir: Path) -> str:
    """Markdown tables of every measured record, one per model, in registry order.

    The lesion classifier's table has a row for every registered method: a
    map method without a record says it was not measured, an
    activation-maximisation method that it makes an image, not a map.
    """
    specs = list_methods()
    order = {s.name: i for i, s in enumerate(specs)}
    records = {(r["model"], r["method"]): r for r in (json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(out_dir).glob("*.json")))}
    parts = []
    for model, title in MODELS.items():
        if model == "lesion":
            names = [s.name for s in specs]
        else:
            names = sorted((m for k, m in records if k == model), key=lambda m: order.get(m, len(order)))
        if not names:
            continue
        parts.append(f"{title[0].upper()}{title[1:]}:\n")
        parts.append("| " + " | ".join(HEADER) + " |")
        parts.append("| --- " * len(HEADER) + "|")
        for name in names:
            record = records.get((model, name))
            if record is not None:
                cells = row_cells(record)
            elif name not in map_methods():
                cells = [f"`{name}`", "no map metrics: it makes an image (what the model responds to), not a map of the scan"] + [""] * 5
            else:
                cells = [f"`{name}`", f"not measured yet (`python benchmarks/trust_metrics.py --model {model} --method {name}`)"] + [""] * 5
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
START, END = "<!-- trust-metrics-tables: start (python benchmarks/trust_metrics.py --render --write) -->", "<!-- trust-metrics-tables: end -->"


def write_guide(tables: str, guide: Path = GUIDE) -> None:
    """Put the tables between the guide's markers (everything else unchanged)."""
    text = guide.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    guide.write_text(f"{head}{START}\n\n{tables.strip()}\n\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="lesion")
    parser.add_argument("--method", action="append", help="method (repeatable)")
    parser.add_argument("--all", action="store_true", help="every map method of the registry")
    parser.add_argument("--fast", action="store_true", help="the one-pass methods: " + ", ".join(FAST))
    parser.add_argument("--steps", type=int, default=10, help="steps of the deletion / insertion curves (default 10)")
    parser.add_argument("--sanity-steps", type=int, default=1, help="cascading checkpoints / single layers of the sanity check (default 1)")
    parser.add_argument("--sanity-max-seconds", type=float, default=60.0, help="no sanity check for a method whose run takes longer (default 60)")
    parser.add_argument("--untimed", action="store_true", help="mark the times as not taken under the heavy-run lock (the metrics are seeded and do not depend on it)")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT), help=f"one JSON per model and method (default {DEFAULT_OUT})")
    parser.add_argument("--render", action="store_true", help="print the markdown tables of what --out-dir holds, and stop")
    parser.add_argument("--write", action="store_true", help="with --render: write them into docs/methods.md between its markers")
    args = parser.parse_args()
    if args.render:
        tables = render(Path(args.out_dir))
        if args.write:
            write_guide(tables)
        print(tables)
        return
    torch.set_num_threads(2)
    methods = list(args.method or [])
    if args.fast:
        methods += [m for m in FAST if m not in methods]
    if args.all:
        methods += [m for m in map_methods() if m not in methods]
    if not methods:
        parser.error("name methods with --method, or give --fast or --all")
    measure(args.model, methods, args)


if __name__ == "__main__":
    main()
