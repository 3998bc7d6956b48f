"""Wall time of every method at its defaults on the sample 3D model: is each one interactive?

    python benchmarks/bench_defaults.py [--limit 60] [--threads 2] [--model classifier|segmenter]

Each method runs in its own subprocess, exactly as ``explain(model, scan,
method)`` with no parameters (what the GUI runs by default). A method still
running after ``--limit`` seconds is stopped and its total time extrapolated
from its last progress event (marked ``~``). It also prints the number of
samples the model was run on (forward, and with gradients), which do not
depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def run_one(method: str, threads: int, model_name: str) -> None:
    import torch

    torch.set_num_threads(threads)
    from napari_xai.engine import explain
    from napari_xai.samples import load_lesion_classifier, load_lesion_segmenter, load_sample_scan

    model = load_lesion_classifier() if model_name == "classifier" else load_lesion_segmenter()
    scan = load_sample_scan()
    counts = {"forward": 0, "gradient": 0}

    def count(_m, inputs):
        counts["gradient" if torch.is_grad_enabled() else "forward"] += int(inputs[0].shape[0])

    handle = model.module.register_forward_pre_hook(count)
    t0 = time.perf_counter()

    def progress(event):
        print(json.dumps({"t": time.perf_counter() - t0, "fraction": event.fraction, **counts}), flush=True)

    explain(model, scan, method, on_progress=progress)
    handle.remove()
    print(json.dumps({"t": time.perf_counter() - t0, "fraction": 1.0, "done": True, **counts}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", choices=("classifier", "segmenter"), default="classifier")
    parser.add_argument("--method", action="append")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.threads, args.model)
        return
    from napari_xai.engine import list_methods

    names = args.method or [m.name for m in list_methods()]
    print(f"{'method':28s} {'seconds':>9s} {'forward':>8s} {'gradient':>9s}")
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--threads", str(args.threads), "--model", args.model]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            out, _ = proc.communicate(timeout=args.limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        last = events[-1] if events else {"t": args.limit, "fraction": 0.0, "forward": 0, "gradient": 0}
        if last.get("done"):
            shown = f"{last['t']:9.1f}"
        elif last["fraction"] > 0:
            shown = f"~{last['t'] / last['fraction']:8.0f}"
        else:
            shown = f">{args.limit:8.0f}"
        print(f"{name:28s} {shown} {last['forward']:8d} {last['gradient']:9d}", flush=True)


if __name__ == "__main__":
    main()
