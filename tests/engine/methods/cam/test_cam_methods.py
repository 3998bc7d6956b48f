"""Class activation maps against MONAI and Captum, and CAM = Grad-CAM x constant on GAP + linear."""

from __future__ import annotations

import copy

import captum.attr as captum_attr
import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_xai.engine import explain
from napari_xai.engine.errors import MethodError

from tests.conftest import make_net
from tests.engine.methods.method_cases import Scored, case, corr, image, region, tensor


@pytest.mark.parametrize("dim", [2, 3])
def test_cam_is_grad_cam_times_a_constant_on_gap_linear(dim):
    net, img, _, _ = case(dim, "class")
    cam = explain(net, img, "cam", target=1).values
    grad_cam = explain(net, img, "grad_cam", target=1, relu=False).values
    np.testing.assert_allclose(cam, grad_cam * np.prod(img.shape), rtol=1e-4, atol=1e-5 * np.abs(cam).max())


@pytest.mark.parametrize("dim", [2, 3])
def test_cam_matches_monai(dim):
    from monai.visualize import CAM as monai_cam
    net, img, _, _ = case(dim, "class")
    cam = explain(net, img, "cam", target=1).values
    ref = monai_cam(copy.deepcopy(net), target_layers="features.4", fc_layers="head", postprocessing=lambda t: t)(tensor(img), class_idx=[1])
    # MONAI applies the linear layer at every voxel, bias included
    np.testing.assert_allclose(cam + float(net.head.bias[1]), ref[0, 0].detach().numpy(), rtol=1e-4, atol=1e-5)


def test_cam_refuses_a_head_that_is_not_gap_linear():
    class Deep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net(2)
            self.net.head = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, x):
            return self.net(x)

    with pytest.raises(MethodError, match="global average pooling"):
        explain(Deep().eval(), image(2), "cam", target=1)


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
def test_grad_cam_pp_matches_monai(dim, task):
    """MONAI's GradCAMpp keeps the paper's exp(score) factor (we leave that constant out) and adds 1e-7 to the
    alpha denominator; head weights x30 make the gradients large enough for that 1e-7 not to matter, and a
    mean over the region keeps exp(score) finite."""
    import monai.visualize as monai_vis
    net, img, kwargs, _ = case(dim, task)
    with torch.no_grad():
        net.head.weight.mul_(30)
    mask = torch.from_numpy(region(dim))
    score = (lambda out: (out[:, 1] * mask).flatten(1).sum(1) / mask.sum()) if task == "region" else (lambda out: out[:, 1])
    ours = explain(net, img, "grad_cam_pp", target=1, reduce="mean", **kwargs).values
    layer = "net.head" if task == "region" else "net.features.4"
    ref = monai_vis.GradCAMpp(Scored(net, score), target_layers=layer, postprocessing=lambda t: t)(tensor(img), class_idx=[0])[0, 0].detach().numpy()
    with torch.no_grad():
        factor = float(torch.exp(score(net(tensor(img)))[0]))
    assert np.isfinite(factor) and np.abs(ref).max() > 0
    assert corr(ours, ref) >= 0.999
    # equal up to MONAI's 1e-7 in the alpha denominator (gradients here are ~1e-2, so alpha differs by < 1 %)
    np.testing.assert_allclose(ours * factor, ref, rtol=2e-2, atol=1e-2 * np.abs(ref).max())


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
def test_guided_grad_cam_matches_captum(dim, task):
    net, img, kwargs, score = case(dim, task)
    scored = Scored(net, score)
    layer = scored.net.head if task == "region" else scored.net.features[4]
    ref = captum_attr.GuidedGradCam(scored, layer).attribute(tensor(img), target=0)[0, 0].detach().numpy()
    ours = explain(net, img, "guided_grad_cam", target=1, **kwargs).values
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
def test_score_cam_matches_a_direct_computation(dim, task):
    """Each channel of the layer, min-max normalised, masks the input; weight = score gain over the zero image."""
    net, img, kwargs, score = case(dim, task)
    ours = explain(net, img, "score_cam", target=1, **kwargs)
    layer = net.head if task == "region" else net.features[4]
    x = tensor(img)
    acts = {}
    h = layer.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach()))
    try:
        with torch.no_grad():
            net(x)
    finally:
        h.remove()
    a = acts["a"][0]
    with torch.no_grad():
        base = float(score(net(torch.zeros_like(x)))[0])
        weights = []
        for k in range(a.shape[0]):
            m = a[k]
            m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
            weights.append(float(score(net(x * m))[0]) - base)
    ref = torch.relu((torch.tensor(weights).view(-1, *([1] * dim)) * a).sum(0)).numpy()
    assert ours.checks["layer"] == ("head" if task == "region" else "features.4")
    np.testing.assert_allclose(ours.values, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_cam_layer_can_be_named():
    net, img, _, _ = case(3, "class")
    a = explain(net, img, "grad_cam_pp", target=1, layer="features.2")
    assert a.checks["layer"] == "features.2"
    with pytest.raises(Exception, match="no layer called"):
        explain(net, img, "score_cam", target=1, layer="nope")
