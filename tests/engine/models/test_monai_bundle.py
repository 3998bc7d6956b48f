"""MONAI bundles: the network from network_def by MONAI's ConfigParser, no bundle code run, preprocessing checked against MONAI's transforms.

Volumes are SYNTHETIC CT-like phantoms in HU (``napari_xai.samples.synthetic_ct``), not patient scans.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_xai.engine import explain
from napari_xai.engine.errors import ModelError, UntrustedModelError
from napari_xai.engine import as_scan
from napari_xai.engine.model_space import apply_intensity, to_model_space
from napari_xai.engine.models import load_model
from napari_xai.engine.models.monai_bundle import bundle_spec
from napari_xai.samples.synthetic_ct import SYNTHETIC_CT_NAME, synthetic_ct

from tests.real_format_fixtures import (
    BUNDLE_HU_RANGE,
    BUNDLE_NETWORK_DEF,
    BUNDLE_PIXDIM,
    BUNDLE_ROI,
    bundle_inference_config,
    bundle_metadata,
    write_monai_bundle,
)

monai = pytest.importorskip("monai")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_monai_bundle(tmp_path_factory.mktemp("bundle") / "synthetic_ct_bundle")


def _ct_file(tmp_path, direction=((0, 1, 0), (-1, 0, 0), (0, 0, 1)), spacing=(1.4, 1.4, 3.0), shape=(20, 24, 28)):
    """A SYNTHETIC CT-like volume written as NIfTI by SimpleITK, on a permuted, flipped axial grid."""
    scan, lesion = synthetic_ct(shape, spacing[::-1])
    img = sitk.GetImageFromArray(scan.array)
    img.SetSpacing(spacing)
    img.SetOrigin((10.0, -5.0, 3.0))
    img.SetDirection(np.asarray(direction, float).ravel().tolist())
    path = tmp_path / "synthetic_ct.nii.gz"
    sitk.WriteImage(img, str(path))
    return path, lesion


def test_bundle_network_is_built_from_network_def_and_runs_no_bundle_code(bundle):
    from monai.networks.nets import UNet

    loaded = load_model(bundle)
    assert loaded.kind == "monai_bundle" and isinstance(loaded.module, UNet)
    assert not (bundle / "scripts" / "IMPORTED").exists(), "the bundle's scripts/ must not be imported"
    direct = UNet(**{k: v for k, v in BUNDLE_NETWORK_DEF.items() if k != "_target_"}).eval()
    direct.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    window = torch.randn(1, 1, *BUNDLE_ROI, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.module(window), direct(window))
    assert not loaded.module.training


def test_bundle_spec_is_the_bundle_preprocessing_inferer_and_metadata(bundle):
    spec = load_model(bundle).spec
    assert spec.task == "segmentation" and spec.spatial_dims == 3 and spec.in_channels == 1
    assert spec.labels == ["background", "lesion"]
    assert spec.orientation == "RAS" and spec.transpose == (2, 1, 0)
    assert spec.input_spacing == tuple(BUNDLE_PIXDIM)
    assert spec.intensity == {"type": "range", "a_min": BUNDLE_HU_RANGE[0], "a_max": BUNDLE_HU_RANGE[1], "b_min": 0, "b_max": 1, "clip": True}
    sw = spec.sliding_window
    assert sw["roi_size"] == BUNDLE_ROI and sw["overlap"] == 0.5 and sw["mode"] == "gaussian" and sw["sw_batch_size"] == 4


def test_model_space_equals_monai_load_orientation_and_intensity(tmp_path, bundle):
    """The same NIfTI through MONAI's own transforms and through the translated spec: identical tensors."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, ScaleIntensityRanged

    path, _ = _ct_file(tmp_path)
    lo, hi = BUNDLE_HU_RANGE
    pipe = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), Orientationd("image", axcodes="RAS"),
                    ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0, b_max=1, clip=True)])
    reference = pipe({"image": str(path)})["image"].numpy()
    spec = load_model(bundle).spec
    spec.input_spacing = None  # no resampling: orientation, axis order and intensity are compared exactly
    ours = to_model_space(as_scan(str(path)), spec).tensor[0].numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_resampled_grid_has_monai_spacing_orientation_and_axis_order(tmp_path):
    """Spacingd and the spec's input_spacing on a volume linear in physical space: the same step along each axis."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    img = sitk.Image([28, 24, 20], sitk.sitkFloat32)
    img.SetSpacing((1.1, 0.9, 2.5))
    img.SetDirection(np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], float).ravel().tolist())
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in (28, 24, 20)], indexing="ij"), -1).reshape(-1, 3).astype(float)
    d = np.array(img.GetDirection()).reshape(3, 3)
    world = idx * np.array(img.GetSpacing()) @ d.T + np.array(img.GetOrigin())
    ramp = world @ np.array([3.0, -2.0, 5.0])  # HU-like values, linear in LPS mm
    img = sitk.GetImageFromArray(ramp.reshape(28, 24, 20).transpose(2, 1, 0).astype(np.float32), isVector=False)
    img.SetSpacing((1.1, 0.9, 2.5))
    img.SetDirection(d.ravel().tolist())
    path = tmp_path / "ramp.nii.gz"
    sitk.WriteImage(img, str(path))
    pixdim = [1.5, 1.5, 2.0]
    reference = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), Orientationd("image", axcodes="RAS"),
                         Spacingd("image", pixdim=pixdim, mode="bilinear")])({"image": str(path)})["image"][0].numpy()
    spec = bundle_spec(bundle_inference_config(), bundle_metadata())
    spec.input_spacing, spec.intensity = tuple(pixdim), {"type": "none"}
    ours = to_model_space(as_scan(str(path)), spec).tensor[0, 0].numpy()
    assert all(abs(a - b) <= 1 for a, b in zip(ours.shape, reference.shape))
    inner = tuple(slice(2, -2) for _ in range(3))  # away from the border, where each pads with its own value
    for axis in range(3):
        step_ours = np.diff(ours[inner], axis=axis).mean()
        step_ref = np.diff(reference[inner], axis=axis).mean()
        assert step_ours == pytest.approx(step_ref, rel=1e-3, abs=1e-3), (axis, step_ours, step_ref)
    # RAS steps of the ramp (LPS coefficients 3, -2, 5 -> RAS -3, 2, 5) times the spacing: the axis layout itself
    np.testing.assert_allclose([np.diff(ours[inner], axis=a).mean() for a in range(3)], [-3 * 1.5, 2 * 1.5, 5 * 2.0], rtol=1e-3)


@pytest.mark.parametrize("kwargs", [
    {"a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0, "clip": True},
    {"a_min": -1000, "a_max": 1000, "b_min": -1.0, "b_max": 1.0, "clip": False},
    {"a_min": -175, "a_max": 250, "b_min": None, "b_max": None, "clip": False},
])
def test_range_intensity_equals_monai_scale_intensity_range(kwargs):
    from monai.transforms import ScaleIntensityRange

    scan, _ = synthetic_ct((8, 16, 16))
    ours = apply_intensity(scan.array, {"type": "range", **kwargs})
    np.testing.assert_allclose(ours, ScaleIntensityRange(**kwargs)(scan.array).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("nonzero", [False, True])
def test_zscore_equals_monai_normalize_intensity(nonzero):
    from monai.transforms import NormalizeIntensity

    arr = synthetic_ct((8, 16, 16))[0].array + 1000.0  # air becomes exactly 0 outside the body
    arr[arr < 1] = 0.0
    spec = bundle_spec(
        bundle_inference_config(preprocessing={"_target_": "Compose", "transforms": [
            {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": nonzero}]}), bundle_metadata())
    ours = apply_intensity(arr, spec.intensity)
    np.testing.assert_allclose(ours, NormalizeIntensity(nonzero=nonzero)(arr.copy()).numpy(), rtol=1e-4, atol=1e-4)


def test_bundle_expression_in_network_def_is_refused_until_trusted(tmp_path):
    config = bundle_inference_config({**BUNDLE_NETWORK_DEF, "channels": "$[4, 8, 16]"})
    root = write_monai_bundle(tmp_path / "b", config=config)
    with pytest.raises(UntrustedModelError, match="trust_bundle_code") as err:
        load_model(root)
    assert "$[4, 8, 16]" in str(err.value)
    assert not (root / "scripts" / "IMPORTED").exists()
    trusted = load_model(root, trust_bundle_code=True)  # the config's imports include "$import scripts": now it runs
    assert (root / "scripts" / "IMPORTED").exists()
    assert tuple(trusted.module.channels) == (4, 8, 16)


@pytest.mark.parametrize("target", ["scripts.Net", "os.system", "monai.transforms.LoadImage"])
def test_bundle_network_from_outside_monai_networks_is_refused_before_import(tmp_path, target):
    root = write_monai_bundle(tmp_path / "b", config=bundle_inference_config({"_target_": target, "command": "touch x"}))
    with pytest.raises(UntrustedModelError, match="not a network"):
        load_model(root)
    assert not (root / "scripts" / "IMPORTED").exists()


def test_bundle_mode_key_and_downloads_are_refused(tmp_path):
    root = write_monai_bundle(tmp_path / "b", config=bundle_inference_config({**BUNDLE_NETWORK_DEF, "_mode_": "debug"}))
    with pytest.raises(UntrustedModelError, match="_mode_"):
        load_model(root)
    root = write_monai_bundle(tmp_path / "c", config=bundle_inference_config({"_target_": "DenseNet121", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "pretrained": True}))
    with pytest.raises(ModelError, match="downloaded"):
        load_model(root)


def test_untranslatable_transforms_are_named_and_a_given_spec_is_used_instead(tmp_path):
    config = bundle_inference_config()
    config["preprocessing"]["transforms"][4:4] = [
        {"_target_": "CropForegroundd", "keys": "@image_key", "source_key": "@image_key"},
        {"_target_": "ScaleIntensityd", "keys": "@image_key", "minv": -1.0, "maxv": 1.0},
        {"_target_": "RandFlipd", "keys": "label", "prob": 0.5},  # another key: not the image's business
    ]
    root = write_monai_bundle(tmp_path / "b", config=config)
    with pytest.raises(ModelError) as err:
        load_model(root)
    msg = str(err.value)
    assert "CropForegroundd" in msg and "ScaleIntensityd" in msg and "RandFlipd" not in msg and "spec=" in msg
    loaded = load_model(root, spec={"spatial_dims": 3, "transpose": [2, 1, 0], "intensity": {"type": "window", "center": 50, "width": 400}})
    assert loaded.spec.intensity["type"] == "window"


def test_bundle_checkpoint_dict_and_pickled_model(tmp_path):
    root = write_monai_bundle(tmp_path / "wrapped", wrap_state=True)  # {"model": state_dict}, as CheckpointSaver writes
    assert load_model(root).kind == "monai_bundle"
    from monai.networks.nets import UNet

    torch.save(UNet(**{k: v for k, v in BUNDLE_NETWORK_DEF.items() if k != "_target_"}), root / "models" / "model.pt")
    with pytest.raises(UntrustedModelError, match="pickled"):
        load_model(root)


def test_bundle_options_are_checked(bundle):
    with pytest.raises(ModelError, match="folds"):
        load_model(bundle, folds=0)
    (bundle.parent / "empty").mkdir(exist_ok=True)
    with pytest.raises(ModelError, match="neither a MONAI bundle"):
        load_model(bundle.parent / "empty")


def test_bundle_explains_a_region_on_a_synthetic_ct(tmp_path, bundle):
    """A region of the lesion class on a SYNTHETIC CT-like volume in HU, through the bundle's sliding windows."""
    path, lesion = _ct_file(tmp_path, direction=np.eye(3), spacing=tuple(BUNDLE_PIXDIM), shape=(20, 40, 44))
    scan = as_scan(str(path))
    assert scan.array.min() <= -900 and scan.array.max() >= 500  # HU
    attr = explain(bundle, scan, "vanilla_gradient", target="lesion", region=lesion)
    assert attr.values.shape == lesion.shape and np.isfinite(attr.values).all()
    assert np.abs(attr.values[lesion]).sum() > 0
    assert attr.model["kind"] == "monai_bundle" and attr.model["spec"]["sliding_window"]["roi_size"] == BUNDLE_ROI
    json.dumps(attr.model)  # provenance stays plain JSON
    assert SYNTHETIC_CT_NAME.startswith("SYNTHETIC")


def test_yaml_bundle_config(tmp_path):
    yaml = pytest.importorskip("yaml")
    root = write_monai_bundle(tmp_path / "yaml_bundle")
    config = json.loads((root / "configs" / "inference.json").read_text())
    (root / "configs" / "inference.json").unlink()
    (root / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    loaded = load_model(root)
    assert loaded.extra["config"] == "inference.yaml" and loaded.spec.sliding_window["roi_size"] == BUNDLE_ROI
