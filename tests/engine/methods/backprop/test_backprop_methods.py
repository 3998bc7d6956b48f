"""Backpropagation methods against Captum where the definitions agree, and against their axioms.

DeepLIFT completeness, LRP conservation, SmoothGrad's noise tunnel on the
same noise as Captum's; modified backward passes on a copy of the model.
"""

from __future__ import annotations

import copy

import captum.attr as captum_attr
import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_xai.engine import explain
from napari_xai.engine.errors import MethodError
from napari_xai.engine.methods.backprop.deeplift import reference_distribution
from napari_xai.engine.methods.backprop.smoothgrad import noise_sigma, noisy_inputs

from tests.conftest import make_net
from tests.engine.methods.method_cases import Scored, case, corr, hooks_left, image, region, tensor


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
def test_one_pass_methods_match_captum(dim, task):
    net, img, kwargs, score = case(dim, task)
    x = tensor(img)
    scored = Scored(net, score)
    expected = {
        "input_x_gradient": captum_attr.InputXGradient(scored).attribute(x, target=0),
        "guided_backprop": captum_attr.GuidedBackprop(scored).attribute(x, target=0),
        "deconvnet": captum_attr.Deconvolution(scored).attribute(x, target=0),
        "deeplift": captum_attr.DeepLift(scored).attribute(x, baselines=torch.zeros_like(x), target=0),
    }
    for method, ref in expected.items():
        got = explain(net, img, method, target=1, **kwargs).values
        np.testing.assert_allclose(got, ref[0, 0].detach().numpy(), rtol=1e-4, atol=1e-5 * float(ref.abs().max()), err_msg=method)


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
def test_deeplift_shap_matches_captum_and_is_complete(dim, task):
    net, img, kwargs, score = case(dim, task)
    x = tensor(img)
    a = explain(net, img, "deeplift_shap", target=1, n_baselines=3, seed=3, **kwargs)
    refs = reference_distribution(x, "mixed", 3, 3)
    ref = captum_attr.DeepLiftShap(Scored(net, score)).attribute(x, baselines=refs, target=0)[0, 0].detach().numpy()
    np.testing.assert_allclose(a.values, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    with torch.no_grad():
        expected = float(score(net(x))[0] - score(net(refs)).mean())
    assert a.values.astype(np.float64).sum() == pytest.approx(expected, rel=1e-4, abs=1e-4)
    # f(x) - mean f(ref) can be tiny next to the scores themselves (0.004 against region sums of
    # order 1 here), so the relative delta measures float32 round-off, which depends on how the
    # references were batched; bound the delta against the scale of the score instead.
    assert abs(a.checks["completeness"]["delta"]) < 1e-4 * max(1.0, abs(a.target["score"]))


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("baseline", ["zeros", "mean"])
def test_deeplift_completeness(dim, task, baseline):
    net, img, kwargs, score = case(dim, task)
    a = explain(net, img, "deeplift", target=1, baseline=baseline, **kwargs)
    x = tensor(img)
    with torch.no_grad():
        ref = torch.full_like(x, 0.0 if baseline == "zeros" else float(x.mean()))
        expected = float(score(net(x))[0] - score(net(ref))[0])
    assert a.values.astype(np.float64).sum() == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert a.checks["completeness"]["relative_delta"] < 1e-4


def _smooth_reference(variant: str, maps: torch.Tensor) -> np.ndarray:
    maps = maps.double()
    if variant == "smoothgrad":
        return maps.mean(0)[0].numpy()
    if variant == "smoothgrad_sq":
        return (maps**2).mean(0)[0].numpy()
    return maps.var(0, unbiased=False)[0].numpy()


@pytest.mark.parametrize("variant", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("base", ["vanilla_gradient", "input_x_gradient", "integrated_gradients", "guided_backprop"])
@pytest.mark.parametrize("dim", [2, 3])
def test_smoothgrad_family_matches_captum_base_on_the_same_noise(variant, base, dim):
    """Same noisy inputs (seeded per sample) through Captum's base method, then mean / mean of squares / variance."""
    net, img, kwargs, score = case(dim, "region" if dim == 3 else "class")
    n, level, seed = 4, 0.2, 5
    a = explain(net, img, variant, target=1, base=base, n_samples=n, noise_level=level, seed=seed, ig_steps=8, **kwargs)
    x = tensor(img)
    noisy = noisy_inputs(x, noise_sigma(x, level), seed, range(n))
    scored = Scored(net, score)
    if base == "vanilla_gradient":
        maps = captum_attr.Saliency(scored).attribute(noisy, target=0, abs=False)
    elif base == "input_x_gradient":
        maps = captum_attr.InputXGradient(scored).attribute(noisy, target=0)
    elif base == "guided_backprop":
        maps = captum_attr.GuidedBackprop(scored).attribute(noisy, target=0)
    else:
        maps = captum_attr.IntegratedGradients(scored).attribute(noisy, target=0, n_steps=8, method="gausslegendre")
    ref = _smooth_reference(variant, maps.detach())
    assert corr(a.values, ref) >= 0.999
    np.testing.assert_allclose(a.values, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_smoothgrad_noise_level_zero_is_the_base_method():
    net, img, kwargs, _ = case(2, "class")
    a = explain(net, img, "smoothgrad", target=1, base="input_x_gradient", n_samples=3, noise_level=0.0)
    b = explain(net, img, "input_x_gradient", target=1)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-7)


def zero_bias_net(dim: int, segmentation: bool = False) -> nn.Module:
    """make_net with zero biases and a BatchNorm whose shift is zero (so the folded conv has no bias), scale non-trivial."""
    net = make_net(dim, segmentation=segmentation)
    with torch.no_grad():
        for m in net.modules():
            if getattr(m, "bias", None) is not None and not isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.bias.zero_()
        bn = net.features[1]
        bn.running_mean.zero_()
        bn.bias.zero_()
    return net


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
def test_lrp_epsilon_conserves_relevance_with_zero_biases(dim, task):
    net = zero_bias_net(dim, segmentation=task == "region")
    img = np.abs(image(dim))  # a score well away from zero
    kwargs = {"region": region(dim)} if task == "region" else {}
    a = explain(net, img, "lrp", target=1, composite="epsilon", epsilon=1e-9, **kwargs)
    assert a.values.astype(np.float64).sum() == pytest.approx(a.target["score"], rel=1e-4)
    assert a.checks["conservation"]["relative_delta"] < 1e-4
    assert a.checks["lrp"]["batchnorm_folded"] == 1


@pytest.mark.parametrize("dim", [2, 3])
def test_lrp_epsilon_equals_input_x_gradient_on_a_zero_bias_relu_net(dim):
    net = zero_bias_net(dim)
    img = image(dim)
    a = explain(net, img, "lrp", target=1, composite="epsilon", epsilon=1e-9).values
    b = explain(net, img, "input_x_gradient", target=1).values
    assert corr(a, b) >= 0.999
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(b).max())


def test_lrp_epsilon_matches_captum_lrp_in_2d():
    """Captum's LRP (2D layers only) with its default epsilon rule, on a zero-bias net (BatchNorm shift zero)."""
    net = zero_bias_net(2)
    img = image(2)
    ours = explain(net, img, "lrp", target=1, composite="epsilon", epsilon=1e-9).values
    ref = captum_attr.LRP(copy.deepcopy(net)).attribute(tensor(img), target=1)[0, 0].detach().numpy()
    assert corr(ours, ref) >= 0.99
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_lrp_epsilon_plus_matches_captum_alpha1_beta0_in_2d():
    """z+ (alpha1-beta0) on convolutions, epsilon on the rest; a non-negative image, where Captum's rule
    (which clamps weights only) and ours (which also splits inputs by sign) agree."""
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule

    net = zero_bias_net(2)
    img = np.abs(image(2))
    ours = explain(net, img, "lrp", target=1, composite="epsilon_plus").values
    ref_net = copy.deepcopy(net)
    for m in ref_net.modules():
        if isinstance(m, nn.Conv2d):
            m.rule = Alpha1_Beta0_Rule()
        elif isinstance(m, (nn.Linear, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)):
            m.rule = EpsilonRule(epsilon=1e-9)
    ref = captum_attr.LRP(ref_net).attribute(tensor(img), target=1)[0, 0].detach().numpy()
    assert corr(ours, ref) >= 0.9999
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
@pytest.mark.parametrize("dim", [2, 3])
def test_lrp_composites(composite, dim):
    net = zero_bias_net(dim)
    img = image(dim)
    a = explain(net, img, "lrp", target=1, composite=composite)
    rules = a.checks["lrp"]["rules"]
    assert rules["head"] == "epsilon"
    assert rules["features.0"] == {"epsilon_plus": "alpha1_beta0", "epsilon_gamma_box": "zbox", "epsilon_alpha2_beta1": "alpha2_beta1"}[composite]
    assert rules["features.3"] == {"epsilon_plus": "alpha1_beta0", "epsilon_gamma_box": "gamma", "epsilon_alpha2_beta1": "alpha2_beta1"}[composite]
    assert np.isfinite(a.values).all() and np.abs(a.values).max() > 0
    if composite == "epsilon_plus":  # alpha1-beta0 with zero biases conserves relevance too
        assert a.checks["conservation"]["relative_delta"] < 1e-3


def _lrp_by_hand(model: nn.Module, x: torch.Tensor, composite: str, k: int = 1) -> torch.Tensor:
    from napari_xai.engine.methods.backprop.lrp_rules import assign_rules, fold_batchnorm, rule_hooks

    clone = copy.deepcopy(model).eval()
    fold_batchnorm(clone)
    assigned = assign_rules(clone, x, composite, 1e-9, 0.25, float(x.min()), float(x.max()))
    with rule_hooks(assigned):
        xg = x.clone().requires_grad_(True)
        out = clone(xg)
        onehot = torch.zeros_like(out)
        onehot[:, k] = 1
        (rel,) = torch.autograd.grad(out, xg, onehot * out.detach())
    assert hooks_left(clone) == 0
    return rel


@pytest.mark.parametrize("dim", [1, 3])
def test_lrp_rules_conserve_through_pooling_and_unfolded_batchnorm(dim):
    conv = {1: nn.Conv1d, 3: nn.Conv3d}[dim]
    bn = {1: nn.BatchNorm1d, 3: nn.BatchNorm3d}[dim]
    maxpool = {1: nn.MaxPool1d, 3: nn.MaxPool3d}[dim]
    avgpool = {1: nn.AvgPool1d, 3: nn.AvgPool3d}[dim]
    gap = {1: nn.AdaptiveAvgPool1d, 3: nn.AdaptiveAvgPool3d}[dim]
    torch.manual_seed(0)
    model = nn.Sequential(
        conv(1, 4, 3, padding=1, bias=False), nn.ReLU(), bn(4), maxpool(2), conv(4, 4, 3, padding=1, bias=False), nn.ReLU(),
        avgpool(2), gap(1), nn.Flatten(), nn.Linear(4, 3, bias=False),
    )
    with torch.no_grad():  # BatchNorm after a ReLU (not foldable): zero shift so it adds no relevance
        model[2].weight.uniform_(0.5, 1.5)
        model[2].running_var.uniform_(0.5, 1.5)
        model[2].bias.zero_()
    model.eval()
    x = torch.rand((1, 1) + (8,) * dim)
    with torch.no_grad():
        score = float(model(x)[0, 1])
    for composite in ("epsilon", "epsilon_plus"):
        rel = _lrp_by_hand(model, x, composite)
        assert float(rel.double().sum()) == pytest.approx(score, rel=1e-4), composite


def test_inplace_relus_are_handled_on_the_copy_and_left_inplace_on_the_user_model():
    net, img, _, _ = case(2, "class")
    inplace = copy.deepcopy(net)
    for m in inplace.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    for method in ("guided_backprop", "deconvnet", "deeplift", "lrp"):
        a = explain(net, img, method, target=1).values
        b = explain(inplace, img, method, target=1).values
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=method)
    assert all(m.inplace for m in inplace.modules() if isinstance(m, nn.ReLU))


