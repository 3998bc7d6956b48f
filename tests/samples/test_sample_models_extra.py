"""The shipped sample segmenter (3D) and axial-slice classifier (2D): held-out metrics and sensible maps.

Held-out data are drawn freshly from the lesion simulator with seeds that
neither training script uses (training 11/21, validation 12/22), with the
same definitions as the scripts (their functions are imported from
``sample_models/``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_xai.engine.explain import explain
from napari_xai.engine.models.loading import load_model
from napari_xai.samples import (
    LESION_CLASSIFIER_2D_SPEC,
    LESION_SEGMENTER_SPEC,
    load_sample_lesion_mask,
    load_sample_lesion_mask_axial,
    load_sample_scan,
    load_sample_scan_axial,
)

REPO = Path(__file__).resolve().parents[2]
TEST_SEED_SEG = 1001
TEST_SEED_2D = 2001


def _script(name: str) -> ModuleType:
    """Import a training script from ``sample_models/`` (not a package) for its data and metric functions."""
    key = f"_napari_xai_sample_models_{name}"
    if key in sys.modules:
        return sys.modules[key]
    scripts = str(REPO / "sample_models")
    if scripts not in sys.path:  # the scripts import their shared loop (sample_models/training.py) as run from there
        sys.path.insert(0, scripts)
    spec = importlib.util.spec_from_file_location(key, REPO / "sample_models" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Keep to one core, as the training scripts do."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def segmenter():
    return load_model(LESION_SEGMENTER_SPEC)


@pytest.fixture(scope="module")
def classifier_2d():
    return load_model(LESION_CLASSIFIER_2D_SPEC)


def near_lesion(mask: np.ndarray, voxels: int) -> np.ndarray:
    """The lesion mask grown by ``voxels`` voxels (3 mm each)."""
    return ndimage.binary_dilation(mask, iterations=voxels)


def test_segmenter_spec(segmenter):
    spec = segmenter.spec
    assert spec.task == "segmentation" and spec.spatial_dims == 3
    assert spec.labels == ["background", "lesion"]
    assert spec.orientation == "RAS" and spec.input_spacing == (3.0, 3.0, 3.0) and spec.intensity == {"type": "zscore"}
    segmenter.get_layer(spec.cam_layer)


def test_segmenter_held_out_dice(segmenter):
    seg = _script("train_lesion_segmenter")
    images, masks = seg.make_volumes(6, TEST_SEED_SEG, lesion_fraction=1.0)
    metrics = seg.evaluate(segmenter.module, images, masks)
    assert metrics["mean_dice"] >= 0.5, metrics


def test_segmenter_on_sample_scan(segmenter):
    """The sample scan (no augmentation) through the engine's model space: the predicted mask overlaps the truth."""
    from napari_xai.engine.model_space import to_model_space

    scan, truth = load_sample_scan(), np.asarray(load_sample_lesion_mask().array) > 0
    msi = to_model_space(scan, segmenter.spec)
    assert msi.same_grid
    with torch.inference_mode():
        pred = segmenter.module(msi.tensor).argmax(1)[0].numpy().astype(bool)
    assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) >= 0.5


def test_segmenter_grad_cam_on_lesion(segmenter):
    """Lesion class over the true lesion mask: Grad-CAM's peak and most of its positive mass lie at the lesions."""
    scan, truth = load_sample_scan(), np.asarray(load_sample_lesion_mask().array) > 0
    att = explain(segmenter, scan, "grad_cam", target=1, region=truth)
    values = att.values
    assert values.shape == truth.shape and values.max() > 0
    peak = np.unravel_index(np.argmax(values), values.shape)
    assert near_lesion(truth, 2)[peak], "Grad-CAM's peak is more than 2 voxels (6 mm) from the lesions"
    positive = np.clip(values, 0, None)
    assert positive[near_lesion(truth, 3)].sum() / positive.sum() >= 0.5


def test_classifier_2d_spec(classifier_2d):
    spec = classifier_2d.spec
    assert spec.task == "classification" and spec.spatial_dims == 2
    assert spec.labels == ["no lesion", "lesion"] and spec.intensity == {"type": "zscore"}
    classifier_2d.get_layer(spec.cam_layer)


def test_axial_sample_geometry():
    scan3d, image = load_sample_scan(), load_sample_scan_axial()
    mask = np.asarray(load_sample_lesion_mask_axial().array) > 0
    assert image.spatial_shape == scan3d.spatial_shape[1:] == mask.shape
    g3, g2 = scan3d.geometry, image.geometry
    assert g2.spacing == g3.spacing[:2]
    np.testing.assert_allclose(g2.direction_matrix, g3.direction_matrix[:2, :2])
    np.testing.assert_allclose(g2.origin, g3.origin[:2])
    z = int(np.argmax((np.asarray(load_sample_lesion_mask().array) > 0).reshape(scan3d.spatial_shape[0], -1).sum(1)))
    np.testing.assert_allclose(np.asarray(image.array), np.asarray(scan3d.array)[z])
    assert mask.sum() > 0


def test_classifier_2d_held_out_accuracy(classifier_2d):
    c2d = _script("train_lesion_classifier_2d")
    x, y, _ = c2d.make_slices(60, TEST_SEED_2D)
    assert len(y) >= 60 and 0.4 <= float(y.float().mean()) <= 0.6
    assert c2d.accuracy(classifier_2d.module, x, y) >= 0.85


def test_classifier_2d_on_axial_sample(classifier_2d):
    """The shipped axial slice holds a lesion, and the classifier says so through the engine's model space."""
    from napari_xai.engine.model_space import to_model_space

    msi = to_model_space(load_sample_scan_axial(), classifier_2d.spec)
    assert msi.same_grid
    with torch.inference_mode():
        assert int(classifier_2d.module(msi.tensor).argmax(1)) == 1


def test_classifier_2d_integrated_gradients_on_lesion(classifier_2d):
    """The most positive evidence for "lesion" lies within 2 pixels (6 mm) of the lesion."""
    mask = np.asarray(load_sample_lesion_mask_axial().array) > 0
    att = explain(classifier_2d, load_sample_scan_axial(), "integrated_gradients", target=1, steps=32)
    values = att.values
    assert values.shape == mask.shape and att.target["class_index"] == 1
    peak = np.unravel_index(np.argmax(values), values.shape)
    assert near_lesion(mask, 2)[peak], f"the peak {peak} is more than 2 pixels (6 mm) from the lesion"


def test_classifier_2d_grad_cam_on_lesion(classifier_2d):
    """Grad-CAM's 12 mm cells: the lesion sits on the map's top plateau (its argmax may be a cell away)."""
    mask = np.asarray(load_sample_lesion_mask_axial().array) > 0
    values = explain(classifier_2d, load_sample_scan_axial(), "grad_cam", target=1).values
    assert values.shape == mask.shape and values.max() > 0
    assert values[mask].mean() >= np.percentile(values, 95)
    assert values[mask].max() >= 0.75 * values.max()
