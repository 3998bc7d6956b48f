"""Run time of every method on a sample classifier at its defaults (the GUI's), beside the engine's estimate.

    python benchmarks/bench_sample_times.py [--model 3d|2d] [--cap SECONDS] [--threads T] [--method NAME ...] [--json FILE]

Each method runs through ``explain_iter`` at its registry defaults: ``3d`` is
the sample 3D lesion classifier on the sample brain (what ``python -m
napari_xai --sample`` opens), ``2d`` the sample 2D classifier on the sample
axial slice. The engine's own estimate (``engine.estimate``, from a timed
probe pass) is taken just before each run and printed beside it with the
ratio measured / estimated. A run longer than ``--cap`` seconds is stopped
there and its time extrapolated from the fraction of its passes done (marked
"~"; for a method in stages, such as LIME's supervoxels and then its
samples, from the last stage's fraction; an adaptive method, HiPe, is
reported as stopped, not extrapolated). The 1-minute load average before each run is printed with it, since
wall times on a shared machine follow the load. Prints a Markdown table;
``--json`` appends one JSON line per method to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load(which: str):
    from napari_xai import samples

    if which == "2d":
        return samples.load_lesion_classifier_2d(), samples.load_sample_scan_axial()
    return samples.load_lesion_classifier(), samples.load_sample_scan()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("3d", "2d"), default="3d", help="sample classifier (default 3d)")
    parser.add_argument("--cap", type=float, default=60.0, help="stop a run after this many seconds and extrapolate (default 60)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--method", action="append", help="method (repeatable); default: all")
    parser.add_argument("--json", type=Path, help="append one JSON line per method to this file")
    args = parser.parse_args()
    import torch

    from napari_xai.engine import estimate, explain_iter, list_methods
    from napari_xai.engine.estimate import format_seconds

    torch.set_num_threads(args.threads)
    model, scan = _load(args.model)
    names = args.method or [s.name for s in list_methods()]
    print(f"{args.model} sample classifier, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print("| method | passes (F + B) | measured at its defaults | engine estimate | measured / estimate | load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        load = os.getloadavg()[0]
        try:
            guess = estimate(model, scan, name)
        except Exception as exc:  # e.g. CAM on a model without an average-pooling head
            print(f"| {name} | | n/a: {str(exc).splitlines()[0][:80]} | | | {load:.1f} |", flush=True)
            continue
        t0 = time.perf_counter()
        fraction, done, error, passes_done = 0.0, False, None, 0
        stage_start = 0.0  # a method with stages (LIME's supervoxels, then its samples) restarts its fraction at each
        gen = explain_iter(model, scan, name)
        try:
            for event in gen:
                if event.fraction < fraction:
                    stage_start = time.perf_counter() - t0
                fraction = event.fraction
                passes_done = max(passes_done, int(event.done))
                if time.perf_counter() - t0 > args.cap and fraction > 0:
                    break
            else:
                done = True
        except Exception as exc:
            error = str(exc).splitlines()[0][:80]
        finally:
            gen.close()
        elapsed = time.perf_counter() - t0
        # an adaptive method's (HiPe's) progress is per depth: its total is not extrapolated
        adaptive = guess.approximate
        # the last stage is extrapolated from its own fraction, after the earlier stages' time
        seconds = elapsed if done else (stage_start + (elapsed - stage_start) / fraction if fraction > 0 and not adaptive else float("nan"))
        passes = f"{guess.forward_passes} + {guess.backward_passes}"
        if error:
            shown = f"n/a: {error}"
        elif done:
            shown = format_seconds(elapsed)
        elif adaptive:
            shown = f"> {format_seconds(elapsed)} (stopped after {passes_done} passes; adaptive, not extrapolated)"
        else:
            shown = f"~{format_seconds(seconds)} (from {fraction:.0%} of its last stage in {elapsed:.0f} s)"
        ratio = seconds / guess.seconds if guess.seconds > 0 else float("nan")
        bound = " (bound)" if guess.approximate else ""
        print(f"| {name} | {passes} | {shown} | {format_seconds(guess.seconds)}{bound} | {ratio:.2f} | {load:.1f} |", flush=True)
        if args.json:
            row = {
                "model": args.model, "method": name, "seconds": seconds, "complete": done, "fraction": fraction, "passes_done": passes_done,
                "elapsed": elapsed, "error": error, "load": load, "threads": torch.get_num_threads(), "estimate": guess.to_dict(),
            }
            with args.json.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
