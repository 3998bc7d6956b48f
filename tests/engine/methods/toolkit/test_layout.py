"""The memory-layout trial of many-pass runs (``toolkit/layout.py``): same maps, the user's model untouched, a safe fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_xai.engine import explain
from napari_xai.engine.methods.toolkit import layout
from tests.conftest import make_net, random_volume


@pytest.fixture
def always_channels_last(monkeypatch):
    """Keep channels-last whenever it agrees, however long it takes, so the tests do not depend on timing."""
    monkeypatch.setattr(layout, "FASTER_BY", float("inf"))


def no_trial(monkeypatch) -> None:
    monkeypatch.setattr(layout, "TRIAL_MIN_PASSES", 10**9)


def rise(net, volume, **kw):
    return explain(net, volume, "rise", target=1, n_masks=64, grid=3, **kw)


def state(net: nn.Module) -> dict[str, tuple]:
    return {k: (v.data_ptr(), v.stride(), v.detach().clone()) for k, v in net.state_dict().items()}


def test_a_channels_last_run_gives_the_default_layouts_map_and_leaves_the_model_alone(always_channels_last, monkeypatch):
    net, vol = make_net(3), random_volume((12, 13, 11))
    before = state(net)
    fast = rise(net, vol)
    assert fast.checks["layout"]["layout"] == "channels_last"
    assert fast.checks["layout"]["max_score_difference"] < 1e-4
    after = state(net)
    for k, (ptr, stride, value) in before.items():
        assert after[k][0] == ptr and after[k][1] == stride and torch.equal(after[k][2], value), k
    no_trial(monkeypatch)
    plain = rise(make_net(3), vol)
    assert "layout" not in plain.checks
    span = float(np.ptp(plain.values))
    np.testing.assert_allclose(fast.values, plain.values, rtol=0, atol=1e-5 * span)


def test_the_choice_is_kept_for_the_network_and_made_again_when_its_weights_change(always_channels_last, monkeypatch):
    net, vol = make_net(3), random_volume((12, 13, 11))
    first = rise(net, vol)
    second = rise(net, vol)
    assert second.checks["layout"]["decided"] == "by an earlier run"
    np.testing.assert_array_equal(first.values, second.values)
    other_size = rise(net, random_volume((14, 12, 10)))  # a scan of another size: the same copy, no new trial
    assert other_size.checks["layout"]["decided"] == "by an earlier run"
    with torch.no_grad():
        net.head.weight.mul_(-1.0)  # in place: the cached copy holds the old weights and must not be used
    changed = rise(net, vol)
    assert "decided" not in changed.checks["layout"]
    no_trial(monkeypatch)
    reference = rise(net, vol)
    span = float(np.ptp(reference.values))
    np.testing.assert_allclose(changed.values, reference.values, rtol=0, atol=1e-5 * span)
    assert np.corrcoef(changed.values.ravel(), first.values.ravel())[0, 1] < 0  # the new weights' map, not the old one's


class FlattensWithView(nn.Module):
    """A classifier whose head flattens with ``.view``, which a channels-last tensor refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.head = nn.Linear(2 * 12 * 13 * 11, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).view(x.shape[0], -1))


