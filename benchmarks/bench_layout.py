"""Forward and gradient passes of real 3D networks in PyTorch's default layout and in channels-last, side by side.

    python benchmarks/bench_layout.py [--threads 2] [--repeat 3] [--only NAME ...]

The measurement behind ``napari_xai/engine/methods/toolkit/layout.py``: for
each network, one no-grad forward pass at batch 1 and 2, and one forward plus
``torch.autograd.grad`` to the input at batch 1 and 2, in the network's own layout
and in a channels-last copy (``.to(memory_format=torch.channels_last_3d)``,
input likewise), run interleaved ``--repeat`` times after a warm-up; the
median of each, the ratio channels-last / default (below 1: channels-last is
faster), the largest output difference, and what the engine's trial
(``layout_for_probe``) chooses for the network. Networks: the sample 3D
classifier and segmenter and the 2D classifier at their model-space inputs,
MONAI SegResNet, UNet and DenseNet-121, and nnU-Net's PlainConvUNet (3D full
resolution, six stages) at 96^3 (a sliding window's size). Prints a Markdown
table; results are in benchmarks/README.md, "Memory layout".
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def networks() -> dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]]:
    from napari_xai import samples
    from napari_xai.engine.model_space import to_model_space

    def sample(load, scan):
        def make():
            model = load()
            return model.module, tuple(to_model_space(scan(), model.spec).tensor.shape)

        return make

    def monai(name: str, **kw):
        def make():
            import monai.networks.nets as nets

            torch.manual_seed(0)
            return getattr(nets, name)(**kw), (1, 1, 96, 96, 96)

        return make

    def plain_conv_unet():
        from dynamic_network_architectures.architectures.unet import PlainConvUNet

        torch.manual_seed(0)
        net = PlainConvUNet(
            1, 6, (32, 64, 128, 256, 320, 320), nn.Conv3d, 3, (1, 2, 2, 2, 2, 2), (2, 2, 2, 2, 2, 2), 3, (2, 2, 2, 2, 2),
            False, nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU, {"inplace": True},
        )
        return net, (1, 1, 96, 96, 96)

    return {
        "sample 3D classifier": sample(samples.load_lesion_classifier, samples.load_sample_scan),
        "sample 3D segmenter": sample(samples.load_lesion_segmenter, samples.load_sample_scan),
        "sample 2D classifier": sample(samples.load_lesion_classifier_2d, samples.load_sample_scan_axial),
        "SegResNet": monai("SegResNet", spatial_dims=3, in_channels=1, out_channels=2, init_filters=16),
        "UNet": monai("UNet", spatial_dims=3, in_channels=1, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2),
        "DenseNet-121": monai("DenseNet121", spatial_dims=3, in_channels=1, out_channels=2),
        "PlainConvUNet": plain_conv_unet,
    }


def first_tensor(out) -> torch.Tensor:
    return out[0] if isinstance(out, (list, tuple)) else out


def measure(net: nn.Module, shape: tuple[int, ...], repeat: int) -> dict:
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    net = net.eval()
    clone = copy.deepcopy(net).to(memory_format=fmt)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    inputs = {1: x, 2: x.repeat(2, *([1] * (x.ndim - 1)))}

    def forward(m: nn.Module, batch: int, cl: bool) -> Callable[[], torch.Tensor]:
        xb = inputs[batch].contiguous(memory_format=fmt) if cl else inputs[batch]

        def run():
            with torch.inference_mode():
                return first_tensor(m(xb))

        return run

    def gradient(m: nn.Module, batch: int, cl: bool) -> Callable[[], torch.Tensor]:
        def run():
            xb = inputs[batch]
            xg = (xb.contiguous(memory_format=fmt) if cl else xb).detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(first_tensor(m(xg)).float().sum(), xg)
            return g

        return run

    fns = {
        "fwd1": forward(net, 1, False), "fwd1 CL": forward(clone, 1, True),
        "fwd2": forward(net, 2, False), "fwd2 CL": forward(clone, 2, True),
        "grad1": gradient(net, 1, False), "grad1 CL": gradient(clone, 1, True),
        "grad2": gradient(net, 2, False), "grad2 CL": gradient(clone, 2, True),
    }
    outs = {k: f() for k, f in fns.items()}  # warm-up: oneDNN picks its kernels for each shape and layout once
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeat):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    diff = float((outs["fwd1 CL"] - outs["fwd1"]).abs().max() / outs["fwd1"].abs().max())
    from napari_xai.engine.methods.toolkit.layout import layout_for_probe

    choice = layout_for_probe(net, x)
    return {"med": med, "diff": diff, "choice": choice.record.get("layout")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", help="network name (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| network | input | forward b1 (CL / default) | forward b2 per sample | forward + input gradient b1 | gradient b2 per sample | max output diff (rel.) | engine's choice | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for name, make in networks().items():
        if args.only and name not in args.only:
            continue
        net, shape = make()
        r = measure(net, shape, args.repeat)
        m = r["med"]
        cell = lambda a, b, n=1: f"{m[b] / n:.3f} / {m[a] / n:.3f} s = {m[b] / m[a]:.2f}"  # noqa: E731
        print(
            f"| {name} | {'x'.join(map(str, shape[2:]))} | {cell('fwd1', 'fwd1 CL')} | {cell('fwd2', 'fwd2 CL', 2)} | "
            f"{cell('grad1', 'grad1 CL')} | {cell('grad2', 'grad2 CL', 2)} | {r['diff']:.1e} | {r['choice']} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
