"""Input that used to end in a raw traceback or a misleading message: each is an XAIError naming the problem and the fix,
and the silent geometry decisions are errors or recorded warnings (issue 8)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_xai.engine import ImageError, MethodError, ModelError, ModelSpec, UntrustedModelError, explain, load_model, read_image
from napari_xai.cli import main

from tests.conftest import make_net, random_volume


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"input_size": "abc"}, "input_size is 'abc' \\(str\\), not a list of integers"),
        ({"in_channels": "1"}, "in_channels is '1' \\(str\\), not an integer"),
        ({"intensity": "zscore"}, "intensity is 'zscore' \\(str\\), not an object"),
        ({"intensity": {"type": "window", "center": 40, "width": "wide"}}, "intensity.width is 'wide'"),
        ({"orientation": 123}, "orientation is 123 \\(int\\), not a string"),
        ({"input_spacing": [float("nan"), 1.0, 1.0]}, "input_spacing .* not a list of finite numbers"),
        ({"input_spacing": [float("inf"), 1.0, 1.0]}, "input_spacing .* not a list of finite numbers"),
        ({"architecture": {"factory": 5}}, "architecture.factory is 5 \\(int\\)"),
    ],
)
def test_spec_fields_of_the_wrong_type(fields, match):
    with pytest.raises(ModelError, match=match) as info:
        ModelSpec.from_dict(fields)
    assert info.value.fix


def test_non_string_factory_is_blamed_on_the_spec_not_the_weights(tmp_path):
    torch.save(make_net(3).state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.json").write_text(json.dumps({"architecture": {"factory": ["x"]}}))
    with pytest.raises(ModelError, match="Model spec: architecture.factory is \\['x'\\]"):
        load_model(tmp_path / "w.pt")


def test_spec_whose_weights_name_the_spec_itself(tmp_path):
    (tmp_path / "self.json").write_text(json.dumps({"weights": "self.json"}))
    with pytest.raises(ModelError, match="names 'self.json' as its weights, which is a JSON spec"):
        load_model(tmp_path / "self.json")


@pytest.mark.parametrize("axis", [5, -6, "0", 1.5])
def test_channel_axis_out_of_range_or_not_an_integer(net3d, axis):
    with pytest.raises(ImageError, match="channel_axis is .*integer"):
        explain(net3d, random_volume((2, 8, 9, 10)), "vanilla_gradient", channel_axis=axis)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), "lots", 0])
def test_memory_budget_that_is_not_a_positive_number(net3d, budget):
    with pytest.raises(MethodError, match="memory budget is .*finite number of MiB"):
        explain(net3d, random_volume((8, 9, 10)), "vanilla_gradient", memory_budget_mb=budget)


def test_grad_cam_layer_without_spatial_output(net3d):
    with pytest.raises(MethodError, match="Layer 'head' .*has no spatial output.*\\(1, 3\\)"):
        explain(net3d, random_volume((8, 9, 10)), "grad_cam", layer="head")


def test_values_beyond_float32_range(net3d):
    img = random_volume((8, 9, 10)).astype(np.float64)
    img[0, 0, 0] = 1e300
    with pytest.raises(ImageError, match="beyond the float32 range.*1e\\+300"):
        explain(net3d, img, "vanilla_gradient")


@pytest.fixture
def attribution(net3d):
    return explain(net3d, random_volume((8, 9, 10)), "vanilla_gradient")


def test_save_under_a_path_whose_parent_is_a_file(tmp_path, attribution):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="is a file, not a folder"):
        attribution.save(tmp_path / "file" / "map.nii.gz")


def test_sidecar_path_that_is_a_folder_writes_nothing(tmp_path, attribution):
    (tmp_path / "map.nii.gz.json").mkdir()
    with pytest.raises(ImageError, match="a folder of that name exists"):
        attribution.save(tmp_path / "map.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii.gz.json"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_save_into_a_read_only_folder(tmp_path, attribution):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ImageError, match="read-only"):
            attribution.save(folder / "map.nii.gz")
    finally:
        folder.chmod(0o755)


def test_a_failing_write_leaves_nothing_behind(tmp_path, attribution, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise RuntimeError("ITK ERROR: Could not open file for writing (Permission denied)")

    monkeypatch.setattr(sitk, "WriteImage", refuse)
    with pytest.raises(ImageError, match="Could not write .*Permission denied.*nothing was written"):
        attribution.save(tmp_path / "map.nii.gz")
    assert list(tmp_path.iterdir()) == []


class _Payload:
    def __reduce__(self):
        return (print, ("payload",))


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save of a whole model"])
def test_pickle_renamed_pt2_says_pickle(tmp_path, kind):
    path = tmp_path / "model.pt2"
    if kind == "raw pickle":
        path.write_bytes(pickle.dumps(_Payload()))
    else:
        torch.save(make_net(3), path)
    with pytest.raises(UntrustedModelError, match="pickled Python object") as info:
        load_model(path)
    assert "warnings above" not in str(info.value)


def test_cli_prints_no_traceback_for_a_user_error(tmp_path, capsys):
    torch.save(make_net(3).state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.json").write_text(json.dumps({"architecture": {"factory": "lesion_classifier_3d"}, "input_size": "abc"}))
    sitk.WriteImage(sitk.GetImageFromArray(random_volume((8, 9, 10))), str(tmp_path / "scan.nii.gz"))
    assert main(["--model", str(tmp_path / "w.pt"), "--image", str(tmp_path / "scan.nii.gz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "input_size is 'abc'" in err and "Fix:" in err and "Traceback" not in err


# -- silent geometry decisions ------------------------------------------------------------------------------------------


def test_zero_spacing_in_a_nifti_header_is_a_recorded_warning(tmp_path, net3d):
    path = tmp_path / "zero.nii"
    sitk.WriteImage(sitk.GetImageFromArray(random_volume((8, 9, 10))), str(path))
    raw = bytearray(path.read_bytes())
    raw[80:84] = np.float32(0).tobytes()  # pixdim[1] (x)
    path.write_bytes(bytes(raw))
    scan = read_image(path)
    assert scan.geometry.spacing[0] == 1.0  # what SimpleITK made of it
    assert len(scan.warnings) == 1 and "voxel size 0" in scan.warnings[0] and "along x" in scan.warnings[0]
    prov = explain(net3d, scan, "vanilla_gradient").provenance()
    assert prov["warnings"] == scan.warnings


def test_sheared_direction_is_refused(tmp_path, net3d):
    img = sitk.GetImageFromArray(random_volume((8, 9, 10)))
    img.SetDirection((1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(tmp_path / "sheared.nrrd"))
    with pytest.raises(ImageError, match="not orthonormal.*Resample the scan onto a rectangular grid"):
        explain(net3d, read_image(tmp_path / "sheared.nrrd"), "vanilla_gradient")


def write_dicom_series(folder, uid: str, slices: int, first_instance: int) -> None:
    vol = sitk.Cast(sitk.GetImageFromArray((random_volume((slices, 6, 7)) * 100).astype(np.int16)), sitk.sitkInt16)
    for k in range(slices):
        s = vol[:, :, k]
        for tag, value in (
            ("0008|0060", "MR"), ("0020|000d", "1.2.826.0.1.3680043.8.498.1"), ("0020|000e", uid),
            ("0020|0013", str(k + 1)), ("0020|0032", f"0\\0\\{k * 2.0}"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
            ("0028|0030", "1\\1"), ("0018|0050", "2"),
        ):
            s.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{uid[-3:]}_{first_instance + k:03d}.dcm"))
        writer.Execute(s)


def test_dicom_folder_with_several_series_records_and_lets_the_user_pick(tmp_path):
    big, small = "1.2.826.0.1.3680043.8.498.101", "1.2.826.0.1.3680043.8.498.202"
    write_dicom_series(tmp_path, big, 5, 0)
    write_dicom_series(tmp_path, small, 3, 100)
    scan = read_image(tmp_path)
    assert scan.array.shape[0] == 5 and scan.source["series_uid"] == big
    assert len(scan.warnings) == 1 and big in scan.warnings[0] and small in scan.warnings[0] and "series_uid=" in scan.warnings[0]
    picked = read_image(tmp_path, series_uid=small)
    assert picked.array.shape[0] == 3 and picked.source["series_uid"] == small and not picked.warnings
    with pytest.raises(ImageError, match=f"Series 9.9 is not in .*{big} \\(5 slices\\).*{small} \\(3 slices\\)"):
        read_image(tmp_path, series_uid="9.9")
