"""SaliencyMapsLib.nodes against real MRML (slicer-core): geometry, arrays, colours, display, foreground, regions, saving.

Ground truth for geometry is independent of the code under test: SimpleITK's
``TransformIndexToPhysicalPoint`` and Slicer's own NRRD reader
(``vtkMRMLVolumeArchetypeStorageNode``), on an oblique, anisotropic volume.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer.util

from napari_xai.engine import Geometry, ImageError, TargetError
from napari_xai.engine.display import default_limit
from SaliencyMapsLib import nodes
from tests.conftest import OBLIQUE, oblique_sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def load_with_slicer_reader(scene, image: sitk.Image, tmp_path, name="scan"):
    """A volume node read by Slicer's own NRRD reader (which does the LPS -> RAS conversion itself)."""
    path = tmp_path / f"{name}.nrrd"
    sitk.WriteImage(image, str(path))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    return node


def ras_of_voxel(node, kji) -> np.ndarray:
    k, j, i = kji
    return (nodes.ijk_to_ras(node) @ np.array([i, j, k, 1.0]))[:3]


def sitk_ras(image: sitk.Image, kji) -> np.ndarray:
    k, j, i = (int(v) for v in kji)
    return LPS_TO_RAS @ np.array(image.TransformIndexToPhysicalPoint((i, j, k)))


@pytest.fixture
def oblique(scene, tmp_path):
    image = oblique_sitk((7, 9, 11))
    return image, load_with_slicer_reader(scene, image, tmp_path)


