"""How far the spec's sliding windows (MONAI's definition) are from nnU-Net's own predictor, on an nnU-Net-style network.

An nnU-Net folder loads with ``sliding_window`` = patch size, overlap 0.5,
Gaussian sigma 1/8, zero padding: MONAI's ``sliding_window_inference`` with
those settings. nnU-Net's ``predict_sliding_window_return_logits`` differs in
two details: its windows are spread evenly between the first and the last
position (``compute_steps_for_sliding_window``) where MONAI steps by
``patch * 0.5`` and moves the last window back, and its Gaussian is
``scipy.ndimage.gaussian_filter`` of a delta, peak 1, zeros raised to the
smallest value (``compute_gaussian``), where MONAI's has its peak between the
two centre voxels of an even axis and is clamped at 1e-3. nnU-Net's loop is
transcribed below from ``nnunetv2/inference/sliding_window_prediction.py``
and ``predict_from_raw_data.py`` (nnunetv2 itself cannot be installed here).

On the fixture network of ``tests/real_format_fixtures.py`` (random weights,
InstanceNorm, so neighbouring windows disagree more than a trained network's)
and a SYNTHETIC CT-like volume, the script prints, for one volume size where
both place the windows at the same positions and one where they do not: the
largest logit difference relative to the logits' spread, and the fraction of
voxels with the same argmax.

Run: ``PYTHONPATH=. python benchmarks/bench_nnunet_windows.py``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_xai.engine.model_space import to_model_space  # noqa: E402
from napari_xai.engine.models import load_model  # noqa: E402
from napari_xai.samples.synthetic_ct import synthetic_ct  # noqa: E402
from tests.real_format_fixtures import NNUNET_PATCH, NNUNET_SPACING, write_nnunet_results  # noqa: E402


def nnunet_steps(image_size, tile_size, tile_step_size=0.5):
    """``compute_steps_for_sliding_window``, transcribed."""
    target = [i * tile_step_size for i in tile_size]
    num_steps = [int(np.ceil((i - k) / j)) + 1 for i, j, k in zip(image_size, target, tile_size)]
    steps = []
    for dim in range(len(tile_size)):
        max_step = image_size[dim] - tile_size[dim]
        actual = max_step / (num_steps[dim] - 1) if num_steps[dim] > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(num_steps[dim])])
    return steps


def nnunet_gaussian(tile_size, sigma_scale=1.0 / 8, value_scaling_factor=10.0):
    """``compute_gaussian``, transcribed (float32 here; nnU-Net uses float16 on the GPU)."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(tile_size)
    tmp[tuple(i // 2 for i in tile_size)] = 1
    g = gaussian_filter(tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0)
    g /= np.max(g) / value_scaling_factor
    g = torch.from_numpy(g).float()
    g[g == 0] = torch.min(g[g != 0])
    return g


@torch.no_grad()
def nnunet_predict(net, data, patch, step=0.5):
    """``predict_sliding_window_return_logits`` on CPU without mirroring, transcribed (``data``: ``(C, *spatial)``)."""
    shape = data.shape[1:]
    pads = [max(0, p - s) for p, s in zip(patch, shape)]
    lo = [d // 2 for d in pads]
    padded = torch.nn.functional.pad(data, [v for d, low in zip(pads[::-1], lo[::-1]) for v in (low, d - low)])
    steps = nnunet_steps(padded.shape[1:], patch, step)
    g = nnunet_gaussian(tuple(patch))
    logits = n = None
    for sx in steps[0]:
        for sy in steps[1]:
            for sz in steps[2]:
                sl = (slice(sx, sx + patch[0]), slice(sy, sy + patch[1]), slice(sz, sz + patch[2]))
                pred = net(padded[(slice(None), *sl)][None])[0] * g
                if logits is None:
                    logits = torch.zeros((pred.shape[0], *padded.shape[1:]))
                    n = torch.zeros(padded.shape[1:])
                logits[(slice(None), *sl)] += pred
                n[sl] += g
    logits /= n
    return logits[(slice(None), *[slice(low, low + s) for low, s in zip(lo, shape)])]


def main() -> None:
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(write_nnunet_results(Path(tmp) / "nnunet", folds=(0,)))
    sw = model.spec.sliding_window
    print(f"patch {sw['roi_size']}, overlap {sw['overlap']}, sigma {sw['sigma_scale']}")
    for shape, note in (((32, 64, 64), "window positions coincide"), ((37, 70, 75), "window positions differ")):
        scan, _ = synthetic_ct(shape, tuple(NNUNET_SPACING))
        x = to_model_space(scan, model.spec).tensor
        with torch.no_grad():
            ours = sliding_window_inference(x, sw["roi_size"], 1, model.module, overlap=sw["overlap"], mode=sw["mode"],
                                            sigma_scale=sw["sigma_scale"], padding_mode=sw["padding_mode"], cval=sw["cval"])[0]
            # MONAI's window placement with nnU-Net's Gaussian: isolates what the two importance maps change
            mixed = sliding_window_inference(x, sw["roi_size"], 1, model.module, overlap=sw["overlap"], mode=sw["mode"],
                                             sigma_scale=sw["sigma_scale"], padding_mode=sw["padding_mode"], cval=sw["cval"],
                                             roi_weight_map=nnunet_gaussian(tuple(NNUNET_PATCH)))[0]
        ref = nnunet_predict(model.module, x[0], NNUNET_PATCH)
        spread = float(ref.std())
        steps = nnunet_steps(x.shape[2:], NNUNET_PATCH)
        print(f"{tuple(x.shape[2:])} ({note}; nnU-Net steps {steps}):")
        for label, out in (("spec (MONAI windows and Gaussian)", ours), ("MONAI windows, nnU-Net's Gaussian", mixed)):
            diff = (out - ref).abs()
            agree = float((out.argmax(0) == ref.argmax(0)).float().mean())
            print(f"  {label}: max |diff| {float(diff.max()) / spread:.3f} x logit std, "
                  f"mean |diff| {float(diff.mean()) / spread:.4f} x std, argmax agreement {agree * 100:.2f}%")


if __name__ == "__main__":
    main()
