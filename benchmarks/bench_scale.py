"""Whole scans through a real segmentation network: time and peak memory against the budget, per method.

    flock /tmp/napari_xai_heavy.lock python benchmarks/bench_scale.py [--cases 128,256,ct] [--threads 2]
        [--net segresnet|nnunet] [--methods vanilla_gradient,grad_cam,...] [--params rise:n_masks=8 ...]
        [--budget 2048] [--out results.json]

The network is MONAI's ``SegResNet(spatial_dims=3, in_channels=1,
out_channels=2, init_filters=8)`` with seeded random weights (no trained
weights are downloaded; time and memory do not depend on them), or with
``--net nnunet`` an nnU-Net-style ``PlainConvUNet`` (``dynamic_network_architectures``)
loaded by napari-xai's nnU-Net loader from a results folder the script
writes (plans: 4 stages of 8, 16, 32, 64 features, 3^3 kernels, InstanceNorm,
LeakyReLU, patch 64^3, 1 mm spacing, CT normalisation), run as nnU-Net
predicts: Gaussian windows of the patch size, step 0.5, sigma 1/8. The target is
class 1 summed over a 16^3 region at the centre. Volumes are generated
CT-like volumes with HU intensities (a water cylinder in air with a few
denser blobs); they are synthetic, not scans. The spec windows them to
[-1000, 1000] HU.

Each case runs in its own subprocess, so that its peak resident memory
(``ru_maxrss``) is its own. The subprocess records a baseline, its resident memory after
importing torch, MONAI and napari-xai, building the network and making the
volume (the fixed overhead: interpreter, libraries, weights, the scan
itself), then estimates and runs the method once; the peak is ``ru_maxrss``
at the end (an upper bound: it includes making the volume, if that peaked higher). The report gives the peak, the baseline and the
difference, against the memory budget. ``--check`` also runs, at a size where
both fit, the same method through MONAI's own ``sliding_window_inference``
with autograd through the whole forward and reports the largest relative
difference.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time

SIZES = {"64": (64, 64, 64), "96": (96, 96, 96), "128": (128, 128, 128), "256": (256, 256, 256), "ct": (300, 512, 512)}
METHODS = {
    "vanilla_gradient": {"absolute": False},
    "integrated_gradients": {"steps": 8},
    "grad_cam": {"relu": True},
    "grad_cam_pp": {"relu": True},
    "occlusion": {"window": 32, "stride": 32},
    "rise": {"n_masks": 64, "grid": 8},
}
#: Fewer passes where the machine is too slow for the defaults above (2 shared cores): the windows run in
#: groups sized by the budget, so the peak does not grow with the number of passes, only the time does.
SIZE_PARAMS = {
    "128": {"integrated_gradients": {"steps": 4}, "occlusion": {"window": 64, "stride": 64}, "rise": {"n_masks": 4}},
    "256": {"occlusion": {"window": 64, "stride": 64}, "rise": {"n_masks": 8}},
}
#: The nnU-Net-style network's plans (small enough for a 2-core CPU; nnU-Net's own planner sizes them for a GPU).
NNUNET_ARCH = {"n_stages": 4, "features_per_stage": [8, 16, 32, 64], "kernel_sizes": [[3, 3, 3]] * 4,
               "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2, 2],
               "n_conv_per_stage_decoder": [2, 2, 2]}
NNUNET_BENCH_PATCH = [64, 64, 64]


def ct_like(shape: tuple[int, ...], seed: int = 0):
    """A generated CT-like volume in HU: air, a water cylinder (body), fat rim, bone-dense and soft blobs, noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = (shape[1] - 1) / 2, (shape[2] - 1) / 2
    r = np.sqrt(((y - cy) / (0.42 * shape[1])) ** 2 + ((x - cx) / (0.46 * shape[2])) ** 2)
    vol = np.full(shape, -1000.0, dtype=np.float32)
    body = np.broadcast_to(r < 1.0, shape)
    vol[body] = 40.0
    vol[np.broadcast_to((r > 0.9) & (r < 1.0), shape)] = -100.0  # fat
    for _ in range(6):
        c = [rng.uniform(0.3, 0.7) * n for n in shape]
        rad = rng.uniform(0.04, 0.1) * min(shape)
        blob = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < rad**2
        vol[blob] = rng.choice([700.0, 60.0, -20.0])
    vol += rng.normal(0, 15, size=shape).astype(np.float32)
    return vol


