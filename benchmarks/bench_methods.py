"""Speed of napari-xai's methods against their anchors (Captum, MONAI), same model, input and settings, one run.

    python benchmarks/bench_methods.py [--threads 2] [--repeat 2] [--only NAME ...] [--captum-full]

Rows (see benchmarks/README.md for the last results):

- ``occlusion_plain``: a plain 3D CNN (conv / BatchNorm / ReLU / max pool,
  global head) at 40 x 48 x 40, 4^3 windows at stride 4 (1200 windows):
  napari-xai's incremental occlusion against Captum ``Occlusion``
  (``perturbations_per_eval=32``) and MONAI ``OcclusionSensitivity``
  (overlap 0, the same grid); the maps are compared too.
- ``occlusion_densenet``: MONAI DenseNet-121 3D at 64^3, 8^3 windows at
  stride 8 (512 windows): the replay of one batch of 32 windows against 32
  full forward passes (one batch of Captum's; both methods' cost is 16 such
  batches), unless ``--captum-full`` (both full runs).
- ``vanilla_gradient``, ``grad_cam``: DenseNet-121 3D at 64^3, against the
  floor (one forward with gradients plus ``torch.autograd.grad``; for
  Grad-CAM one forward without gradients) and Captum ``Saliency`` /
  ``LayerGradCam`` on the same layer.
- ``integrated_gradients``: the sample 3D classifier, 32 Gauss-Legendre
  steps, against Captum ``IntegratedGradients`` at its best
  ``internal_batch_size`` (of 1, 4, 8, 16, 32) and the floor (32 x one forward
  and backward at the best batch size).

Every row warms each of its contenders once, then runs them ``--repeat``
times interleaved (the order rotates each round, so that a change of load
on the shared machine falls on all of them alike) and reports the median
time of each, with the spread (min-max) and the load average. Ratios are
ours / anchor (below 1 is faster).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> tuple[dict[str, float], dict[str, object], dict[str, str]]:
    """Median wall time of each function over ``repeat`` interleaved rounds (after one warm-up each), its result and spread.

    A function whose name starts with ``floor`` returns a time itself (a floor measured inside); its result is then the
    median of what it returned.
    """
    outs = {k: fn() for k, fn in fns.items()}
    floors: dict[str, list[float]] = {k: [] for k in fns if k.startswith("floor")}
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeat):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            outs[k] = fns[k]()
            times[k].append(time.perf_counter() - t0)
            if k in floors:
                floors[k].append(float(outs[k]))
    med = {k: float(np.median(v)) for k, v in times.items()}
    spread = {k: f"{min(v):.2f}-{max(v):.2f}" for k, v in times.items()}
    outs.update({k: float(np.median(v)) for k, v in floors.items() if v})
    return med, outs, spread


def plain_cnn() -> nn.Module:
    torch.manual_seed(0)

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv3d(i, o, 3, padding=1, bias=False), nn.BatchNorm3d(o), nn.ReLU(inplace=True)]

    net = nn.Sequential(
        *block(1, 8), *block(8, 8), nn.MaxPool3d(2),
        *block(8, 16), *block(16, 16), nn.MaxPool3d(2),
        *block(16, 32), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, 2),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def densenet() -> nn.Module:
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    return DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()


def forward_floor(net: nn.Module, x: torch.Tensor, sizes=(1, 4, 16, 32)) -> Callable[[], float]:
    """A function timing one no-grad forward per sample at the best of ``sizes`` (the naive floor of a perturbation method)."""

    batches = {bs: x.repeat(bs, *([1] * (x.ndim - 1))) for bs in sizes}

    def per_sample() -> float:
        best = float("inf")
        with torch.inference_mode():
            for bs, xb in batches.items():
                t0 = time.perf_counter()
                net(xb)
                best = min(best, (time.perf_counter() - t0) / bs)
        return best

    return per_sample


def row(name: str, ours: float, anchor_name: str, anchor: float, floor: float | None = None, note: str = "") -> dict:
    r = {"row": name, "ours_s": ours, "anchor": anchor_name, "anchor_s": anchor, "ratio": ours / anchor, "floor_s": floor, "note": note}
    fl = f"{floor:8.2f}" if floor is not None else "       -"
    rf = f"{ours / floor:6.2f}" if floor is not None else "     -"
    print(f"{name:22s} {ours:8.2f} {anchor_name:34s} {anchor:8.2f} {ours / anchor:6.2f} {fl} {rf}  {note}", flush=True)
    return r


def occlusion_plain(repeat: int, captum_full: bool) -> list[dict]:
    from captum.attr import Occlusion
    from monai.visualize import OcclusionSensitivity

    from napari_xai.engine import explain

    net = plain_cnn()
    image = np.random.default_rng(0).normal(size=(40, 48, 40)).astype(np.float32)
    x = torch.from_numpy(image)[None, None]
    occ = OcclusionSensitivity(net, mask_size=4, overlap=0.0, n_batch=32, mode=0.0, activate=False, verbose=False)
    per = forward_floor(net, x)
    med, outs, spread = interleaved(
        {
            "ours": lambda: explain(net, image, "occlusion", target=1, window=4, stride=4),
            "captum": lambda: Occlusion(net).attribute(
                x, sliding_window_shapes=(1, 4, 4, 4), strides=(1, 4, 4, 4), target=1, baselines=0.0, perturbations_per_eval=32
            ),
            "monai": lambda: occ(x),
            "floor": lambda: 1200 * per(),
        },
        repeat,
    )
    a, ref, (mon, _) = outs["ours"], outs["captum"], outs["monai"]
    floor = outs["floor"]
    diff = float(np.abs(a.values - ref[0, 0].numpy()).max())
    # MONAI's map is the occluded score itself; ours is f(x) - that
    with torch.no_grad():
        f_x = float(net(x)[0, 1])
    diff_m = float(np.abs(a.values - (f_x - mon[0, 1].detach().numpy())).max())
    sp = f"ours {spread['ours']} s, Captum {spread['captum']} s, MONAI {spread['monai']} s"
    return [
        row("occlusion plain 3D", med["ours"], "Captum Occlusion (ppe 32)", med["captum"], floor,
            f"max |ours - Captum| {diff:.2g}; {a.checks['occlusion']['ops_run_in_full']} in full; {sp}"),
        row("occlusion plain 3D", med["ours"], "MONAI OcclusionSensitivity", med["monai"], floor, f"max |ours - MONAI| {diff_m:.2g}"),
    ]


def occlusion_densenet(repeat: int, captum_full: bool) -> list[dict]:
    """Per batch of 32 windows (a full run is 16 such batches plus one recorded pass), unless ``--captum-full``."""
    from captum.attr import Occlusion

    from napari_xai.engine import explain
    from napari_xai.engine.methods.perturbation import incremental as _incremental

    net = densenet()
    image = np.random.default_rng(1).normal(size=(64, 64, 64)).astype(np.float32)
    x = torch.from_numpy(image)[None, None]
    if captum_full:
        med, outs, spread = interleaved(
            {
                "ours": lambda: explain(net, image, "occlusion", target=1, window=8, stride=8),
                "captum": lambda: Occlusion(net).attribute(
                    x, sliding_window_shapes=(1, 8, 8, 8), strides=(1, 8, 8, 8), target=1, baselines=0.0, perturbations_per_eval=32
                ),
            },
            repeat,
        )
        note = f"full run; max |ours - Captum| {float(np.abs(outs['ours'].values - outs['captum'][0, 0].numpy()).max()):.2g}; {spread}"
        return [row("occlusion DenseNet-121", med["ours"], "Captum Occlusion (ppe 32)", med["captum"], 512 * forward_floor(net, x, sizes=(1, 8))(), note)]
    tape, _, _ = _incremental.record(net, x)
    rng = np.random.default_rng(0)
    starts = [tuple(int(v) * 8 for v in rng.integers(0, 8, 3)) for _ in range(32)]
    boxes = [tuple((s, s + 8) for s in st) for st in starts]
    crop = torch.zeros(32, 1, 8, 8, 8)
    xb = x.repeat(32, 1, 1, 1, 1)
    for i, st in enumerate(starts):
        xb[(i, slice(None)) + tuple(slice(s, s + 8) for s in st)] = 0.0

    def full():
        with torch.inference_mode():
            return net(xb)

    def replay():
        with torch.inference_mode():
            return tape.replay(boxes, crop)

    med, outs, spread = interleaved({"ours": replay, "full": full}, repeat)
    err = float((outs["ours"] - outs["full"]).abs().max())
    note = f"per batch of 32 windows; max diff {err:.2g}; ours {spread['ours']} s, full {spread['full']} s"
    return [row("occlusion DenseNet-121", med["ours"], "32 full forwards (Captum's batch)", med["full"], None, note)]


def one_pass(repeat: int, captum_full: bool) -> list[dict]:
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    from napari_xai.engine import explain
    from napari_xai.engine.models.loading import as_loaded_model

    net = densenet()
    loaded = as_loaded_model(net)
    image = np.random.default_rng(2).normal(size=(64, 64, 64)).astype(np.float32)
    x = torch.from_numpy(image)[None, None]
    layer = "class_layers.relu"

    def grad_floor():
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xg)[0, 1], xg)
        return g

    def fwd():
        with torch.no_grad():
            return net(x)

    def captum_cam():
        cam = LayerGradCam(net, net.get_submodule(layer)).attribute(x, target=1)
        return LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="trilinear")

    med, _, spread = interleaved(
        {
            "grad floor": grad_floor,
            "vanilla gradient": lambda: explain(net, image, "vanilla_gradient", target=1),
            "Saliency": lambda: Saliency(net).attribute(x, target=1, abs=True),
            "forward": fwd,
            "Grad-CAM": lambda: explain(net, image, "grad_cam", target=1, layer=layer),
            "Grad-CAM, loaded": lambda: explain(loaded, image, "grad_cam", target=1, layer=layer),
            "LayerGradCam": captum_cam,
        },
        repeat,
    )
    sp = lambda *k: "; ".join(f"{n} {spread[n]} s" for n in k)  # noqa: E731
    return [
        row("vanilla gradient", med["vanilla gradient"], "Captum Saliency", med["Saliency"], med["grad floor"],
            "floor: forward + autograd.grad; " + sp("vanilla gradient", "Saliency", "grad floor")),
        row("Grad-CAM", med["Grad-CAM"], "Captum LayerGradCam", med["LayerGradCam"], med["forward"],
            "floor: one forward without gradients; " + sp("Grad-CAM", "LayerGradCam", "forward")),
        row("Grad-CAM, loaded", med["Grad-CAM, loaded"], "Captum LayerGradCam", med["LayerGradCam"], med["forward"],
            "a LoadedModel, as the hosts pass it (its weights keyed once); " + sp("Grad-CAM, loaded")),
    ]


def integrated_gradients(repeat: int, captum_full: bool) -> list[dict]:
    """32 steps of our default rule and of Gauss-Legendre against Captum at its best internal batch and the floor."""
    from captum.attr import IntegratedGradients

    from napari_xai.engine import estimate, explain
    from napari_xai.engine.model_space import to_model_space
    from napari_xai.samples import load_lesion_classifier, load_sample_scan

    model, scan = load_lesion_classifier(), load_sample_scan()
    x = to_model_space(scan, model.spec).tensor
    net = model.module.eval()
    ibs_t = {}
    for ibs in (1, 4, 8, 16, 32):
        t0 = time.perf_counter()
        IntegratedGradients(net).attribute(x, target=1, n_steps=32, internal_batch_size=ibs)
        ibs_t[ibs] = time.perf_counter() - t0
    best_ibs = min(ibs_t, key=ibs_t.get)
    step = {bs: x.repeat(bs, 1, 1, 1, 1) for bs in (1, 2, 4, 8)}
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last_3d)
    # what the hosts run: the estimate first, which chooses the memory layout (methods/toolkit/layout.py);
    # a separate copy of the model, so that the plain explain() below keeps the model's own layout
    hosted = copy.deepcopy(model)
    estimate(hosted, scan, "integrated_gradients", steps=32, rule="gausslegendre")

    def per_step(m: nn.Module, fmt: torch.memory_format) -> Callable[[], float]:
        def best_time() -> float:
            best = float("inf")
            for bs, xb in step.items():
                xg = xb.detach().contiguous(memory_format=fmt).requires_grad_(True)
                t0 = time.perf_counter()
                torch.autograd.grad(m(xg)[:, 1].sum(), xg)
                best = min(best, (time.perf_counter() - t0) / bs)
            return 32 * best

        return best_time

    med, outs, spread = interleaved(
        {
            "ours": lambda: explain(model, scan, "integrated_gradients", target=1, steps=32, rule="gausslegendre"),
            "ours, as hosted": lambda: explain(hosted, scan, "integrated_gradients", target=1, steps=32, rule="gausslegendre"),
            "captum": lambda: IntegratedGradients(net).attribute(x, target=1, n_steps=32, internal_batch_size=best_ibs),
            "floor": per_step(net, torch.contiguous_format),
            "floor channels-last": per_step(cl, torch.channels_last_3d),
        },
        repeat,
    )
    err = outs["ours"].checks["completeness"]["relative_delta"]
    layout = outs["ours, as hosted"].checks.get("layout", {}).get("gradients", "own layout")
    note = f"GL-32; completeness error {err:.2%}; floor = 32 x best per-step F+B (batch 1-8); ours {spread['ours']} s, Captum {spread['captum']} s"
    return [
        row("integrated gradients 32", med["ours"], f"Captum IG (internal batch {best_ibs})", med["captum"], outs["floor"], note),
        row("IG 32, as hosted", med["ours, as hosted"], f"Captum IG (internal batch {best_ibs})", med["captum"], outs["floor channels-last"],
            f"after estimate(): gradients {layout}; floor in channels-last; {spread['ours, as hosted']} s"),
    ]


ROWS = {"occlusion_plain": occlusion_plain, "occlusion_densenet": occlusion_densenet, "one_pass": one_pass, "integrated_gradients": integrated_gradients}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=sorted(ROWS))
    parser.add_argument("--captum-full", action="store_true", help="run Captum's DenseNet occlusion in full (about 512 forward passes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu, {args.repeat} interleaved repeats, median; {load()}")
    print(f"{'row':22s} {'ours s':>8s} {'anchor':34s} {'anchor s':>8s} {'ratio':>6s} {'floor s':>8s} {'/floor':>6s}")
    for name in args.only or ROWS:
        ROWS[name](args.repeat, args.captum_full)
        print(f"  ({load()} after {name})", flush=True)


if __name__ == "__main__":
    main()
