"""The spec's sliding windows against nnU-Net's own predictor, on an nnU-Net-style network, in both window styles.

An nnU-Net folder loads with ``sliding_window`` = patch size, overlap 0.5,
Gaussian sigma 1/8, zero padding and ``style: "nnunet"``. MONAI's style
differs from nnU-Net's ``predict_sliding_window_return_logits`` in two
details: MONAI steps by ``patch * 0.5`` and moves the last window back where
nnU-Net spreads its windows evenly (``compute_steps_for_sliding_window``), and
MONAI's Gaussian peaks between the two centre voxels of an even axis and is
clamped at 1e-3 where nnU-Net's (``compute_gaussian``) peaks on voxel
``n // 2`` and falls to ~1e-11. nnU-Net's loop is transcribed in
``tests/nnunet_reference.py`` (nnunetv2 itself cannot be installed here).

On the fixture network of ``tests/real_format_fixtures.py`` (random weights,
InstanceNorm, so neighbouring windows disagree more than a trained network's)
and a SYNTHETIC CT-like volume, the script prints, per style, for one volume
size where both styles place the windows alike and one where they do not:
the largest and mean logit difference relative to the logits' spread, and the
fraction of voxels with the same argmax.

Run: ``PYTHONPATH=. python benchmarks/bench_nnunet_windows.py``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_xai.engine.model_space import to_model_space  # noqa: E402
from napari_xai.engine.models import load_model  # noqa: E402
from napari_xai.samples.synthetic_ct import synthetic_ct  # noqa: E402
from napari_xai.engine.sliding_window import plan_windows, sliding_window_forward  # noqa: E402
from tests.nnunet_reference import nnunet_predict, nnunet_steps  # noqa: E402
from tests.real_format_fixtures import NNUNET_PATCH, NNUNET_SPACING, write_nnunet_results  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(write_nnunet_results(Path(tmp) / "nnunet", folds=(0,)))
    sw = model.spec.sliding_window
    print(f"patch {sw['roi_size']}, overlap {sw['overlap']}, sigma {sw['sigma_scale']}")
    for shape, note in (((32, 64, 64), "window positions coincide"), ((37, 70, 75), "window positions differ")):
        scan, _ = synthetic_ct(shape, tuple(NNUNET_SPACING))
        x = to_model_space(scan, model.spec).tensor
        ref = nnunet_predict(model.module, x[0], NNUNET_PATCH)
        spread = float(ref.std())
        print(f"{tuple(x.shape[2:])} ({note}; nnU-Net steps {nnunet_steps(x.shape[2:], NNUNET_PATCH)}):")
        for style in ("nnunet", "monai"):
            with torch.no_grad():
                out = sliding_window_forward(model.module, x, plan_windows(tuple(x.shape[2:]), {**sw, "style": style}))[0]
            diff = (out - ref).abs()
            agree = float((out.argmax(0) == ref.argmax(0)).float().mean())
            print(f"  style {style}: max |diff| {float(diff.max()) / spread:.4f} x logit std, "
                  f"mean |diff| {float(diff.mean()) / spread:.5f} x std, argmax agreement {agree * 100:.2f}%")


if __name__ == "__main__":
    main()
