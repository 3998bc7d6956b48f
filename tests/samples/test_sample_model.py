"""The shipped sample: its scan and geometry, the classifier's held-out accuracy, and maps that find the lesion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_xai.engine import ScanImage, explain
from napari_xai.engine.model_space import to_model_space
from napari_xai.samples import load_lesion_classifier, load_sample_lesion_mask, load_sample_scan, lesion_simulator

#: Seed for held-out volumes: the training script uses 1 (train) and 2 (validation).
HELD_OUT_SEED = 20261127


@pytest.fixture(scope="module")
def model():
    return load_lesion_classifier()


@pytest.fixture(scope="module")
def scan():
    return load_sample_scan()


def test_sample_scan_keeps_the_template_geometry(scan):
    assert scan.spatial_shape == (54, 65, 53)
    assert scan.geometry.spacing == (3.0, 3.0, 3.0)
    assert scan.geometry.direction == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    assert load_sample_lesion_mask().array.sum() > 0


def test_held_out_accuracy_on_freshly_generated_volumes(model, scan):
    sim = lesion_simulator()
    rng = np.random.default_rng(HELD_OUT_SEED)
    labels = np.arange(60) % 2
    correct = 0
    for y in labels:
        volume = sim.sample(rng, bool(y)).image
        x = to_model_space(ScanImage(volume, scan.geometry), model.spec).tensor
        with torch.inference_mode():
            correct += int(model.module(x).argmax(1).item() == y)
    accuracy = correct / len(labels)
    assert accuracy >= 0.9, f"held-out accuracy {accuracy:.2f}"


def test_sample_model_predicts_a_lesion_on_the_sample_scan(model, scan):
    a = explain(model, scan, "vanilla_gradient")
    assert a.target["label"] == "lesion"
    assert a.model["weights_sha256"] == model.identity


@pytest.mark.parametrize(
    "method, params",
    [
        ("vanilla_gradient", {}),
        ("integrated_gradients", {"steps": 16}),
        ("grad_cam", {}),  # the spec's layer, backbone.dec1 (full resolution)
        ("grad_cam", {"layer": "backbone.dec2"}),  # the coarser half-resolution block still peaks there
    ],
)
def test_maps_peak_on_the_lesion(model, scan, method, params):
    lesions = load_sample_lesion_mask().array.astype(bool)
    a = explain(model, scan, method, target="lesion", **params)
    smooth = ndimage.gaussian_filter(a.values, 1.0)
    peak = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    distance_mm = ndimage.distance_transform_edt(~lesions, sampling=scan.geometry.spacing[::-1])[peak]
    assert distance_mm <= 9.0, f"{method}: peak {peak} is {distance_mm:.1f} mm from the nearest lesion voxel"


def test_occlusion_ranks_the_lesion_at_the_top(model, scan):
    """Occlusion with 30 mm blocks cannot peak within a few mm; the lesion must lie in its strongest blocks."""
    lesions = load_sample_lesion_mask().array.astype(bool)
    a = explain(model, scan, "occlusion", target="lesion", window=10, stride=10)
    rank = float((a.values < a.values[lesions].mean()).mean())
    assert rank >= 0.9, f"the lesion's mean occlusion value is only at the {rank:.0%} percentile of the map"