class LayoutDependent(nn.Module):
    """A network whose output depends on its weights' layout (a contrived bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Conv3d(3, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3, 4))
        return y + 1.0 if not self.conv[1].weight.is_contiguous() else y


@pytest.mark.parametrize("net, why", [(FlattensWithView(), "failed: RuntimeError"), (LayoutDependent(), "gave other scores")])
def test_a_network_that_fails_or_differs_in_channels_last_keeps_its_own_layout(net, why, always_channels_last, monkeypatch):
    vol = random_volume((12, 13, 11))
    got = rise(net.eval(), vol)
    assert got.checks["layout"]["layout"] == "contiguous"
    assert got.checks["layout"]["channels_last"] == why
    no_trial(monkeypatch)
    np.testing.assert_array_equal(got.values, rise(net, vol).values)


def test_short_runs_and_networks_without_convolutions_run_no_trial(always_channels_last):
    vol = random_volume((12, 13, 11))
    net = make_net(3)
    forwards = [0]
    net.register_forward_pre_hook(lambda _m, inputs: forwards.__setitem__(0, forwards[0] + int(inputs[0].shape[0])))
    short = explain(net, vol, "rise", target=1, n_masks=layout.TRIAL_MIN_PASSES - 1, grid=3)
    assert "layout" not in short.checks
    assert forwards[0] == layout.TRIAL_MIN_PASSES  # the pass on the scan and one per mask, nothing more
    assert not layout.can_use_channels_last(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.zeros(1, 1, 2, 2, 1))
    assert not layout.can_use_channels_last(make_net(2), torch.zeros(1, 1, 4, 4, 4))  # 2D convolutions, a 3D input
    assert layout.can_use_channels_last(make_net(2), torch.zeros(1, 1, 4, 4))


def test_a_network_too_large_to_copy_keeps_its_own_layout(always_channels_last, monkeypatch):
    net, vol = make_net(3), random_volume((12, 13, 11))
    monkeypatch.setattr(layout, "MAX_COPY_BYTES", sum(p.numel() * 4 for p in net.parameters()) - 1)
    assert not layout.can_use_channels_last(net, torch.zeros(1, 1, 12, 13, 11))
    assert "layout" not in rise(net, vol).checks


@pytest.mark.parametrize("estimated", [False, True])
def test_gradient_passes_take_the_forward_choice_and_give_the_same_map(estimated, always_channels_last, monkeypatch):
    from napari_xai.engine import estimate

    vol, net = random_volume((12, 13, 11)), make_net(3)
    if estimated:  # as the hosts do: the estimate makes the choice, and the run finds it
        assert estimate(net, vol, "integrated_gradients", steps=20).fits
        assert layout.cached_choice(net, torch.zeros(1, 1, 12, 13, 11)).module is not None
    fast = explain(net, vol, "integrated_gradients", target=1, steps=20)
    assert fast.checks["layout"]["layout"] == "channels_last" and fast.checks["layout"]["gradients"] == "channels_last"
    few = explain(net, vol, "integrated_gradients", target=1, steps=layout.TRIAL_MIN_GRADIENT_PASSES - 1)
    assert "layout" not in few.checks
    monkeypatch.setattr(layout, "TRIAL_MIN_GRADIENT_PASSES", 10**9)
    plain = explain(make_net(3), vol, "integrated_gradients", target=1, steps=20)
    assert "layout" not in plain.checks
    span = float(np.ptp(plain.values))
    np.testing.assert_allclose(fast.values, plain.values, rtol=0, atol=1e-5 * span)
    assert fast.checks["completeness"]["relative_delta"] == pytest.approx(plain.checks["completeness"]["relative_delta"], abs=1e-4)


class GradientDependsOnLayout(torch.autograd.Function):
    """Identity forward; a backward pass that changes with the layout of a layer's weights (a contrived bug)."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.contiguous = weight.is_contiguous()
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return (g if ctx.contiguous else g * 2.0), None


class OddBackward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Conv3d(3, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return GradientDependsOnLayout.apply(self.conv(x), self.conv[1].weight).mean(dim=(2, 3, 4))


def test_a_copy_whose_gradients_differ_is_dropped_after_its_check(always_channels_last, monkeypatch):
    from napari_xai.engine import estimate

    vol, net = random_volume((12, 13, 11)), OddBackward().eval()
    default = layout.TRIAL_MIN_GRADIENT_PASSES
    monkeypatch.setattr(layout, "TRIAL_MIN_GRADIENT_PASSES", 10**9)
    reference = explain(net, vol, "integrated_gradients", target=1, steps=20)
    monkeypatch.setattr(layout, "TRIAL_MIN_GRADIENT_PASSES", default)
    got = explain(net, vol, "integrated_gradients", target=1, steps=20)
    assert got.checks["layout"]["layout"] == "channels_last"  # the forward passes agree ...
    assert got.checks["layout"]["gradients"] == "contiguous: channels-last gave other gradients"  # ... the gradients do not
    np.testing.assert_allclose(got.values, reference.values, rtol=0, atol=1e-6 * float(np.ptp(reference.values)))


class DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Conv3d(3, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> dict:
        return {"logits": self.conv(x).mean(dim=(2, 3, 4))}


def test_the_estimates_probe_of_a_network_without_one_output_tensor_keeps_its_layout(always_channels_last):
    net, probe = DictOutput().eval(), torch.zeros(1, 1, 12, 13, 11)
    choice = layout.layout_for_probe(net, probe)
    assert choice.module is None and choice.record["channels_last"] == "not tried: the output is not one tensor"
    assert layout.cached_choice(net, probe) is choice  # not tried again