def test_geometry_from_volume_node_matches_simpleitk(oblique):
    image, node = oblique
    geometry = nodes.geometry_from_volume_node(node)
    np.testing.assert_allclose(geometry.origin, image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(geometry.spacing, image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(geometry.direction, image.GetDirection(), atol=1e-6)
    # And the engine's own Slicer formula agrees with Slicer's reader.
    from napari_xai.engine import slicer_ijk_to_ras

    np.testing.assert_allclose(slicer_ijk_to_ras(geometry), nodes.ijk_to_ras(node), atol=1e-6)


def test_scan_from_volume_node_keeps_voxels_and_physical_positions(oblique):
    image, node = oblique
    scan = nodes.scan_from_volume_node(node)
    assert scan.array.dtype == np.float32 and scan.channel_axis is None
    np.testing.assert_array_equal(scan.array, sitk.GetArrayFromImage(image))
    rng = np.random.default_rng(3)
    for kji in rng.integers(0, [7, 9, 11], size=(20, 3)):
        lps = scan.geometry.index_to_physical(kji)
        k, j, i = (int(v) for v in kji)
        np.testing.assert_allclose(lps, image.TransformIndexToPhysicalPoint((i, j, k)), atol=1e-6)


def test_output_volume_is_aligned_voxel_by_voxel(oblique):
    """Output IJKToRAS equals the input's; every voxel's RAS equals SimpleITK's point with the LPS->RAS flip."""
    image, node = oblique
    values = np.zeros((7, 9, 11), np.float32)
    values[5, 2, 8] = 10.0  # one hot voxel at (k, j, i) = (5, 2, 8)
    out = nodes.create_map_volume(node, values, "map")
    assert out.GetScene() is node.GetScene()
    np.testing.assert_array_equal(nodes.ijk_to_ras(out), nodes.ijk_to_ras(node))
    for kji in np.ndindex(7, 9, 11):
        np.testing.assert_allclose(ras_of_voxel(out, kji), sitk_ras(image, kji), atol=1e-6)
    # The hot voxel is where SimpleITK puts index (x, y, z) = (8, 2, 5): axes are not swapped.
    hot = np.argwhere(slicer.util.arrayFromVolume(out) == 10.0)
    assert hot.tolist() == [[5, 2, 8]]
    np.testing.assert_allclose(ras_of_voxel(out, hot[0]), LPS_TO_RAS @ np.array(image.TransformIndexToPhysicalPoint((8, 2, 5))), atol=1e-6)


def test_geometry_would_fail_without_the_lps_flip(oblique):
    """Guard that the voxel check above is sensitive: a grid built without the LPS->RAS flip is elsewhere."""
    image, node = oblique
    m = nodes.ijk_to_ras(node)
    wrong = np.eye(4)
    wrong[:3, :3] = LPS_TO_RAS @ m[:3, :3]  # undoing the flip = treating RAS as LPS
    wrong[:3, 3] = LPS_TO_RAS @ m[:3, 3]
    kji = (3, 4, 5)
    assert not np.allclose((wrong @ np.array([5, 4, 3, 1.0]))[:3], sitk_ras(image, kji), atol=1e-3)


def test_array_round_trip_float32_and_parent_transform(scene, oblique):
    _image, node = oblique
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    values = np.random.default_rng(0).normal(size=(7, 9, 11)).astype(np.float64)
    out = nodes.create_map_volume(node, values, "map")
    back = slicer.util.arrayFromVolume(out)
    assert back.dtype == np.float32 and back.shape == (7, 9, 11)
    np.testing.assert_array_equal(back, values.astype(np.float32))
    assert out.GetTransformNodeID() == transform.GetID()
    # Overwriting an existing output keeps the node and replaces the voxels.
    again = nodes.create_map_volume(node, values * 2, "ignored", output_volume=out)
    assert again is out
    np.testing.assert_allclose(slicer.util.arrayFromVolume(out), (values * 2).astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        nodes.create_map_volume(node, values[:, :, :5], "bad")


def test_scan_from_volume_node_rejects_nan(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "nan")
    arr = np.zeros((3, 4, 5), np.float32)
    arr[1, 2, 3] = np.nan
    slicer.util.updateVolumeFromArray(node, arr)
    with pytest.raises(ImageError, match="NaN"):
        nodes.scan_from_volume_node(node)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ImageError, match="no voxels"):
        nodes.scan_from_volume_node(empty)


def test_colour_fallback_built_in_code_when_file_tables_are_missing(scene):
    assert scene.GetNodeByID("vtkMRMLColorTableNodeFileInferno.txt") is None  # slicer-core has no colour files
    seq = nodes.color_node_for_sign(scene, "non-negative")
    div = nodes.color_node_for_sign(scene, "signed")
    assert seq.GetAttribute(nodes.COLORMAP_ATTRIBUTE) == "inferno"
    assert div.GetAttribute(nodes.COLORMAP_ATTRIBUTE) == "bwr"
    assert seq.GetNumberOfColors() == 256 and div.GetNumberOfColors() == 256
    rgba = [0.0] * 4
    seq.GetColor(0, rgba)
    assert max(rgba[:3]) < 0.05  # inferno starts black
    seq.GetColor(255, rgba)
    assert rgba[0] > 0.9 and rgba[1] > 0.9  # and ends pale yellow
    div.GetColor(0, rgba)
    assert rgba[2] > 0.9 and rgba[0] < 0.1 and rgba[3] == 1.0  # blue, opaque
    div.GetColor(255, rgba)
    assert rgba[0] > 0.9 and rgba[2] < 0.1  # red
    div.GetColor(128, rgba)
    assert min(rgba[:3]) > 0.9 and rgba[3] < 0.05  # white and transparent at zero
    # Reused, not duplicated.
    assert nodes.color_node_for_sign(scene, "signed") is div
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 2


def test_colour_prefers_slicer_file_tables_when_present(scene):
    file_table = slicer.vtkMRMLColorTableNode()
    file_table.SetTypeToFile()
    file_table.SetSingletonTag("FileDivergingBlueRed.txt")  # as vtkMRMLColorLogic names file tables
    scene.AddNode(file_table)
    assert file_table.GetID() == "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
    assert nodes.color_node_for_sign(scene, "signed") is file_table
    named = slicer.vtkMRMLColorTableNode()
    named.SetTypeToFile()
    named.SetName("Inferno")
    scene.AddNode(named)
    assert nodes.color_node_for_sign(scene, "non-negative") is named


@pytest.mark.parametrize("sign", ["non-negative", "signed"])
def test_display_window_level_threshold(scene, oblique, sign):
    _image, node = oblique
    rng = np.random.default_rng(1)
    values = rng.random((7, 9, 11)).astype(np.float32)
    if sign == "signed":
        values = values - 0.5
    out = nodes.create_map_volume(node, values, "map")
    settings = nodes.apply_display(out, values, sign, threshold_fraction=0.2)
    display = out.GetDisplayNode()
    hi = default_limit(values)
    assert display.GetColorNode().GetAttribute(nodes.COLORMAP_ATTRIBUTE) == ("inferno" if sign == "non-negative" else "bwr")
    assert not display.GetAutoWindowLevel()
    lo_expected = 0.0 if sign == "non-negative" else -hi
    assert display.GetWindowLevelMin() == pytest.approx(lo_expected, rel=1e-5, abs=1e-6)
    assert display.GetWindowLevelMax() == pytest.approx(hi, rel=1e-5)
    assert settings.contrast_limits == pytest.approx((lo_expected, hi), rel=1e-5)
    if sign == "non-negative":
        assert display.GetApplyThreshold()
        assert display.GetLowerThreshold() == pytest.approx(0.2 * hi, rel=1e-5)
        assert display.GetUpperThreshold() >= float(values.max()) - 1e-6
    else:
        assert not display.GetApplyThreshold()


def test_show_as_foreground_sets_every_slice_view(scene, oblique):
    _image, node = oblique
    views = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]
    out = nodes.create_map_volume(node, np.ones((7, 9, 11), np.float32), "map")
    assert nodes.show_as_foreground(scene, node, out, 0.6) == 3
    for composite in views:
        assert composite.GetBackgroundVolumeID() == node.GetID()
        assert composite.GetForegroundVolumeID() == out.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.6)


