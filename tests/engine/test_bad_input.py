"""Every failure a user can cause gives a clear message naming the problem and the fix (docs/architecture.md, Errors)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_xai.engine import (
    Cancelled,
    ImageError,
    MemoryBudgetError,
    MethodError,
    ModelError,
    TargetError,
    XAIError,
    explain,
    explain_iter,
    read_image,
)

from tests.conftest import make_net, random_volume


@pytest.fixture
def image():
    return random_volume((8, 9, 10))


def test_every_message_names_a_fix():
    err = ImageError("Something is wrong.", "Do this.")
    assert isinstance(err, ValueError) and str(err) == "Something is wrong. Fix: Do this."


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5, 6)])
def test_wrong_dimensionality(net3d, shape):
    with pytest.raises(ImageError, match="spatial axes.*Fix: Pass one 2D slice or one 3D volume"):
        explain(net3d, np.zeros(shape, np.float32), "vanilla_gradient")


def test_nan_and_inf_voxels(net3d, image):
    image[1, 2, 3] = np.nan
    image[2, 2, 2] = np.inf
    with pytest.raises(ImageError, match=r"2 NaN or infinite voxel\(s\) \(first at index \(1, 2, 3\)\).*nan_to_num"):
        explain(net3d, image, "vanilla_gradient")


def test_non_numeric_image(net3d):
    with pytest.raises(ImageError, match="not numbers"):
        explain(net3d, np.array([["a", "b"], ["c", "d"]]), "vanilla_gradient")


def test_model_spec_dimensionality_mismatch(image):
    with pytest.raises(ImageError, match="takes 2D images but the image is 3D.*Pick one slice"):
        explain(make_net(2), image, "vanilla_gradient", spec={"spatial_dims": 2})


def test_channel_count_mismatch(image):
    with pytest.raises(ImageError, match="takes 2 channel\\(s\\) but the image has 1"):
        explain(make_net(3, in_channels=2), image, "vanilla_gradient", spec={"in_channels": 2})


def test_model_that_fails_on_the_input(image):
    with pytest.raises(ModelError, match="failed on an input of shape \\(1, 1, 8, 9, 10\\).*give the model a spec"):
        explain(make_net(2), image, "vanilla_gradient")  # a 2D network fed a volume


def test_multi_channel_image_for_one_channel_model_fails_cleanly():
    with pytest.raises(ModelError, match="failed on an input"):
        explain(make_net(3), np.zeros((2, 6, 6, 6), np.float32), "vanilla_gradient")


class NaNNet(nn.Module):
    def forward(self, x):
        return torch.log(x.flatten(1)[:, :2] * 0)


def test_nan_model_output(image):
    with pytest.raises(ModelError, match="NaN or infinite"):
        explain(NaNNet(), image, "occlusion")


@pytest.mark.parametrize("target, match", [(3, "Class 3 is out of range: the model outputs 3 classes"), (-1, "out of range"), ("tumour", "no class called 'tumour'"), (1.5, "not a class index")])
def test_target_out_of_range_or_unknown(net3d, image, target, match):
    with pytest.raises(TargetError, match=match):
        explain(net3d, image, "vanilla_gradient", target=target)


def test_empty_region(image):
    net = make_net(3, segmentation=True)
    with pytest.raises(TargetError, match="region is empty"):
        explain(net, image, "vanilla_gradient", target=1, region=np.zeros(image.shape, bool))


def test_region_on_the_wrong_grid(image):
    net = make_net(3, segmentation=True)
    with pytest.raises(TargetError, match="region has shape \\(3, 3, 3\\) but the image has \\(8, 9, 10\\)"):
        explain(net, image, "vanilla_gradient", target=1, region=np.ones((3, 3, 3), bool))


def test_region_for_a_classifier(net3d, image):
    with pytest.raises(TargetError, match="classification model"):
        explain(net3d, image, "vanilla_gradient", region=np.ones(image.shape, bool))


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = make_net(3)

    def forward(self, x):
        with torch.no_grad():
            return self.net(x)


@pytest.mark.parametrize("method", ["vanilla_gradient", "integrated_gradients", "grad_cam"])
def test_non_differentiable_model_for_a_gradient_method(image, method):
    with pytest.raises(MethodError, match="does not depend differentiably.*perturbation method"):
        explain(Detached(), image, method)


def test_non_differentiable_model_still_works_with_occlusion(image):
    a = explain(Detached(), image, "occlusion", window=4, stride=4)
    assert np.abs(a.values).max() > 0


class NoSpatial(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8 * 9 * 10, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_missing_cam_layer(image):
    with pytest.raises(MethodError, match="No layer of this model has a spatial output"):
        explain(NoSpatial(), image, "grad_cam")
    with pytest.raises(ModelError, match="no layer called 'features.9'"):
        explain(make_net(3), image, "grad_cam", layer="features.9")


def test_unknown_method_and_bad_parameters(net3d, image):
    with pytest.raises(MethodError, match="no method called 'gradcam\\+\\+\\+'"):
        explain(net3d, image, "gradcam+++")
    with pytest.raises(MethodError, match="no parameter\\(s\\) \\['n_steps'\\].*steps"):
        explain(net3d, image, "integrated_gradients", n_steps=10)
    with pytest.raises(MethodError, match="'steps' is 1, outside \\[2, 1000\\]"):
        explain(net3d, image, "integrated_gradients", steps=1)
    with pytest.raises(MethodError, match="'baseline' is 'black'.*one of"):
        explain(net3d, image, "occlusion", baseline="black")
    with pytest.raises(MethodError, match="window \\(2, 2\\) has 2 entries for a 3D image"):
        explain(net3d, image, "occlusion", window=(2, 2))
    with pytest.raises(MethodError, match="stride.*larger than the window"):
        explain(net3d, image, "occlusion", window=2, stride=3)


def test_volume_too_large_for_the_memory_budget(net3d):
    big = random_volume((40, 40, 40))
    with pytest.raises(MemoryBudgetError, match="over the memory budget of 1 MiB.*memory_budget_mb="):
        explain(net3d, big, "occlusion", memory_budget_mb=1)


def test_unreadable_image_file(tmp_path, net3d):
    (tmp_path / "scan.nii.gz").write_bytes(b"garbage")
    with pytest.raises(ImageError, match="could not be read as an image"):
        explain(net3d, str(tmp_path / "scan.nii.gz"), "vanilla_gradient")
    with pytest.raises(ImageError, match="No file or folder"):
        read_image(tmp_path / "missing.nrrd")


def test_not_a_model(image):
    with pytest.raises(ModelError, match="not a torch.nn.Module"):
        explain(object(), image, "vanilla_gradient")


def test_cancel_by_closing_the_generator_stops_within_a_second():
    net = make_net(3)
    image = random_volume((12, 12, 12))
    gen = explain_iter(net, image, "occlusion", window=2, stride=1)
    calls = 0
    original = net.forward

    def counting(x):
        nonlocal calls
        calls += 1
        return original(x)

    net.forward = counting
    next(gen)
    next(gen)
    t0 = time.perf_counter()
    gen.close()
    assert time.perf_counter() - t0 < 1.0
    after = calls
    with pytest.raises(StopIteration):
        next(gen)
    assert calls == after  # no work after the close
    assert net.training is False


def test_cancel_flag_in_explain_raises_cancelled_and_restores_training_mode():
    net = make_net(3).train()
    seen = []
    with pytest.raises(Cancelled):
        explain(net, random_volume((12, 12, 12)), "occlusion", window=2, stride=1, on_progress=seen.append, should_cancel=lambda: len(seen) >= 3)
    assert len(seen) == 3
    assert net.training is True  # the caller's mode is restored


def test_all_user_errors_are_xai_errors():
    for cls in (ImageError, ModelError, TargetError, MethodError, MemoryBudgetError):
        assert issubclass(cls, XAIError)
