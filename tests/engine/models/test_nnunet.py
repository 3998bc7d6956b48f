"""nnU-Net v2 results folders: weights-only checkpoints, the plans' network, nnU-Net's preprocessing as the spec.

References are nnU-Net's own code, read from its source (nnunetv2 cannot be
installed here: it pulls a CUDA torch): ``CTNormalization.run`` and
``ZScoreNormalization.run`` (``preprocessing/normalization/default_normalization_schemes.py``),
``DefaultPreprocessor.run_case_npy`` (transpose, then normalise),
``predict_logits_from_preprocessed_data`` (mean of the folds' logits) and
``_internal_maybe_mirror_and_predict`` (mirroring), transcribed below where a
test needs them. Volumes are SYNTHETIC CT-like phantoms in HU.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from napari_xai.engine import explain
from napari_xai.engine.errors import ModelError, UntrustedModelError
from napari_xai.engine.model_space import apply_intensity, to_model_space
from napari_xai.engine.models import load_model
from napari_xai.engine.models.nnunet import FoldEnsemble, MirrorEnsemble, read_checkpoint
from napari_xai.samples.synthetic_ct import synthetic_ct

from tests.real_format_fixtures import (
    NNUNET_CT_PROPERTIES,
    NNUNET_PATCH,
    NNUNET_SPACING,
    nnunet_dataset_json,
    nnunet_network,
    nnunet_plans,
    write_nnunet_results,
)

pytest.importorskip("dynamic_network_architectures")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet") / "Dataset901_SyntheticCT" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    return write_nnunet_results(root, folds=(0, 1))


def _nnunet_ct_normalization(image: np.ndarray, props: dict) -> np.ndarray:
    """nnU-Net's ``CTNormalization.run``, transcribed."""
    image = image.astype(np.float32, copy=True)
    np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
    image -= props["mean"]
    image /= max(props["std"], 1e-8)
    return image


