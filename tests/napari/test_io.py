"""Manifest, reader (exact geometry on an oblique, anisotropic scan), writer round trip, sample data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_xai._napari import _io
from napari_xai._napari._layers import PROVENANCE_KEY, layer_geometry
from napari_xai.engine import Geometry, explain, napari_layer_kwargs
from tests.conftest import OBLIQUE, make_net, oblique_sitk

MANIFEST = Path(_io.__file__).with_name("napari.yaml")


def test_manifest_is_valid_and_registered():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-xai"
    assert {c.id for c in pm.contributions.commands} >= {"napari-xai.get_reader", "napari-xai.write_map", "napari-xai.sample_brain", "napari-xai.make_widget"}
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="napari.manifest")}
    assert eps.get("napari-xai") == "napari_xai._napari:napari.yaml"
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True, text=True)
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr


def _sample_indices(shape):
    z, y, x = (s - 1 for s in shape)
    return [(0, 0, 0), (z, y, x), (z, 0, 0), (0, y, 0), (0, 0, x), (z // 2, y // 3, x - 1), (1, 2, 3)]


@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".nii.gz"])
def test_reader_keeps_oblique_anisotropic_geometry(make_napari_viewer, tmp_path, ext):
    path = tmp_path / f"oblique{ext}"
    sitk.WriteImage(oblique_sitk((7, 9, 11)), str(path))
    ref = sitk.ReadImage(str(path))  # what the file holds (NIfTI stores the direction in float32)
    assert _io.get_reader(str(path)) is not None
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-xai")
    np.testing.assert_array_equal(layer.data, sitk.GetArrayFromImage(ref))
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    for idx in _sample_indices(layer.data.shape):
        expected = np.array(ref.TransformIndexToPhysicalPoint(tuple(int(i) for i in idx[::-1])))[::-1]
        np.testing.assert_allclose(layer.data_to_world(idx), expected, atol=1e-6)
    # the inverse used for runs gives back the file's geometry
    g = layer_geometry(layer)
    np.testing.assert_allclose(g.origin, ref.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(g.spacing, ref.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(g.direction, ref.GetDirection(), atol=1e-9)


def test_reader_reads_dicom_series_folder(make_napari_viewer, tmp_path):
    img = sitk.Cast(oblique_sitk((5, 9, 11)) * 1000, sitk.sitkInt16)
    folder = tmp_path / "series"
    folder.mkdir()
    direction = img.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in [
            ("0008|0060", "MR"),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
            ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.1"),
            ("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.1.{k + 1}"),
            ("0020|0037", "\\".join(f"{v:.10f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]))),
            ("0020|0032", "\\".join(f"{v:.10f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k)))),
            ("0020|0013", str(k + 1)),
            ("0018|0050", f"{img.GetSpacing()[2]:.10f}"),
        ]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    ref = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    assert _io.get_reader(str(folder)) is not None
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(folder), plugin="napari-xai")
    assert layer.data.shape == (5, 9, 11)
    for idx in _sample_indices(layer.data.shape):
        expected = np.array(ref.TransformIndexToPhysicalPoint(tuple(int(i) for i in idx[::-1])))[::-1]
        np.testing.assert_allclose(layer.data_to_world(idx), expected, atol=1e-4)


def test_reader_declines_what_it_does_not_handle(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    assert _io.get_reader(str(tmp_path / "notes.txt")) is None
    assert _io.get_reader(str(tmp_path / "empty")) is None
    assert _io.get_reader(str(tmp_path / "missing_folder")) is None
    assert _io.get_reader([str(tmp_path / "notes.txt")]) is None
    assert _io.get_reader([]) is None


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz"])
def test_writer_round_trip(make_napari_viewer, tmp_path, ext):
    import napari

    viewer = make_napari_viewer()
    arr = np.random.default_rng(5).normal(size=(7, 9, 11)).astype(np.float32)
    scan = viewer.add_image(arr, name="oblique scan", **napari_layer_kwargs(OBLIQUE))
    from napari_xai._napari import _logic
    from napari_xai._napari._layers import scan_from_layer

    attribution = explain(make_net(3), scan_from_layer(scan), "vanilla_gradient")
    result = _logic.show_attribution(viewer, attribution, scan)
    path = tmp_path / f"map{ext}"
    written = napari.save_layers(str(path), [result], plugin="napari-xai")
    assert [Path(p) for p in written] == [path] and path.is_file()
    assert Path(str(path) + ".json").is_file()
    (back,) = viewer.open(str(path), plugin="napari-xai")
    np.testing.assert_allclose(back.data, result.data, rtol=1e-6)
    tol = 1e-6 if ext == ".nrrd" else 1e-4
    for idx in _sample_indices(arr.shape):
        np.testing.assert_allclose(back.data_to_world(idx), scan.data_to_world(idx), atol=tol)
    prov = back.metadata[PROVENANCE_KEY]
    assert prov["method"] == "vanilla_gradient" and prov["sign"] == attribution.sign
    assert back.colormap.name == result.colormap.name
    # the header of a NRRD holds the provenance too
    if ext == ".nrrd":
        assert "vanilla_gradient" in sitk.ReadImage(str(path)).GetMetaData("napari_xai_provenance")


def test_writer_plain_image_keeps_geometry(tmp_path):
    arr = np.arange(7 * 9 * 11, dtype=np.float32).reshape(7, 9, 11)
    meta = dict(name="plain", metadata={}, **{k: v for k, v in napari_layer_kwargs(OBLIQUE).items() if k != "units"})
    (written,) = _io.write_map(str(tmp_path / "plain.mha"), arr, meta)
    img = sitk.ReadImage(written)
    assert Geometry.from_sitk(img) == Geometry(OBLIQUE.origin, OBLIQUE.spacing, OBLIQUE.direction) or np.allclose(img.GetDirection(), OBLIQUE.direction)
    np.testing.assert_allclose(img.GetOrigin(), OBLIQUE.origin)
    np.testing.assert_allclose(img.GetSpacing(), OBLIQUE.spacing)


def test_sample_data_in_open_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-xai", "sample_brain")
    (layer,) = layers
    from napari_xai.samples import SAMPLE_SCAN

    ref = sitk.ReadImage(str(SAMPLE_SCAN))
    assert layer.data.shape == sitk.GetArrayFromImage(ref).shape
    np.testing.assert_allclose(layer.scale, ref.GetSpacing()[::-1])
    for idx in _sample_indices(layer.data.shape):
        expected = np.array(ref.TransformIndexToPhysicalPoint(tuple(int(i) for i in idx[::-1])))[::-1]
        np.testing.assert_allclose(layer.data_to_world(idx), expected, atol=1e-6)
    both = viewer.open_sample("napari-xai", "sample_brain_lesions")
    assert [type(x).__name__ for x in both] == ["Image", "Labels"]
    assert both[1].data.any()
