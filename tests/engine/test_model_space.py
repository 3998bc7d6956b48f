"""Scan -> model space -> back: resampling, orientation and intensity, checked in physical space."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn

from napari_xai.engine import Geometry, ModelSpec, ScanImage, explain
from napari_xai.engine.model_space import apply_intensity, region_to_model_space, to_model_space, to_scan_grid

from tests.conftest import OBLIQUE


def blob_scan(centre_mm, shape=(20, 24, 28), geometry=OBLIQUE, sigma_mm=4.0) -> ScanImage:
    idx = np.indices(shape).reshape(3, -1).T
    pts = geometry.index_to_physical(idx)
    d2 = ((pts - np.asarray(centre_mm)) ** 2).sum(1)
    return ScanImage(np.exp(-d2 / (2 * sigma_mm**2)).reshape(shape).astype(np.float32), geometry)


def centroid_mm(values: np.ndarray, geometry: Geometry) -> np.ndarray:
    w = np.clip(values, 0, None)
    idx = np.indices(values.shape).reshape(values.ndim, -1).T
    return (geometry.index_to_physical(idx) * w.reshape(-1, 1)).sum(0) / w.sum()


def scan_centre(scan: ScanImage) -> np.ndarray:
    return scan.geometry.index_to_physical((np.array(scan.spatial_shape) - 1) / 2)


@pytest.mark.parametrize("orientation", [None, "LPS", "RAS", "SAL"])
def test_blob_keeps_its_physical_position_in_model_space(orientation):
    probe = blob_scan((0, 0, 0))
    centre = scan_centre(probe) + np.array([5.0, -3.0, 4.0])
    scan = blob_scan(centre)
    spec = ModelSpec(input_spacing=(2.0, 1.5, 1.0), orientation=orientation)
    msi = to_model_space(scan, spec)
    assert not msi.same_grid
    model_values = msi.tensor[0, 0].numpy()
    np.testing.assert_allclose(centroid_mm(model_values, msi.geometry), centre, atol=0.5)
    np.testing.assert_allclose(msi.geometry.spacing, (1.0, 1.5, 2.0))
    if orientation:
        assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(msi.geometry.direction) == orientation


def test_input_size_alone_covers_the_same_extent():
    scan = blob_scan(scan_centre(blob_scan((0, 0, 0))))
    msi = to_model_space(scan, ModelSpec(input_size=(10, 12, 14)))
    assert tuple(msi.tensor.shape[2:]) == (10, 12, 14)
    extent_scan = np.array(scan.spatial_shape[::-1]) * np.array(scan.geometry.spacing)
    np.testing.assert_allclose(np.array(msi.geometry.spacing) * np.array([14, 12, 10]), extent_scan)
    np.testing.assert_allclose(msi.geometry.index_to_physical((np.array([10, 12, 14]) - 1) / 2), scan_centre(scan), atol=1e-9)


def test_round_trip_to_model_space_and_back_is_close():
    scan = blob_scan(scan_centre(blob_scan((0, 0, 0))), sigma_mm=8.0)
    msi = to_model_space(scan, ModelSpec(input_spacing=(1.0, 1.0, 1.0)))
    back = to_scan_grid(msi.tensor[0, 0].numpy(), msi)
    assert back.shape == scan.spatial_shape and back.dtype == np.float32
    inner = tuple(slice(3, -3) for _ in range(3))
    np.testing.assert_allclose(back[inner], scan.array[inner], atol=0.03)


def test_scan_already_on_the_model_grid_is_not_interpolated():
    scan = blob_scan((0, 0, 0))
    spacing_zyx = tuple(scan.geometry.spacing[::-1])
    msi = to_model_space(scan, ModelSpec(input_spacing=spacing_zyx, input_size=scan.spatial_shape))
    assert msi.same_grid
    np.testing.assert_array_equal(msi.tensor[0, 0].numpy(), scan.array)


class BumpProbe(nn.Module):
    """Output = sum(x * w), with w a bump at a fixed model-grid voxel: its gradient is w, in model space."""

    def __init__(self, shape, centre):
        super().__init__()
        idx = np.indices(shape).astype(np.float32)
        d2 = sum((idx[i] - centre[i]) ** 2 for i in range(3))
        self.register_buffer("w", torch.from_numpy(np.exp(-d2 / 2.0))[None, None])

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1, keepdim=True)


def test_attribution_comes_back_at_the_right_physical_place():
    scan = blob_scan((0, 0, 0))
    spec = ModelSpec(input_spacing=(1.2, 1.2, 1.2), input_size=(24, 24, 24), orientation="RAS", task="regression")
    msi = to_model_space(scan, spec)
    bump_voxel = np.array([9.0, 14.0, 11.0])
    expected_mm = msi.geometry.index_to_physical(bump_voxel)
    a = explain(BumpProbe((24, 24, 24), bump_voxel), scan, "vanilla_gradient", spec=spec, absolute=False)
    assert a.values.shape == scan.spatial_shape and a.geometry == scan.geometry
    assert not a.checks["model_grid_is_scan_grid"]
    np.testing.assert_allclose(centroid_mm(a.values, scan.geometry), expected_mm, atol=1.0)


def test_region_mask_maps_by_physical_position():
    scan = blob_scan((0, 0, 0))
    region = np.zeros(scan.spatial_shape, bool)
    region[8:12, 10:15, 12:18] = True
    msi = to_model_space(scan, ModelSpec(input_spacing=(1.0, 1.0, 1.0), orientation="LPS"))
    model_region = region_to_model_space(region, msi)
    assert model_region.dtype == bool and model_region.shape == tuple(msi.tensor.shape[2:])
    np.testing.assert_allclose(centroid_mm(model_region.astype(float), msi.geometry), centroid_mm(region.astype(float), scan.geometry), atol=1.0)


@pytest.mark.parametrize(
    "transform, values, expected",
    [
        ({"type": "none"}, [-5.0, 0.0, 5.0], [-5.0, 0.0, 5.0]),
        ({"type": "window", "center": 40, "width": 400}, [-1000.0, 40.0, 240.0, 3000.0], [0.0, 0.5, 1.0, 1.0]),
        ({"type": "minmax"}, [2.0, 4.0, 6.0], [0.0, 0.5, 1.0]),
        ({"type": "scale", "offset": 100, "scale": 0.5}, [100.0, 102.0], [0.0, 1.0]),
        ({"type": "zscore"}, [1.0, 3.0], [-1.0, 1.0]),
        ({"type": "zscore", "nonzero": True}, [0.0, 1.0, 3.0], [-2.0, -1.0, 1.0]),
    ],
)
def test_intensity_transforms(transform, values, expected):
    np.testing.assert_allclose(apply_intensity(np.array(values, np.float32), transform), expected, atol=1e-6)


def test_2d_scan_with_a_spec_resamples_in_plane():
    img = sitk.GetImageFromArray(np.random.default_rng(0).random((30, 40)).astype(np.float32))
    img.SetSpacing((0.5, 0.8))
    scan = ScanImage(sitk.GetArrayFromImage(img), Geometry.from_sitk(img))
    msi = to_model_space(scan, ModelSpec(spatial_dims=2, input_size=(16, 16)))
    assert tuple(msi.tensor.shape) == (1, 1, 16, 16)
    back = to_scan_grid(msi.tensor[0, 0].numpy(), msi)
    assert back.shape == (30, 40)