def current_rss_kb() -> int:
    """Resident memory now, in KiB (``VmRSS``; ``ru_maxrss`` is the peak so far)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def nnunet_model(root: str):
    """Write an nnU-Net v2 results folder with :data:`NNUNET_ARCH` (fold 0, seeded weights) and load it as napari-xai does."""
    import json
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from napari_xai.engine.models import load_model
    from tests.real_format_fixtures import nnunet_checkpoint, nnunet_dataset_json, nnunet_network, nnunet_plans

    plans, dataset_json = nnunet_plans(), nnunet_dataset_json()
    conf = plans["configurations"]["3d_fullres"]
    conf.update({"patch_size": NNUNET_BENCH_PATCH, "spacing": [1.0, 1.0, 1.0]})
    conf["architecture"]["arch_kwargs"].update(NNUNET_ARCH)
    folder = Path(root)
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    net = nnunet_network(plans, dataset_json)
    torch.save(nnunet_checkpoint(net, plans, dataset_json, 0), folder / "fold_0" / "checkpoint_final.pth")
    return load_model(folder, folds=0)


def run_case(size: str, method: str, windows: bool, roi: int, budget: int, threads: int, check: bool,
             net_name: str = "segresnet", params: dict | None = None) -> dict:
    import tempfile

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from napari_xai.engine import MemoryBudgetError, estimate, explain
    from napari_xai.engine.sliding_window import plan_windows, sliding_window_forward

    shape = SIZES[size]
    vol = ct_like(shape)
    region = np.zeros(shape, dtype=bool)
    region[tuple(slice(n // 2 - 8, n // 2 + 8) for n in shape)] = True
    if net_name == "nnunet":
        with tempfile.TemporaryDirectory() as tmp:
            model = nnunet_model(tmp)
        net, spec = model, None
        sw = dict(model.spec.sliding_window)
        if not windows:
            raise SystemExit("the nnU-Net-style network runs by its Gaussian windows only (--mode windows)")
    else:
        from monai.networks.nets import SegResNet

        torch.manual_seed(0)
        net = SegResNet(spatial_dims=3, in_channels=1, out_channels=2, init_filters=8).eval()
        spec = {"task": "segmentation", "spatial_dims": 3, "in_channels": 1, "intensity": {"type": "window", "center": 0, "width": 2000}}
        sw = {"roi_size": [roi] * 3, "overlap": 0.25, "mode": "gaussian"}
        if windows:
            spec["sliding_window"] = sw
    module = net.module if net_name == "nnunet" else net
    params = {**METHODS[method], **SIZE_PARAMS.get(size, {}).get(method, {}), **(params or {})}
    gc.collect()
    baseline_kb = current_rss_kb()  # what is resident now: libraries, weights, the scan (not generation temporaries)
    out = {"net": net_name, "size": size, "shape": list(shape), "method": method, "params": params, "windows": windows,
           "roi": sw["roi_size"] if windows else None, "budget_mb": budget}
    t0 = time.perf_counter()
    cost = estimate(net, vol, method, 1, region=region, spec=spec, memory_budget_mb=budget, **params)
    out["estimate"] = {"seconds": cost.seconds, "peak_mb": cost.peak_mb, "forward": cost.forward_passes, "backward": cost.backward_passes, "fits": cost.fits}
    out["estimate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        att = explain(net, vol, method, 1, region=region, spec=spec, memory_budget_mb=budget, **params)
        out["status"] = "ran"
        values = att.values
        out["checkpointing"] = att.checks.get("checkpointing")
    except MemoryBudgetError as err:
        out["status"] = "refused"
        out["message"] = str(err)
        values = None
    out["seconds"] = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["baseline_mb"] = baseline_kb / 1024
    out["peak_mb"] = peak_kb / 1024
    out["peak_above_baseline_mb"] = (peak_kb - baseline_kb) / 1024
    out["model_mb"] = sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20
    # Grad-CAM's whole-volume reference stitches the layer's activations across windows, which the engine's
    # whole-volume path cannot see: tests/engine/test_sliding_window.py checks it against MONAI's own blending.
    if check and values is not None and windows and method not in ("grad_cam", "grad_cam_pp"):
        if net_name == "nnunet":  # the engine's forward in nnU-Net's style (tests/engine/models/test_nnunet.py checks it against nnU-Net's loop)
            def whole_forward(x):
                return sliding_window_forward(module, x, plan_windows(tuple(x.shape[2:]), sw), batch=4)
            whole_spec = {**net.spec.to_dict(), "sliding_window": None}
        else:
            from monai.inferers import sliding_window_inference

            def whole_forward(x):
                return sliding_window_inference(x, tuple(sw["roi_size"]), 4, module, overlap=0.25, mode="gaussian")
            whole_spec = {k: v for k, v in spec.items() if k != "sliding_window"}

        class Whole(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = module

            def forward(self, x):
                return whole_forward(x)

        ref = explain(Whole(), vol, method, 1, region=region, spec=whole_spec, memory_budget_mb=10**6, **params).values
        out["max_rel_diff_vs_whole"] = float(np.abs(values - ref).max() / max(np.abs(ref).max(), 1e-30))
    return out


def parse_params(items: list[str]) -> dict[str, dict]:
    """``method:key=value,key=value`` items as ``{method: {key: value}}`` (values read as JSON where they parse)."""
    found: dict[str, dict] = {}
    for item in items:
        method, _, pairs = item.partition(":")
        for pair in pairs.split(","):
            key, _, value = pair.partition("=")
            try:
                found.setdefault(method, {})[key] = json.loads(value)
            except json.JSONDecodeError:
                found.setdefault(method, {})[key] = value
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="128,256", help="comma-separated sizes: 64, 96, 128, 256, ct")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--mode", default="windows,whole", help="windows (sliding windows), whole (the network on the whole volume), or both")
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="also compare with autograd through MONAI's whole sliding-window forward")
    ap.add_argument("--net", default="segresnet", choices=("segresnet", "nnunet"))
    ap.add_argument("--params", nargs="*", default=[], help="per-method overrides, e.g. rise:n_masks=8 occlusion:window=64,stride=64")
    ap.add_argument("--out", default="")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        size, method, mode = args.one.split(":")
        print(json.dumps(run_case(size, method, mode == "windows", args.roi, args.budget, args.threads, args.check, args.net,
                                  parse_params(args.params).get(method))))
        return
    results = []
    for size in args.cases.split(","):
        for mode in args.mode.split(","):
            for method in args.methods.split(","):
                cmd = [sys.executable, __file__, "--one", f"{size}:{method}:{mode}", "--roi", str(args.roi), "--budget", str(args.budget),
                       "--threads", str(args.threads), "--net", args.net] + (["--check"] if args.check else [])
                if args.params:
                    cmd += ["--params", *args.params]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    res = {"net": args.net, "size": size, "method": method, "windows": mode == "windows", "status": f"failed ({proc.returncode})",
                           "stderr": proc.stderr[-2000:]}
                else:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(res)
                print(json.dumps(res), flush=True)
                if args.out:
                    with open(args.out, "w") as fh:
                        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
