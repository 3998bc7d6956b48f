"""The four first methods against Captum on 2D and 3D networks with BatchNorm, and integrated gradients' completeness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

from napari_xai.engine import explain

from tests.conftest import make_net, random_volume

SHAPES = {2: (14, 13), 3: (8, 9, 10)}


def inputs(dim):
    image = random_volume(SHAPES[dim], seed=dim)
    return image, torch.from_numpy(image)[None, None]


def region_forward(net, region, k):
    """The segmentation target as a scalar function for Captum: class k's logits summed over the region."""
    mask = torch.from_numpy(region)

    def forward(x):
        return (net(x)[:, k] * mask).flatten(1).sum(1)

    return forward


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("absolute", [True, False])
def test_vanilla_gradient_equals_captum_saliency(dim, absolute):
    net = make_net(dim)
    image, x = inputs(dim)
    ours = explain(net, image, "vanilla_gradient", target=2, absolute=absolute)
    ref = Saliency(net).attribute(x, target=2, abs=absolute)[0, 0].detach().numpy()
    np.testing.assert_allclose(ours.values, ref, rtol=1e-5, atol=1e-9)
    assert ours.sign == ("non-negative" if absolute else "signed")


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("rule, captum_rule", [("gausslegendre", "gausslegendre"), ("riemann_trapezoid", "riemann_trapezoid"), ("riemann_middle", "riemann_middle")])
def test_integrated_gradients_equals_captum(dim, rule, captum_rule):
    net = make_net(dim)
    image, x = inputs(dim)
    ours = explain(net, image, "integrated_gradients", target=1, steps=24, rule=rule, memory_budget_mb=1)
    ref = IntegratedGradients(net).attribute(x, target=1, n_steps=24, method=captum_rule)[0, 0].detach().numpy()
    np.testing.assert_allclose(ours.values, ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dim", [2, 3])
def test_integrated_gradients_completeness(dim):
    """Attributions sum to f(x) - f(baseline); the quadrature error shrinks as steps grow."""
    net = make_net(dim)
    image, x = inputs(dim)
    with torch.no_grad():
        expected = float(net(x)[0, 0] - net(torch.zeros_like(x))[0, 0])
    errors = []
    for steps in (8, 64, 512):
        a = explain(net, image, "integrated_gradients", target=0, steps=steps)
        c = a.checks["completeness"]
        assert c["score_difference"] == pytest.approx(expected, rel=1e-5)
        assert c["attribution_sum"] == pytest.approx(float(a.values.astype(np.float64).sum()), rel=1e-5)
        errors.append(abs(float(a.values.sum()) - expected) / abs(expected))
    assert errors[-1] < 2e-3, errors
    assert errors[-1] < errors[0], errors


def test_integrated_gradients_region_target_equals_captum_on_the_region_score():
    net = make_net(3, segmentation=True)
    image, x = inputs(3)
    region = np.zeros(image.shape, bool)
    region[2:5, 3:7, 4:8] = True
    ours = explain(net, image, "integrated_gradients", target=1, region=region, steps=16)
    ref = IntegratedGradients(region_forward(net, region, 1)).attribute(x, n_steps=16)[0, 0].detach().numpy()
    np.testing.assert_allclose(ours.values, ref, rtol=1e-4, atol=1e-7)
    assert ours.target["task"] == "segmentation" and ours.target["region_source"] == "given"
    assert abs(ours.checks["completeness"]["relative_delta"]) < 0.05


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("relu", [True, False])
def test_grad_cam_equals_captum_layer_grad_cam_upsampled(dim, relu):
    net = make_net(dim)
    image, x = inputs(dim)
    ours = explain(net, image, "grad_cam", target=1, layer="features.4", relu=relu)
    cam = LayerGradCam(net, net.features[4]).attribute(x, target=1, relu_attributions=relu)
    mode = "bilinear" if dim == 2 else "trilinear"
    ref = LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode=mode)[0, 0].detach().numpy()
    np.testing.assert_allclose(ours.values, ref, rtol=1e-5, atol=1e-9)
    assert ours.checks["layer"] == "features.4"


def test_grad_cam_finds_the_last_spatial_layer_by_itself(net3d):
    image, _ = inputs(3)
    a = explain(net3d, image, "grad_cam", target=0)
    assert a.checks["layer"] == "features.4"


def test_grad_cam_keeps_raw_values_not_rescaled(net3d):
    image, _ = inputs(3)
    a = explain(net3d, image, "grad_cam", target=0, relu=False)
    assert a.values.min() < 0 < a.values.max()  # signed, not clipped or min-max scaled to [0, 1]


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("window, stride", [(3, 2), (4, 3), (5, 5)])
def test_occlusion_equals_captum(dim, window, stride):
    net = make_net(dim)
    image, x = inputs(dim)
    ours = explain(net, image, "occlusion", target=2, window=window, stride=stride, baseline="zeros", memory_budget_mb=1)
    ref = Occlusion(net).attribute(x, sliding_window_shapes=(1,) + (window,) * dim, strides=(1,) + (stride,) * dim, target=2, baselines=0.0)
    np.testing.assert_allclose(ours.values, ref[0, 0].detach().numpy(), rtol=1e-4, atol=1e-7)


def test_occlusion_per_axis_window_and_region_target_equal_captum():
    net = make_net(3, segmentation=True)
    image, x = inputs(3)
    region = np.zeros(image.shape, bool)
    region[1:6, 2:8, 3:9] = True
    ours = explain(net, image, "occlusion", target=2, region=region, window=(2, 3, 4), stride=(1, 2, 3), baseline="mean")
    ref = Occlusion(region_forward(net, region, 2)).attribute(
        x, sliding_window_shapes=(1, 2, 3, 4), strides=(1, 1, 2, 3), baselines=float(x.mean())
    )
    # The region score sums 720 logits in float32: differences of 3e-7 are round-off.
    np.testing.assert_allclose(ours.values, ref[0, 0].detach().numpy(), rtol=1e-4, atol=1e-6)
