"""Does every method yield, and stop on cancel, within a second? Longest gap between events and cancel latency.

    python benchmarks/bench_cancel.py [--model classifier|segmenter|classifier_2d ...] [--method NAME ...]
                                      [--cap SECONDS] [--threads T] [--verbose]

For every registered method at its registry defaults (the GUI's), on each
sample model (the 3D classifier on the sample brain, the 3D segmenter with
the sample lesion mask as its region, the 2D classifier on the axial slice),
``explain_iter`` is driven as the hosts drive it and two numbers are taken:

- *longest gap*: the longest time between two events, counting set-up (from
  the first ``next()`` of a fresh generator to its first event) and the end
  (from the last event to the return value). The model is loaded before the
  clock starts, as the hosts hold it loaded. This is the longest a user waits
  for the progress bar to move, and the longest a cancel can wait to be seen.
- *cancel latency*: a second run through :func:`explain` whose
  ``should_cancel`` turns True at a fixed wall time (``--cancel-at`` of the
  first run's length, at most ``--cancel-max`` s in); the time from then until
  :class:`Cancelled` is raised (the next event, then ``close()``).

Beside each, the time of one plain forward pass of the model on the scan
(batch 1, no gradients, median of three, taken just before and just after
the method's first run; the mean of the two)
and the longest gap in units of it: a count of passes' worth of work that
does not depend on the machine's load, where the seconds do. A run longer
than ``--cap`` seconds is stopped there (marked ``>``; its gaps so far are
still reported). Timing depends on the machine's load: run it
under the heavy-run lock and note the load. The unit tests check the events
and cancel without timing (``tests/engine/methods/test_cancel_events.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("classifier", "segmenter", "classifier_2d")


def load(model_name: str):
    """(model, scan, extra explain kwargs) of one sample model."""
    from napari_xai import samples

    if model_name == "classifier":
        return samples.load_lesion_classifier(), samples.load_sample_scan(), {}
    if model_name == "segmenter":
        return samples.load_lesion_segmenter(), samples.load_sample_scan(), {"region": samples.load_sample_lesion_mask().array > 0}
    return samples.load_lesion_classifier_2d(), samples.load_sample_scan_axial(), {}


def forward_seconds(model, scan) -> float:
    """Median wall time of three plain forward passes (batch 1, no gradients) on the scan in model space."""
    import torch

    from napari_xai.engine.model_space import to_model_space

    x = to_model_space(scan, model.spec).tensor
    times = []
    with torch.inference_mode():
        for _ in range(3):
            t = time.perf_counter()
            model.module(x)
            times.append(time.perf_counter() - t)
    return sorted(times)[1]


def gaps_of_run(model, scan, method: str, kwargs: dict, cap: float) -> dict:
    """One full run: event times, the longest gap and the event it followed."""
    from napari_xai.engine import explain_iter

    gen = explain_iter(model, scan, method, **kwargs)
    stamps: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    prev, done = "start (set-up)", False
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration:
                done = True
                stamps.append((time.perf_counter(), "return"))
                break
            stamps.append((time.perf_counter(), event.message))
            if time.perf_counter() - t0 > cap:
                break
    finally:
        gen.close()
    times = [t0] + [t for t, _ in stamps]
    labels = [prev] + [m for _, m in stamps]
    gaps = [(b - a, labels[i], labels[i + 1]) for i, (a, b) in enumerate(zip(times, times[1:]))]
    worst = max(gaps, key=lambda g: g[0])
    return {"total": times[-1] - t0, "done": done, "events": len(stamps) - int(done), "gap": worst[0], "after": worst[1], "before": worst[2], "gaps": gaps}


def cancel_latency(model, scan, method: str, kwargs: dict, at: float) -> float | None:
    """Seconds from a cancel request ``at`` s into a run until :func:`explain` raises ``Cancelled`` (None: it finished first)."""
    from napari_xai.engine import explain
    from napari_xai.engine.errors import Cancelled

    t0 = time.perf_counter()
    try:
        explain(model, scan, method, should_cancel=lambda: time.perf_counter() - t0 >= at, **kwargs)
    except Cancelled:
        return time.perf_counter() - t0 - at
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=MODELS, help="sample model (repeatable); default: all three")
    parser.add_argument("--method", action="append", help="method (repeatable); default: every registered method")
    parser.add_argument("--cap", type=float, default=90.0, help="stop a run after this many seconds (default 90)")
    parser.add_argument("--cancel-at", type=float, default=0.5, help="cancel at this fraction of the first run (default 0.5)")
    parser.add_argument("--cancel-max", type=float, default=5.0, help="... but at most this many seconds in (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--verbose", action="store_true", help="print every gap over 0.5 s with the events around it")
    args = parser.parse_args()
    import torch

    from napari_xai.engine import list_methods
    from napari_xai.engine.errors import XAIError

    torch.set_num_threads(args.threads)
    names = args.method or [s.name for s in list_methods()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| model | method | run (s) | events | one forward (s) | longest gap (s) | in forwards | gap between | cancel latency (s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for model_name in args.model or MODELS:
        model, scan, kwargs = load(model_name)
        for name in names:
            fwd = forward_seconds(model, scan)
            try:
                run = gaps_of_run(model, scan, name, kwargs, args.cap)
            except XAIError as exc:  # e.g. a CAM without a layer on this model
                print(f"| {model_name} | {name} | n/a: {exc.problem[:70]} | | | | | | |", flush=True)
                continue
            fwd = 0.5 * (fwd + forward_seconds(model, scan))
            at = min(args.cancel_at * run["total"], args.cancel_max)
            latency = cancel_latency(model, scan, name, kwargs, at)
            shown = f"{run['total']:.1f}" if run["done"] else f">{run['total']:.0f}"
            lat = "finished first" if latency is None else f"{latency:.2f}"
            flag = " **" if run["gap"] > 1.0 else ""
            print(
                f"| {model_name} | {name} | {shown} | {run['events']} | {fwd:.3f} | {run['gap']:.2f}{flag} | {run['gap'] / fwd:.1f} "
                f"| {run['after'][:40]} -> {run['before'][:40]} | {lat} |",
                flush=True,
            )
            if args.verbose:
                for g, a, b in run["gaps"]:
                    if g > 0.5:
                        print(f"    {g:.2f} s: {a!r} -> {b!r}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
