"""Careless input that used to lose data or give silently wrong results (issue 8, items 4-11)."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_xai.engine import Cancelled, ImageError, TargetError, explain, read_image
from napari_xai.cli import main, output_stems
from napari_xai.engine.methods.toolkit import capture_activation
from napari_xai.engine.methods.cam.cam import replaced_activation
from napari_xai.engine.call_hooks import shared_eval_mode
from napari_xai.engine.models.loading import as_loaded_model

from tests.conftest import make_net, random_volume


def nifti(path: Path, shape=(8, 8, 8), spacing=(1.0, 1.0, 1.0)) -> Path:
    img = sitk.GetImageFromArray(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


# -- 4: truncated NIfTI ---------------------------------------------------------------------------------------------


def test_truncated_nii_is_refused(tmp_path):
    full = nifti(tmp_path / "full.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(full[: len(full) - 487 * 4])
    with pytest.raises(ImageError, match="truncated.*header promises.*Fix: Copy or export the file again"):
        read_image(tmp_path / "cut.nii")
    assert read_image(tmp_path / "full.nii").array.min() == 1  # the complete file reads, no zeros


def test_truncated_gzip_stream_is_refused(tmp_path):
    data = nifti(tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or damaged.*gzip stream"):
        read_image(tmp_path / "cut.nii.gz")


def test_header_claiming_a_huge_volume_is_refused_without_allocating(tmp_path):
    raw = bytearray(nifti(tmp_path / "small.nii").read_bytes()[:352])
    raw[40:56] = np.array([3, 1000, 1000, 1000, 1, 1, 1, 1], "<i2").tobytes()
    (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(bytes(raw) + b"\0" * 64))
    with pytest.raises(ImageError, match="truncated: its header promises 3814.7 MiB"):
        read_image(tmp_path / "huge.nii.gz")


# -- 5: saving over the source or an existing file ------------------------------------------------------------------


def test_save_refuses_the_source_scan_and_existing_files(tmp_path, net3d):
    scan_path = nifti(tmp_path / "scan.nii.gz")
    before = scan_path.read_bytes()
    a = explain(net3d, read_image(scan_path), "vanilla_gradient")
    for target in (scan_path, tmp_path / "." / "scan.nii.gz"):
        with pytest.raises(ImageError, match="is the image the map was made from"):
            a.save(target, overwrite=True)
    assert scan_path.read_bytes() == before
    out = a.save(tmp_path / "map.nii.gz")
    with pytest.raises(ImageError, match="exists already.*overwrite=True"):
        a.save(out)
    assert a.save(out, overwrite=True) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii.gz", "map.nii.gz.json", "scan.nii.gz"]


def test_cli_refuses_to_overwrite_without_the_flag(tmp_path, model_file, capsys):
    scan = nifti(tmp_path / "scan.nii.gz", shape=(7, 9, 11))
    args = ["--model", str(model_file), "--image", str(scan), "--method", "vanilla_gradient", "--no-png", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert main(args) == 2
    assert "exists already" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["--model", str(model_file), "--image", str(scan), "--method", "vanilla_gradient", "--no-png", "--format", ".nii.gz",
                 "--out", str(tmp_path), "--overwrite"]) == 0  # writes scan_vanilla_gradient.nii.gz, never scan.nii.gz
    assert read_image(scan).array.min() == 1


# -- 6: CLI output names ---------------------------------------------------------------------------------------------


def test_cli_gives_scans_of_the_same_name_distinct_outputs_and_a_table(tmp_path, model_file, capsys):
    scans = [nifti(tmp_path / d / "scan.nii.gz", shape=(7, 9, 11)) for d in ("a", "b") if (tmp_path / d).mkdir() is None]
    assert main(["--model", str(model_file), "--image", *map(str, scans), "--method", "vanilla_gradient", "--no-png", "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    assert written == ["a_scan_vanilla_gradient.nii.gz", "b_scan_vanilla_gradient.nii.gz"]
    table = capsys.readouterr().out.split("input\tmethod\tmap\n")[1].splitlines()
    assert table == [f"{scans[0]}\tvanilla_gradient\t{tmp_path / 'out' / written[0]}", f"{scans[1]}\tvanilla_gradient\t{tmp_path / 'out' / written[1]}"]
    prov = json.loads((tmp_path / "out" / (written[1] + ".json")).read_text())
    assert prov["image_source"]["path"] == str(scans[1].resolve())


def test_output_stems_are_unique():
    assert output_stems(["x/a/scan.nii.gz", "y/a/scan.nii.gz", "other.nrrd"]) == ["x_a_scan", "y_a_scan", "other"]
    assert output_stems(["scan.nii.gz", "scan.nii.gz"]) == ["scan", "scan_2"]


# -- 7: non-boolean regions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fill", [0.3, np.nan, 2])
def test_non_boolean_region_is_refused(fill):
    net = make_net(3, segmentation=True)
    img = random_volume((8, 9, 10))
    region = np.zeros(img.shape)
    region[2:5, 2:5, 2:5] = fill
    with pytest.raises(TargetError, match="other than 0 and 1.*Threshold it"):
        explain(net, img, "vanilla_gradient", target=1, region=region)


def test_region_of_strings_is_refused():
    net = make_net(3, segmentation=True)
    img = random_volume((8, 9, 10))
    with pytest.raises(TargetError, match="not a mask"):
        explain(net, img, "vanilla_gradient", target=1, region=np.full(img.shape, "x"))


def test_zero_one_integer_and_float_regions_equal_the_boolean_one():
    net = make_net(3, segmentation=True)
    img = random_volume((8, 9, 10))
    mask = np.zeros(img.shape, bool)
    mask[2:5, 2:5, 2:5] = True
    ref = explain(net, img, "vanilla_gradient", target=1, region=mask).values
    for region in (mask.astype(np.uint8), mask.astype(np.float32)):
        np.testing.assert_array_equal(explain(net, img, "vanilla_gradient", target=1, region=region).values, ref)


# -- 8: a spec override applies to one call and merges ---------------------------------------------------------------


def test_spec_override_is_per_call_and_merges_field_by_field():
    loaded = as_loaded_model(make_net(3), spec={"intensity": {"type": "zscore"}, "input_spacing": [2.0, 2.0, 2.0]})
    img = random_volume((8, 9, 10))
    a = explain(loaded, img, "vanilla_gradient", target="b", spec={"labels": ["a", "b", "c"]})
    assert a.model["spec"]["labels"] == ["a", "b", "c"]
    assert a.model["spec"]["intensity"] == {"type": "zscore"} and a.model["spec"]["input_spacing"] == [2.0, 2.0, 2.0]
    assert loaded.spec.labels is None  # the loaded model is unchanged for the next call
    with pytest.raises(TargetError):
        explain(loaded, img, "vanilla_gradient", target="b")


# -- 9: hooks act on their own run only -------------------------------------------------------------------------------


def test_a_cam_hook_in_one_thread_does_not_change_another_threads_forward_pass():
    net = make_net(3)
    x = torch.randn(1, 1, 8, 9, 10)
    with torch.no_grad():
        reference = net(x)
    hooked, done = threading.Event(), threading.Event()

    def cam_thread():
        with replaced_activation(net.features[3], torch.zeros(1, 6, 8, 9, 10)), capture_activation(net.features[3]) as store:
            hooked.set()
            done.wait(10)
        assert "activation" not in store  # it never saw the other thread's pass

    t = threading.Thread(target=cam_thread)
    t.start()
    hooked.wait(10)
    with torch.no_grad():
        during = net(x)
    done.set()
    t.join()
    torch.testing.assert_close(during, reference, rtol=0, atol=0)


def test_occlusion_beside_cam_in_two_threads_equals_the_sequential_runs():
    net = make_net(3)
    img = random_volume((8, 9, 10))
    params = {"window": 3, "stride": 2}
    occlusion_alone = explain(net, img, "occlusion", target=1, **params).values
    cam_alone = explain(net, img, "cam", target=1).values
    results: dict[str, list] = {"cam": []}
    stop = threading.Event()

    def cams():
        while not stop.is_set() or not results["cam"]:
            results["cam"].append(explain(net, img, "cam", target=1).values)

    t = threading.Thread(target=cams)
    t.start()
    try:
        beside = [explain(net, img, "occlusion", target=1, **params).values for _ in range(2)]
    finally:
        stop.set()
        t.join()
    for values in beside:
        np.testing.assert_allclose(values, occlusion_alone, rtol=1e-5, atol=1e-7)
    for values in results["cam"]:
        np.testing.assert_allclose(values, cam_alone, rtol=1e-5, atol=1e-7)


def test_training_mode_comes_back_only_when_the_last_concurrent_run_leaves():
    net = make_net(3).train()
    first, second = shared_eval_mode(net), shared_eval_mode(net)
    first.__enter__()
    second.__enter__()
    assert not net.training
    first.__exit__(None, None, None)
    assert not net.training  # the second run is still going
    second.__exit__(None, None, None)
    assert net.training


# -- 10: complex images -----------------------------------------------------------------------------------------------


def test_complex_image_is_refused(net3d):
    img = random_volume((8, 9, 10)).astype(np.complex64) * (1 + 1j)
    with pytest.raises(ImageError, match="complex numbers.*numpy.abs"):
        explain(net3d, img, "vanilla_gradient")


# -- 11: CLI parameters that no method has ----------------------------------------------------------------------------


def test_cli_misspelled_param_exits_nonzero_naming_the_parameters(tmp_path, model_file, capsys):
    scan = nifti(tmp_path / "scan.nii.gz", shape=(7, 9, 11))
    code = main(["--model", str(model_file), "--image", str(scan), "--method", "integrated_gradients", "--param", "stepz=4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--param stepz" in err and "integrated_gradients: " in err and "steps" in err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def model_file(tmp_path):
    net = make_net(3)
    ep = torch.export.export(net, (torch.randn(2, 1, 7, 9, 11),), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "net.pt2"))
    return tmp_path / "net.pt2"



# -- cancel: integrated gradients' set-up -------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [2, 7, 50])
def test_gauss_legendre_nodes_are_numpys(steps):
    from napari_xai.engine.methods.backprop.integrated_gradients import quadrature

    alphas, weights = quadrature("gausslegendre", steps)
    nodes, ref_weights = np.polynomial.legendre.leggauss(steps)
    np.testing.assert_allclose(alphas, 0.5 * (nodes + 1), rtol=0, atol=1e-13)
    np.testing.assert_allclose(weights, 0.5 * ref_weights, rtol=0, atol=1e-13)



def test_kernel_shap_polls_cancel_while_drawing_many_coalitions(monkeypatch):
    """Drawing coalitions (seconds for 10^5 of them) yields every chunk, so Cancel is polled before the first pass."""
    from napari_xai.engine.methods.perturbation import kernel_shap

    monkeypatch.setattr(kernel_shap, "COALITION_CHUNK", 100)
    polled: list[str] = []

    def should_cancel() -> bool:
        return bool(polled) and "perturbed samples" in polled[-1]

    with pytest.raises(Cancelled):
        explain(make_net(3), random_volume((8, 9, 10)), "kernel_shap", target=1, segmentation="grid", cell=2, n_samples=1002,
                on_progress=lambda e: polled.append(e.message), should_cancel=should_cancel)
    drawing = [m for m in polled if "drawing coalitions" in m]
    assert len(drawing) == 10
    assert polled.index(drawing[-1]) < next(i for i, m in enumerate(polled) if "perturbed samples" in m)
