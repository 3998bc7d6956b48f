"""Run time of every method on the sample classifier at its defaults (the GUI's), for the README's table.

    python benchmarks/bench_sample_times.py [--cap SECONDS] [--threads T] [--method NAME ...]

Each method runs through ``explain_iter`` on the sample brain with the sample
3D lesion classifier and its registry defaults. A run longer than ``--cap``
seconds is stopped there and its time extrapolated from the fraction of its
passes done (marked "~"). The engine's own estimate (``engine.estimate``,
from one timed probe pass) is printed beside it. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=60.0, help="stop a run after this many seconds and extrapolate (default 60)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--method", action="append", help="method (repeatable); default: all")
    args = parser.parse_args()
    import torch

    from napari_xai.engine import estimate, explain_iter, list_methods
    from napari_xai.engine.estimate import format_seconds
    from napari_xai.samples import load_lesion_classifier, load_sample_scan

    torch.set_num_threads(args.threads)
    model, scan = load_lesion_classifier(), load_sample_scan()
    names = args.method or [s.name for s in list_methods()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| method | run at its defaults | engine estimate |")
    print("| --- | ---: | ---: |")
    for name in names:
        try:
            guess = format_seconds(estimate(model, scan, name).seconds)
        except Exception as exc:  # e.g. CAM on a model without an average-pooling head
            print(f"| {name} | n/a: {str(exc).splitlines()[0][:80]} | |", flush=True)
            continue
        t0 = time.perf_counter()
        fraction, done = 0.0, False
        gen = explain_iter(model, scan, name)
        try:
            for event in gen:
                fraction = max(fraction, event.fraction)
                if time.perf_counter() - t0 > args.cap and fraction > 0:
                    break
            else:
                done = True
        except Exception as exc:
            print(f"| {name} | n/a: {str(exc).splitlines()[0][:80]} | {guess} |", flush=True)
            continue
        finally:
            gen.close()
        elapsed = time.perf_counter() - t0
        shown = format_seconds(elapsed) if done else f"~{format_seconds(elapsed / fraction)} (from {fraction:.0%} in {elapsed:.0f} s)"
        print(f"| {name} | {shown} | {guess} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