@pytest.mark.parametrize("method", ["guided_backprop", "deeplift", "lrp", "smoothgrad"])
def test_torchscript_models_get_a_clear_message_for_modified_backward_methods(method):
    net, img, _, _ = case(2, "class")
    scripted = torch.jit.script(net)
    if method == "smoothgrad":  # plain gradients work on TorchScript; the guided base needs hooks
        assert np.isfinite(explain(scripted, img, method, target=1, n_samples=2).values).all()
        method_kwargs = {"base": "guided_backprop", "n_samples": 2}
    else:
        method_kwargs = {}
    with pytest.raises(MethodError, match="TorchScript"):
        explain(scripted, img, method, target=1, **method_kwargs)


@pytest.mark.parametrize("dim", [2, 3])
def test_deeplift_max_pool_rule_matches_captum_and_keeps_completeness(dim):
    """The max-pool rule equals Captum's on conv -> max pool -> linear (exact). With a ReLU before the pooling,
    Captum's sum misses f(x) - f(x0) by ~0.3-4 % on these nets while ours keeps completeness, so there only
    completeness is asserted."""
    conv, bn, mp, gap = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d) if dim == 2 else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d)
    torch.manual_seed(0)
    img = image(dim)
    x = tensor(img)
    pooled = [s // 2 for s in img.shape]
    simple = nn.Sequential(conv(1, 2, 3, padding=1), mp(2), nn.Flatten(), nn.Linear(2 * int(np.prod(pooled)), 3)).eval()
    ours = explain(simple, img, "deeplift", target=1, baseline="mean")
    ref = captum_attr.DeepLift(copy.deepcopy(simple)).attribute(x, baselines=torch.full_like(x, float(x.mean())), target=1)[0, 0].detach().numpy()
    assert corr(ours.values, ref) >= 0.999
    np.testing.assert_allclose(ours.values, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())
    net = nn.Sequential(conv(1, 4, 3, padding=1), bn(4), nn.ReLU(), mp(2), conv(4, 4, 3, padding=1), nn.ReLU(), gap(1), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
    net.eval()
    for method, kwargs in (("deeplift", {"baseline": "mean"}), ("deeplift_shap", {"n_baselines": 3})):
        a = explain(net, img, method, target=1, **kwargs)
        assert a.checks["completeness"]["relative_delta"] < 1e-4, method
