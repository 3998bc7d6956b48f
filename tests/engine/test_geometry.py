"""Geometry: voxel -> world against SimpleITK on an oblique, anisotropic volume, and file round trips."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_xai.engine import Geometry, napari_layer_kwargs, read_image, slicer_ijk_to_ras, write_image
from napari_xai.engine.geometry import LPS_TO_RAS

from tests.conftest import OBLIQUE


def all_indices(shape_zyx):
    return np.indices(shape_zyx).reshape(len(shape_zyx), -1).T


def test_index_to_physical_matches_simpleitk_on_every_voxel(oblique_image):
    geom = Geometry.from_sitk(oblique_image)
    idx = all_indices(oblique_image.GetSize()[::-1])
    ours = geom.index_to_physical(idx)
    theirs = np.array([oblique_image.TransformIndexToPhysicalPoint([int(i) for i in v[::-1]]) for v in idx])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    np.testing.assert_allclose(geom.physical_to_index(theirs), idx, atol=1e-9)


def napari_data_to_world(kwargs, index_zyx):
    """napari's composition: world = R @ (S * index) + t (the layer's affine is the identity)."""
    return (np.asarray(index_zyx, float) * np.asarray(kwargs["scale"])) @ np.asarray(kwargs["rotate"]).T + np.asarray(kwargs["translate"])


def test_napari_kwargs_place_each_voxel_at_its_physical_point_reversed(oblique_image):
    kwargs = napari_layer_kwargs(Geometry.from_sitk(oblique_image))
    assert kwargs["units"] == ("mm", "mm", "mm")
    rot = np.asarray(kwargs["rotate"])
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)  # a proper rotation napari accepts
    idx = all_indices(oblique_image.GetSize()[::-1])
    world = napari_data_to_world(kwargs, idx)
    expected = np.array([oblique_image.TransformIndexToPhysicalPoint([int(i) for i in v[::-1]]) for v in idx])[:, ::-1]
    np.testing.assert_allclose(world, expected, atol=1e-9)


def test_napari_kwargs_2d():
    img = sitk.GetImageFromArray(np.zeros((5, 7), np.float32))
    img.SetSpacing((0.5, 2.0))
    img.SetOrigin((3.0, -4.0))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, -s, s, c))
    kwargs = napari_layer_kwargs(Geometry.from_sitk(img))
    for iy, ix in [(0, 0), (4, 6), (2, 3)]:
        np.testing.assert_allclose(napari_data_to_world(kwargs, [iy, ix]), img.TransformIndexToPhysicalPoint((ix, iy))[::-1], atol=1e-12)


def test_slicer_ijk_to_ras_is_lps_point_with_flip(oblique_image):
    m = slicer_ijk_to_ras(Geometry.from_sitk(oblique_image))
    for ijk in [(0, 0, 0), (10, 8, 6), (3, 7, 2)]:
        lps = np.array(oblique_image.TransformIndexToPhysicalPoint(ijk))
        ras = (m @ np.array([*ijk, 1.0]))[:3]
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)
    assert np.allclose(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


def test_slicer_matrix_refuses_2d():
    with pytest.raises(ValueError, match="3D"):
        slicer_ijk_to_ras(Geometry.identity(2))


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_read_round_trip_keeps_exact_geometry(tmp_path, oblique_image, ext):
    arr = sitk.GetArrayFromImage(oblique_image)
    path = write_image(arr, OBLIQUE, tmp_path / f"map{ext}")
    back = read_image(path)
    np.testing.assert_array_equal(back.array, arr)
    # NIfTI stores the affine in float32 (qform/sform): exact to ~1e-6 mm.
    tol = 1e-5 if ext.startswith(".nii") else 1e-12
    np.testing.assert_allclose(back.geometry.origin, OBLIQUE.origin, atol=tol)
    np.testing.assert_allclose(back.geometry.spacing, OBLIQUE.spacing, atol=tol)
    np.testing.assert_allclose(back.geometry.direction, OBLIQUE.direction, atol=tol)
    assert back.name == "map"


def test_dicom_series_folder_is_read_with_geometry(tmp_path):
    arr = (np.random.default_rng(0).random((5, 6, 7)) * 1000).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    direction = np.array([[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]])  # oblique about x
    img.SetDirection(direction.ravel().tolist())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1"
    for k in range(arr.shape[0]):
        sl = img[:, :, k]
        tags = {
            "0008|0060": "MR",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.2",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(f"{v:.6f}" for v in list(direction[:, 0]) + list(direction[:, 1])),
            "0018|0050": "2.5",
            "0028|0030": "0.9\\0.8",
            "0008|0018": f"1.2.826.0.1.3680043.2.1125.3.{k + 1}",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    scan = read_image(tmp_path)
    np.testing.assert_array_equal(scan.array, arr)
    np.testing.assert_allclose(scan.geometry.origin, img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(scan.geometry.spacing, img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(scan.geometry.direction, img.GetDirection(), atol=1e-4)


def test_geometry_dict_round_trip():
    assert Geometry.from_dict(OBLIQUE.to_dict()) == OBLIQUE


def test_vector_image_becomes_channels_first(tmp_path):
    arr = np.random.default_rng(0).random((4, 5, 6, 2)).astype(np.float32)
    img = sitk.GetImageFromArray(arr, isVector=True)
    sitk.WriteImage(img, str(tmp_path / "two.mha"))
    scan = read_image(tmp_path / "two.mha")
    assert scan.channel_axis == 0 and scan.array.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(scan.array[1], arr[..., 1])


def test_data_to_world_matrix_gives_back_the_geometry(oblique_image):
    from napari_xai.engine.geometry import geometry_from_data_to_world

    geom = Geometry.from_sitk(oblique_image)
    kwargs = napari_layer_kwargs(geom)
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(kwargs["rotate"]) @ np.diag(kwargs["scale"])
    matrix[:3, 3] = kwargs["translate"]
    back = geometry_from_data_to_world(matrix)
    np.testing.assert_allclose(back.origin, geom.origin, atol=1e-12)
    np.testing.assert_allclose(back.spacing, geom.spacing, atol=1e-12)
    np.testing.assert_allclose(back.direction, geom.direction, atol=1e-12)
    with pytest.raises(ValueError, match="degenerate"):
        geometry_from_data_to_world(np.diag([1.0, 0.0, 1.0, 1.0]))