def _segmentation_from_labels(scene, reference, labels, name="region"):
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    labelmap.CopyOrientation(reference)
    slicer.util.updateVolumeFromArray(labelmap, labels.astype(np.uint8))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    scene.RemoveNode(labelmap)
    return segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)


def _node_ids(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def test_segment_to_mask_same_grid_and_scene_unchanged(scene, oblique):
    _image, node = oblique
    labels = np.zeros((7, 9, 11), bool)
    labels[2:5, 3:7, 1:4] = True
    labels[6, 8, 10] = True
    segmentation, segment_id = _segmentation_from_labels(scene, node, labels)
    before = _node_ids(scene)
    mask = nodes.segment_to_mask(segmentation, segment_id, node)
    assert _node_ids(scene) == before  # the temporary labelmap (and its display node) are gone
    assert mask.dtype == bool and mask.shape == (7, 9, 11)
    np.testing.assert_array_equal(mask, labels)
    # By name too; an unknown segment names the choices.
    name = segmentation.GetSegmentation().GetSegment(segment_id).GetName()
    np.testing.assert_array_equal(nodes.segment_to_mask(segmentation, name, node), labels)
    with pytest.raises(TargetError, match="no segment"):
        nodes.segment_to_mask(segmentation, "nope", node)


def test_segment_drawn_on_a_differently_indexed_grid_lands_on_the_right_voxels(scene, oblique):
    """The segment comes from a labelmap whose k axis runs the other way (same voxel centres in space)."""
    _image, node = oblique
    m = nodes.ijk_to_ras(node)
    flipped = np.array(m)
    flipped[:3, 2] = -m[:3, 2]  # k axis reversed
    flipped[:3, 3] = m[:3, 3] + 6 * m[:3, 2]  # origin at the last slice (k = 6)
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other grid")
    other.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(flipped))
    slicer.util.updateVolumeFromArray(other, np.zeros((7, 9, 11), np.float32))
    labels_other = np.zeros((7, 9, 11), bool)
    labels_other[0:2, 3:7, 1:4] = True  # slices 0-1 of the flipped grid = slices 5-6 of the input
    segmentation, segment_id = _segmentation_from_labels(scene, other, labels_other)
    mask = nodes.segment_to_mask(segmentation, segment_id, node)
    np.testing.assert_array_equal(mask, labels_other[::-1])
    assert mask[5:7].any() and not mask[:5].any()


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_saved_map_has_the_input_geometry(oblique, tmp_path, suffix):
    image, node = oblique
    values = np.random.default_rng(2).normal(size=(7, 9, 11)).astype(np.float32)
    out = nodes.create_map_volume(node, values, "map")
    nodes.set_provenance(out, {"method": "occlusion", "geometry": Geometry.from_sitk(image).to_dict()}, "signed")
    path = nodes.save_map(out, tmp_path / f"map{suffix}")
    saved = sitk.ReadImage(str(path))
    tol = 1e-6 if suffix == ".nrrd" else 1e-4  # NIfTI stores float32
    np.testing.assert_allclose(saved.GetOrigin(), image.GetOrigin(), atol=tol)
    np.testing.assert_allclose(saved.GetSpacing(), image.GetSpacing(), atol=tol)
    np.testing.assert_allclose(saved.GetDirection(), image.GetDirection(), atol=tol)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), values)
    sidecar = json.loads((tmp_path / f"map{suffix}.json").read_text(encoding="utf-8"))
    assert sidecar["method"] == "occlusion"
    assert nodes.get_provenance(out)["method"] == "occlusion"
    assert out.GetAttribute(nodes.SIGN_ATTRIBUTE) == "signed"
    with pytest.raises(ValueError, match="Cannot save"):
        nodes.save_map(out, tmp_path / "map.png")


def test_oblique_fixture_is_really_oblique_and_anisotropic():
    d = np.asarray(OBLIQUE.direction).reshape(3, 3)
    assert np.abs(d - np.diag(np.diag(d))).max() > 0.1
    assert len(set(OBLIQUE.spacing)) == 3


def test_colour_table_uses_no_deprecated_call(scene):
    """Item 14: SetNamesInitialised is a no-op that logs a VTK error from Slicer 5.10 on (vtkMRMLColorNode.h)."""
    import vtk

    window = vtk.vtkStringOutputWindow()
    previous = vtk.vtkOutputWindow.GetInstance()
    vtk.vtkOutputWindow.SetInstance(window)
    try:
        probe = slicer.vtkMRMLColorTableNode()
        probe.SetNamesInitialised(True)  # the check can fail: this Slicer (slicer-core) logs the deprecation
        assert "deprecated" in window.GetOutput()
        before = window.GetOutput()
        for colormap in ("inferno", "bwr"):
            node = nodes.build_color_table(scene, colormap)
            assert node.GetNumberOfColors() == 256 and node.GetColorName(3) == "3"
        assert window.GetOutput() == before
    finally:
        vtk.vtkOutputWindow.SetInstance(previous)
    with open(nodes.__file__, encoding="utf-8") as f:
        assert "NamesInitialised" not in f.read()