def _nnunet_zscore(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """nnU-Net's ``ZScoreNormalization.run``, transcribed (``mask`` is ``seg >= 0``)."""
    image = image.astype(np.float32, copy=True)
    if mask is not None:
        mean, std = image[mask].mean(), image[mask].std()
        image[mask] = (image[mask] - mean) / max(std, 1e-8)
        return image
    return (image - image.mean()) / max(image.std(), 1e-8)


def _window(seed=0, size=tuple(NNUNET_PATCH)):
    return torch.randn(1, 1, *size, generator=torch.Generator().manual_seed(seed)) * 2


def test_checkpoint_is_read_weights_only_with_numpy_scalars_allowed(results):
    ckpt = read_checkpoint(results / "fold_0" / "checkpoint_final.pth")
    assert set(ckpt) >= {"network_weights", "optimizer_state", "logging", "init_args", "trainer_name", "inference_allowed_mirroring_axes"}
    assert isinstance(ckpt["_best_ema"], np.floating) and ckpt["init_args"]["configuration"] == "3d_fullres"


class _Payload:
    """Unpickling this would create a marker file: the planted code."""

    marker = None

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_checkpoint_with_other_classes_is_refused_and_runs_nothing(tmp_path, results):
    ckpt = read_checkpoint(results / "fold_0" / "checkpoint_final.pth")
    payload = _Payload()
    payload.marker = str(tmp_path / "RAN")
    ckpt["logging"]["extra"] = payload
    bad = tmp_path / "Dataset" / "fold_0"
    bad.mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (bad.parent / name).write_text((results / name).read_text())
    torch.save(ckpt, bad / "checkpoint_final.pth")
    with pytest.raises(UntrustedModelError, match="pathlib"):
        load_model(bad.parent)
    assert not (tmp_path / "RAN").exists()


def test_network_is_the_plans_network_with_the_fold_weights(results):
    plans, dataset_json = nnunet_plans(), nnunet_dataset_json()
    loaded = load_model(results, folds=1)
    assert loaded.kind == "nnunet" and type(loaded.module).__name__ == "PlainConvUNet"
    assert loaded.extra["folds"] == [1] and loaded.extra["trainer_name"] == "nnUNetTrainer"
    direct = nnunet_network(plans, dataset_json, seed=1)
    with torch.no_grad():  # same weights; CPU convolutions may sum in another order
        torch.testing.assert_close(loaded.module(_window()), direct(_window()), rtol=1e-5, atol=1e-5)
    assert loaded.spec.cam_layer == "decoder.stages.1"
    loaded.get_layer(loaded.spec.cam_layer)


def test_several_folds_average_their_logits_as_nnunet_does(results):
    plans, dataset_json = nnunet_plans(), nnunet_dataset_json()
    ensemble = load_model(results)  # every fold_N, as nnU-Net's auto_detect_available_folds picks them
    assert isinstance(ensemble.module, FoldEnsemble) and ensemble.extra["folds"] == [0, 1]
    nets = [nnunet_network(plans, dataset_json, seed=f) for f in (0, 1)]
    with torch.no_grad():
        expected = sum(n(_window()) for n in nets) / 2
        torch.testing.assert_close(ensemble.module(_window()), expected, rtol=1e-5, atol=1e-5)
    assert ensemble.identity != load_model(results, folds=[0]).identity


def test_mirroring_is_nnunets_mirror_ensemble(results):
    plans, dataset_json = nnunet_plans(), nnunet_dataset_json()
    loaded = load_model(results, folds=0, use_mirroring=True)
    assert isinstance(loaded.module, MirrorEnsemble) and loaded.extra["mirroring_axes"] == [0, 1, 2]
    net, x = nnunet_network(plans, dataset_json, seed=0), _window(3, size=(4, 8, 12))
    with torch.no_grad():  # _internal_maybe_mirror_and_predict, transcribed
        pred = net(x)
        combos = [c for i in range(3) for c in itertools.combinations([2, 3, 4], i + 1)]
        for axes in combos:
            pred += torch.flip(net(torch.flip(x, axes)), axes)
        pred /= len(combos) + 1
        torch.testing.assert_close(loaded.module(x), pred, rtol=1e-5, atol=1e-5)


def test_spec_is_nnunets_preprocessing_and_sliding_windows(results):
    spec = load_model(results, folds=0).spec
    assert spec.task == "segmentation" and spec.in_channels == 1 and spec.labels == ["background", "liver", "lesion"]
    assert spec.transpose == (0, 1, 2) and spec.input_spacing == tuple(NNUNET_SPACING)
    p = NNUNET_CT_PROPERTIES
    assert spec.intensity == {"type": "ct", "lower": p["percentile_00_5"], "upper": p["percentile_99_5"], "mean": p["mean"], "std": p["std"]}
    sw = spec.sliding_window
    assert sw["roi_size"] == NNUNET_PATCH and sw["overlap"] == 0.5 and sw["mode"] == "gaussian" and sw["sigma_scale"] == 0.125
    assert sw["padding_mode"] == "constant" and sw["cval"] == 0.0 and sw["style"] == "nnunet"


def test_ct_normalisation_equals_nnunets():
    scan, _ = synthetic_ct((12, 24, 24))
    ours = apply_intensity(scan.array, {"type": "ct", "lower": NNUNET_CT_PROPERTIES["percentile_00_5"],
                                        "upper": NNUNET_CT_PROPERTIES["percentile_99_5"],
                                        "mean": NNUNET_CT_PROPERTIES["mean"], "std": NNUNET_CT_PROPERTIES["std"]})
    np.testing.assert_allclose(ours, _nnunet_ct_normalization(scan.array, NNUNET_CT_PROPERTIES), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("use_mask", [False, True])
def test_zscore_equals_nnunets(use_mask):
    arr = synthetic_ct((12, 24, 24))[0].array + 1000.0
    arr[arr < 1] = 0.0
    ours = apply_intensity(arr, {"type": "zscore", "nonzero": use_mask, "keep_zeros": use_mask})
    np.testing.assert_allclose(ours, _nnunet_zscore(arr, arr != 0 if use_mask else None), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transpose", [(0, 1, 2), (2, 0, 1)])
def test_model_space_is_transposed_and_normalised_as_nnunet_preprocesses(tmp_path, transpose):
    """At the plans' spacing nothing is resampled: the model input is nnU-Net's run_case_npy output exactly."""
    root = write_nnunet_results(tmp_path / f"t{''.join(map(str, transpose))}", folds=(0,), transpose_forward=transpose)
    loaded = load_model(root)
    scan, _ = synthetic_ct((24, 40, 36), tuple(NNUNET_SPACING))
    msi = to_model_space(scan, loaded.spec)
    expected = _nnunet_ct_normalization(scan.array, NNUNET_CT_PROPERTIES).transpose(transpose)
    np.testing.assert_allclose(msi.tensor[0, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert loaded.spec.sliding_window["roi_size"] == NNUNET_PATCH  # in the network's (transposed) axis order


def test_residual_encoder_unet_plans(tmp_path):
    root = write_nnunet_results(tmp_path / "res", folds=(0,), network="ResidualEncoderUNet")
    loaded = load_model(root)
    direct = nnunet_network(nnunet_plans(network="ResidualEncoderUNet"), nnunet_dataset_json(), seed=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(_window()), direct(_window()), rtol=1e-5, atol=1e-5)


def _edit_plans(root, edit):
    plans = json.loads((root / "plans.json").read_text())
    edit(plans)
    (root / "plans.json").write_text(json.dumps(plans))


@pytest.mark.parametrize("field, value, match", [
    ("network_class_name", "os.system", "not one of dynamic_network_architectures"),
    ("network_class_name", "dynamic_network_architectures.architectures.primus.Primus", "not one of"),
    ("conv_op", "os.system", "not a torch.nn layer"),
    ("nonlin", "torch.nn.functional.relu", "not a torch.nn.Module class"),
])
def test_plans_cannot_name_arbitrary_code(tmp_path, field, value, match):
    root = write_nnunet_results(tmp_path / "p", folds=(0,))

    def edit(plans):
        arch = plans["configurations"]["3d_fullres"]["architecture"]
        if field == "network_class_name":
            arch[field] = value
        else:
            arch["arch_kwargs"][field] = value

    _edit_plans(root, edit)
    with pytest.raises(UntrustedModelError, match=match):
        load_model(root)


def test_configurations_and_folds_are_checked(tmp_path, results):
    with pytest.raises(ModelError, match="fold"):
        load_model(results, folds=4)
    with pytest.raises(ModelError, match="trained with the '3d_fullres'"):
        load_model(results, configuration="2d")
    with pytest.raises(ModelError, match="does not take"):
        load_model(results, trust_bundle_code=True)
    from napari_xai.engine.models.nnunet import nnunet_spec, plan_configuration

    assert plan_configuration(nnunet_plans(), "3d_fullres_bs4")["batch_size"] == 4  # inherits_from resolved
    with pytest.raises(ModelError, match="slice by slice"):
        nnunet_spec(nnunet_plans(), nnunet_dataset_json(), "2d")
    broken = write_nnunet_results(tmp_path / "broken", folds=(0,))
    _edit_plans(broken, lambda plans: plans["configurations"]["3d_fullres"].pop("spacing"))
    with pytest.raises(ModelError, match="spacing"):
        load_model(broken)


def test_nnunet_model_explains_a_region_on_a_synthetic_ct(results):
    """Grad-CAM and vanilla gradient for the lesion class over a region of a SYNTHETIC CT-like volume in HU."""
    scan, lesion = synthetic_ct((24, 40, 40), (1.5, 0.7, 0.7))
    loaded = load_model(results, folds=0)
    for method in ("vanilla_gradient", "grad_cam"):
        attr = explain(loaded, scan, method, target="lesion", region=lesion)
        assert attr.values.shape == lesion.shape and np.isfinite(attr.values).all()
        assert np.abs(attr.values).max() > 0
        assert attr.model["kind"] == "nnunet"


def test_resampled_scan_lands_on_the_plans_spacing(results):
    scan, _ = synthetic_ct((20, 30, 30), (2.5, 1.0, 1.0))
    msi = to_model_space(scan, load_model(results, folds=0).spec)
    assert msi.geometry.spacing[::-1] == pytest.approx(tuple(NNUNET_SPACING))
    assert msi.tensor.shape[2:] == (round(20 * 2.5 / 1.5), round(30 / 0.7), round(30 / 0.7))  # nnU-Net's compute_new_shape


def test_cli_explains_with_an_nnunet_fold(tmp_path, results, capsys):
    import SimpleITK as sitk

    from napari_xai.cli import main

    scan, lesion = synthetic_ct((16, 36, 36), tuple(NNUNET_SPACING))
    image, region = tmp_path / "synthetic_ct.nii.gz", tmp_path / "lesion.nii.gz"
    sitk.WriteImage(scan.to_sitk(), str(image))
    sitk.WriteImage(scan.geometry.apply_to(sitk.GetImageFromArray(lesion.astype(np.uint8))), str(region))
    out = tmp_path / "out"
    args = ["--model", str(results), "--image", str(image), "--region", str(region), "--target", "lesion",
            "--method", "vanilla_gradient", "--no-png", "--out", str(out)]
    assert main([*args, "--folds", "1"]) == 0
    prov = json.loads((out / "synthetic_ct_vanilla_gradient.nii.gz.json").read_text())
    assert prov["model"]["kind"] == "nnunet" and prov["target"]["label"] == "lesion"
    assert main([*args, "--folds", "x"]) == 2
    assert "not fold numbers" in capsys.readouterr().err


@pytest.mark.parametrize("shape", [(37, 32, 36), (12, 40, 45)])
def test_sliding_windows_are_nnunets_predictor(results, shape):
    """The spec's windows (style "nnunet") blend exactly as nnU-Net's predictor does, also where MONAI would
    place the windows elsewhere (37 = 16 + 21: nnU-Net starts at 0, 7, 14, 21; MONAI at 0, 8, 16, 21) and where
    the volume is padded to the patch (12 < 16)."""
    from napari_xai.engine.sliding_window import plan_windows, sliding_window_forward

    from tests.nnunet_reference import nnunet_predict, nnunet_steps

    loaded = load_model(results, folds=0)
    x = _window(5, size=shape)
    plan = plan_windows(shape, loaded.spec.sliding_window)
    padded = tuple(max(n, p) for n, p in zip(shape, NNUNET_PATCH))
    assert sorted({s[0] for s in plan.starts}) == nnunet_steps(padded, NNUNET_PATCH)[0]
    with torch.no_grad():
        ours = sliding_window_forward(loaded.module, x, plan)[0]
    torch.testing.assert_close(ours, nnunet_predict(loaded.module, x[0], NNUNET_PATCH), rtol=1e-4, atol=1e-5)
