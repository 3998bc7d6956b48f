"""How much arithmetic incremental occlusion recomputes, and how fast it runs it, against full passes.

    python benchmarks/occlusion_arithmetic.py [--threads 2] [--windows N]

For the two occlusion rows of ``bench_methods.py`` (plain 3D CNN at
40 x 48 x 40 with 4^3 windows at stride 4; MONAI DenseNet-121 3D at 64^3 with
8^3 windows at stride 8) it replays the windows on the recorded unoccluded
pass (``napari_xai.engine.methods.perturbation.incremental``) and counts the
multiply-adds of every convolution the replay runs, against the same
convolutions in one full forward pass per window. The share recomputed is
independent of the machine and its load: it bounds what the exact
incremental path can gain (ratio to the naive floor >= that share, since the
rest of the network is cheap here). It also times the convolutions of the
replay and of the full passes (interleaved, in the same process) and prints
their throughput, which tells the per-call cost of convolving small crops
from the arithmetic. ``--layout`` also times the replay with the crops'
convolutions channels-last against contiguous. Only ``torch.conv3d`` calls are counted (``F.conv3d`` is the same function).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))


class ConvMeter(TorchFunctionMode):
    """Counts multiply-adds and wall time of ``torch.conv3d`` calls made while it is active (thread-local mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.seconds = 0.0
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if func is not torch.conv3d:
            return func(*args, **kwargs)
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        self.macs += out.numel() * weight.shape[1] * math.prod(weight.shape[2:])
        return out


def measure(name: str, net, x: torch.Tensor, window: int, windows: int | None) -> None:
    from napari_xai.engine.methods.perturbation import incremental as _incremental
    from napari_xai.engine.methods.perturbation.occlusion import window_starts

    tape, why, _ = _incremental.record(net, x)
    assert tape is not None, why
    starts = window_starts(tuple(x.shape[2:]), (window,) * 3, (window,) * 3)
    if windows:
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, windows).astype(int)]
    batch = 32
    rep, full = ConvMeter(), ConvMeter()
    diff = 0.0
    with torch.inference_mode():
        for lo in range(0, len(starts), batch):
            chunk = starts[lo : lo + batch]
            boxes = [tuple((s, s + window) for s in st) for st in chunk]
            crop = torch.zeros(len(chunk), x.shape[1], window, window, window)
            with rep:
                got = tape.replay(boxes, crop)
            xb = x.repeat(len(chunk), 1, 1, 1, 1)
            for i, st in enumerate(chunk):
                xb[(i, slice(None)) + tuple(slice(s, s + window) for s in st)] = 0.0
            with full:
                want = net(xb)
            diff = max(diff, float((got - want).abs().max()))
    share = rep.macs / full.macs
    print(
        f"{name:24s} windows {len(starts):5d}  conv MACs replay {rep.macs / 1e9:8.2f} G  full {full.macs / 1e9:8.2f} G  "
        f"share {share:6.3f}  conv time replay {rep.seconds:7.2f} s ({rep.calls} calls, {rep.macs / max(rep.seconds, 1e-9) / 1e9:5.2f} GMAC/s)  "
        f"full {full.seconds:7.2f} s ({full.calls} calls, {full.macs / max(full.seconds, 1e-9) / 1e9:5.2f} GMAC/s)  "
        f"time share {rep.seconds / full.seconds:6.3f}  max diff {diff:.2g}",
        flush=True,
    )


def layout(name: str, net, x: torch.Tensor, window: int, rounds: int = 7) -> None:
    """Replay time of one batch of 32 windows with the crops' 3D convolutions channels-last against contiguous."""
    from napari_xai.engine.methods.perturbation import incremental as _incremental
    from napari_xai.engine.methods.perturbation.occlusion import window_starts

    tape, _, _ = _incremental.record(net, x)
    starts = window_starts(tuple(x.shape[2:]), (window,) * 3, (window,) * 3)
    chunk = [starts[i] for i in np.linspace(0, len(starts) - 1, 32).astype(int)]
    boxes = [tuple((s, s + window) for s in st) for st in chunk]
    crop = torch.zeros(32, x.shape[1], window, window, window)
    times: dict[bool, list[float]] = {True: [], False: []}
    outs = {}
    saved = _incremental.CHANNELS_LAST
    try:
        with torch.inference_mode():
            for r in range(rounds):
                for flag in (True, False) if r % 2 else (False, True):
                    _incremental.CHANNELS_LAST = flag
                    t0 = time.perf_counter()
                    outs[flag] = tape.replay(boxes, crop)
                    times[flag].append(time.perf_counter() - t0)
    finally:
        _incremental.CHANNELS_LAST = saved
    cl, cf = float(np.median(times[True])), float(np.median(times[False]))
    print(f"{name:24s} replay of 32 windows: channels-last {cl:.3f} s, contiguous {cf:.3f} s, ratio {cl / cf:.2f} "
          f"(median of {rounds}, interleaved), max diff {float((outs[True] - outs[False]).abs().max()):.2g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=None, help="use this many windows spread over the grid (default all)")
    parser.add_argument("--only", nargs="+", choices=("plain", "densenet"))
    parser.add_argument("--layout", action="store_true", help="also time the replay with channels-last crops against contiguous")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from bench_methods import densenet, plain_cnn

    print(f"torch {torch.__version__}, {args.threads} threads, load {__import__('os').getloadavg()[0]:.1f}")
    if not args.only or "plain" in args.only:
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 40, 48, 40)).astype(np.float32))
        measure("plain 3D CNN 4^3/4", plain_cnn(), x, 4, args.windows)
        if args.layout:
            layout("plain 3D CNN 4^3/4", plain_cnn(), x, 4)
    if not args.only or "densenet" in args.only:
        x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 1, 64, 64, 64)).astype(np.float32))
        measure("DenseNet-121 3D 8^3/8", densenet(), x, 8, args.windows)
        if args.layout:
            layout("DenseNet-121 3D 8^3/8", densenet(), x, 8, rounds=3)


if __name__ == "__main__":
    main()
