"""Speed and peak memory of napari-xai's methods against Captum, same model, input and settings, same run.

    python benchmarks/bench_methods.py [--repeat 3] [--threads 2]

Each (implementation, method) pair runs in its own subprocess so that peak
resident memory (``ru_maxrss``) is its own; the subprocess also measures a
baseline after loading the model, and the report gives the peak above that.
Times are the best of ``--repeat`` runs after one warm-up. The floor for
forward-only methods is (forward passes needed) x (per-sample forward time at
the best batch size), printed as well. Results are a ratio, ours / Captum:
below 1 is faster.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = {
    # method: (our params, Captum call builder name)
    "vanilla_gradient": {"absolute": True},
    "integrated_gradients": {"steps": 32, "rule": "gausslegendre"},
    "grad_cam": {"relu": True},
    "occlusion": {"window": 12, "stride": 12, "baseline": "zeros"},
}


def run_one(impl: str, method: str, repeat: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from napari_xai.engine import explain
    from napari_xai.engine.model_space import to_model_space
    from napari_xai.samples import load_lesion_classifier, load_sample_scan

    model = load_lesion_classifier()
    scan = load_sample_scan()
    x = to_model_space(scan, model.spec).tensor
    net = model.module
    params = CASES[method]
    with torch.no_grad():
        target = int(net(x).argmax())
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def ours():
        return explain(model, scan, method, target=target, **params).values

    def captum():
        from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

        if method == "vanilla_gradient":
            return Saliency(net).attribute(x, target=target, abs=True)
        if method == "integrated_gradients":
            return IntegratedGradients(net).attribute(x, target=target, n_steps=params["steps"], internal_batch_size=params["steps"])
        if method == "grad_cam":
            layer = net.get_submodule(model.spec.cam_layer)
            cam = LayerGradCam(net, layer).attribute(x, target=target)
            return LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="trilinear")
        w, s = params["window"], params["stride"]
        return Occlusion(net).attribute(x, sliding_window_shapes=(1, w, w, w), strides=(1, s, s, s), target=target, baselines=0.0, perturbations_per_eval=16)

    fn = ours if impl == "napari-xai" else captum
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"impl": impl, "method": method, "seconds": min(times), "peak_mb_above_model": (peak_kb - baseline_kb) / 1024}
    if method == "occlusion":
        with torch.inference_mode():
            best = None
            for bs in (1, 4, 16, 32):
                xb = x.repeat(bs, 1, 1, 1, 1)
                net(xb)
                t0 = time.perf_counter()
                net(xb)
                per = (time.perf_counter() - t0) / bs
                best = per if best is None else min(best, per)
        from napari_xai.engine.methods.occlusion import window_starts

        n = len(window_starts(tuple(x.shape[2:]), (params["window"],) * 3, (params["stride"],) * 3))
        out["floor_seconds"] = n * best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.repeat, args.threads)))
        return
    rows = []
    for method in CASES:
        pair = {}
        for impl in ("napari-xai", "captum"):
            res = subprocess.run(
                [sys.executable, __file__, "--one", impl, method, "--repeat", str(args.repeat), "--threads", str(args.threads)],
                capture_output=True, text=True, check=True,
            )
            pair[impl] = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append((method, pair))
    print(f"{'method':22s} {'ours s':>8s} {'captum s':>9s} {'ratio':>6s} {'ours MB':>8s} {'captum MB':>10s} {'floor s':>8s}")
    for method, pair in rows:
        o, c = pair["napari-xai"], pair["captum"]
        floor = f"{o['floor_seconds']:.2f}" if "floor_seconds" in o else "-"
        print(
            f"{method:22s} {o['seconds']:8.3f} {c['seconds']:9.3f} {o['seconds'] / c['seconds']:6.2f} "
            f"{o['peak_mb_above_model']:8.0f} {c['peak_mb_above_model']:10.0f} {floor:>8s}"
        )


if __name__ == "__main__":
    main()
