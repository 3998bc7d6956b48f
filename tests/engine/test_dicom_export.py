"""DICOM Parametric Map and Secondary Capture export on a generated CT series, read back three ways."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")

from napari_xai.engine import ImageError, explain, read_image  # noqa: E402
from napari_xai.engine.dicom_export import read_parametric_map, read_provenance, source_series, write_parametric_map  # noqa: E402

from tests.conftest import OBLIQUE, make_net  # noqa: E402
from tests.dicom_series import write_ct_series  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    hu = (np.random.default_rng(0).random((7, 9, 11)) * 1000 - 500).astype(np.int16)
    write_ct_series(root / "ct", hu, OBLIQUE)
    scan = read_image(root / "ct")
    attribution = explain(make_net(3), scan, "integrated_gradients", steps=8)
    files = write_parametric_map(attribution, root / "ct", root / "out" / "map_pm.dcm", scan=scan, secondary_capture=True)
    return root, scan, attribution, files


def _physical_points(image: sitk.Image) -> np.ndarray:
    size = image.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    return np.array([image.TransformIndexToPhysicalPoint([int(i) for i in ijk]) for ijk in idx])


def test_parametric_map_is_on_the_source_grid_voxel_by_voxel(exported):
    root, scan, attribution, files = exported
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(root / "ct")))
    source = reader.Execute()
    back = read_parametric_map(files.parametric_map)
    image = back.to_sitk()
    assert image.GetSize() == source.GetSize()
    np.testing.assert_allclose(_physical_points(image), _physical_points(source), atol=1e-6)
    # float values exactly as computed, in the same voxel order
    np.testing.assert_array_equal(back.array, attribution.values)
    assert back.array.dtype == np.float32


def test_parametric_map_references_resolve_and_carry_float_values_and_mapping(exported):
    root, scan, attribution, files = exported
    sources = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in (root / "ct").iterdir())}
    pm = pydicom.dcmread(files.parametric_map)
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    first = next(iter(sources.values()))
    assert pm.StudyInstanceUID == first.StudyInstanceUID and pm.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert pm.PatientID == first.PatientID
    assert "FloatPixelData" in pm and "PixelData" not in pm
    (series,) = pm.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in series.ReferencedInstanceSequence} == set(sources)
    ordered = source_series(root / "ct", scan.geometry, scan.spatial_shape)
    index_of = {ds.SOPInstanceUID: k for k, ds in enumerate(ordered)}
    pixels = pm.pixel_array
    assert len(pm.PerFrameFunctionalGroupsSequence) == len(sources)
    for frame, group in enumerate(pm.PerFrameFunctionalGroupsSequence):
        ref = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        src = sources[ref]  # resolves to a source slice
        np.testing.assert_allclose(np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float), np.asarray(src.ImagePositionPatient, float), atol=1e-9)
        np.testing.assert_array_equal(pixels[frame], attribution.values[index_of[ref]])
    shared = pm.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float), np.asarray(first.ImageOrientationPatient, float), atol=1e-9)
    np.testing.assert_allclose(np.asarray(shared.PixelMeasuresSequence[0].PixelSpacing, float), np.asarray(first.PixelSpacing, float))
    (mapping,) = shared.RealWorldValueMappingSequence
    assert mapping.RealWorldValueSlope == 1.0 and mapping.RealWorldValueIntercept == 0.0
    assert mapping.DoubleFloatRealWorldValueFirstValueMapped == pytest.approx(float(attribution.values.min()))
    assert read_provenance(pm)["method"] == "integrated_gradients"


def test_secondary_capture_of_the_overlay_reads_in_simpleitk_and_references_its_slice(exported):
    root, scan, attribution, files = exported
    sources = {pydicom.dcmread(p).SOPInstanceUID for p in (root / "ct").iterdir()}
    assert len(files.secondary_capture) == scan.spatial_shape[0]
    for path in files.secondary_capture:
        image = sitk.ReadImage(str(path))
        assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetSize()[:2] == (11, 9)
        ds = pydicom.dcmread(path)
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in sources
        assert json.loads(ds.private_block(0x0071, "napari-xai")[0x10].value)["method"] == "integrated_gradients"
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(files.secondary_capture[3])))
    assert rgb.std() > 0  # an image, not a blank frame


def test_a_map_off_the_series_grid_is_refused_and_nothing_is_written(exported, tmp_path):
    root, scan, attribution, _ = exported
    from dataclasses import replace

    from napari_xai.engine import Geometry

    moved = replace(attribution, geometry=Geometry(tuple(o + 1.0 for o in OBLIQUE.origin), OBLIQUE.spacing, OBLIQUE.direction))
    with pytest.raises(ImageError, match="lies on the map's grid"):
        write_parametric_map(moved, root / "ct", tmp_path / "x.dcm")
    flat = replace(attribution, values=attribution.values[0], geometry=Geometry.identity(2))
    with pytest.raises(ImageError, match="2D"):
        write_parametric_map(flat, root / "ct", tmp_path / "y.dcm")
    assert not list(tmp_path.iterdir())


def test_cli_writes_a_parametric_map_for_a_dicom_series_and_refuses_other_inputs(exported, tmp_path, capsys):
    import torch

    from napari_xai.cli import main

    root, scan, attribution, files = exported
    torch.jit.save(torch.jit.trace(make_net(3), torch.randn(1, 1, 7, 9, 11)), str(tmp_path / "net.pt"))
    out = tmp_path / "out"
    assert main(["--model", str(tmp_path / "net.pt"), "--image", str(root / "ct"), "--method", "vanilla_gradient", "--dicom", "--no-png", "--out", str(out)]) == 0
    (pm,) = out.glob("*_pm.dcm")
    back = read_parametric_map(pm)
    np.testing.assert_allclose(back.array, read_image(next(out.glob("*.nii.gz"))).array, rtol=1e-6)
    sitk.WriteImage(scan.to_sitk(), str(tmp_path / "scan.nrrd"))
    assert main(["--model", str(tmp_path / "net.pt"), "--image", str(tmp_path / "scan.nrrd"), "--dicom", "--out", str(tmp_path / "o2")]) == 2
    assert "DICOM series" in capsys.readouterr().err and not (tmp_path / "o2").exists()
