"""The cost estimate before a run: passes per method, a timed probe, peak memory, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai.engine import Estimate, MethodError, XAIError, estimate, explain
from napari_xai.engine.estimate import RemainingTime, confirm_seconds, format_seconds, time_left
from tests.conftest import make_net, random_volume


@pytest.mark.parametrize(
    "method, params, passes",
    [
        ("vanilla_gradient", {}, (1, 1)),  # one-pass: the target comes from the method's own pass
        ("integrated_gradients", {"steps": 8}, (10, 8)),
        ("smoothgrad", {"n_samples": 5}, (6, 5)),
        ("smoothgrad", {"n_samples": 5, "base": "integrated_gradients", "ig_steps": 4}, (21, 20)),
        ("occlusion", {"window": 4, "stride": 2}, (1 + 4 * 5 * 5, 0)),  # (10, 12, 11): 4 x 5 x 5 windows
        ("rise", {"n_masks": 40}, (41, 0)),
        ("grad_cam", {}, (2, 1)),  # one pass, plus the pass that finds the last spatial layer (no cam_layer)
        ("grad_cam", {"layer": "features.2"}, (1, 1)),
    ],
)
def test_passes_per_method(method, params, passes):
    est = estimate(make_net(3), random_volume(), method, **params)
    assert isinstance(est, Estimate)
    assert (est.forward_passes, est.backward_passes) == passes
    assert est.unit == "volume" and est.model_shape == (10, 12, 11) and est.fits and est.problem is None
    # seconds come from the probe: forward-only passes at the forward time, the others at forward + backward
    expected = (est.forward_passes - est.backward_passes) * est.forward_seconds + est.backward_passes * est.backward_seconds
    assert est.seconds == pytest.approx(expected)
    assert est.forward_seconds > 0 and est.peak_mb > est.model_mb > 0
    assert est.peak_mb <= est.budget_mb + est.model_mb + 1  # the working set is bounded by the budget


def test_occlusion_count_matches_the_run():
    net, vol = make_net(3), random_volume()
    est = estimate(net, vol, "occlusion", window=(3, 4, 5), stride=(2, 3, 4))
    att = explain(net, vol, "occlusion", window=(3, 4, 5), stride=(2, 3, 4))
    from napari_xai.engine.methods.perturbation.occlusion import window_starts

    assert est.forward_passes == 1 + len(window_starts((10, 12, 11), (3, 4, 5), (2, 3, 4)))
    assert att.values.shape == vol.shape


def test_score_cam_counts_one_pass_per_channel_of_the_layer():
    net = make_net(3)
    est = estimate(net, random_volume(), "score_cam")
    channels = net.features[0].out_channels  # the last spatial layer keeps the first convolution's channels
    # the target's pass, the pass that finds the layer, the activation and baseline passes, one per channel
    assert est.forward_passes == 1 + 1 + 2 + channels


def test_a_pass_over_the_budget_is_reported_not_run():
    est = estimate(make_net(3), random_volume((40, 40, 40)), "vanilla_gradient", memory_budget_mb=1)
    assert not est.fits
    assert "over the memory budget of 1 MiB" in est.problem and "Fix:" in est.problem
    assert est.describe().startswith("will not run")


def test_bad_input_raises_as_a_run_would():
    with pytest.raises(MethodError, match="no parameter"):
        estimate(make_net(3), random_volume(), "occlusion", windw=3)
    with pytest.raises(MethodError, match="no method"):
        estimate(make_net(3), random_volume(), "no_such_method")


_SOFT = np.full((10, 12, 11), 0.5, dtype=np.float32)
_EMPTY = np.zeros((10, 12, 11), dtype=bool)


@pytest.mark.parametrize(
    "method, kwargs",
    [
        ("occlusion", {"windw": 3}),  # misspelt parameter
        ("occlusion", {"window": -1}),  # out of range
        ("no_such_method", {}),
        ("vanilla_gradient", {"memory_budget_mb": float("nan")}),
        ("vanilla_gradient", {"memory_budget_mb": True}),
        ("vanilla_gradient", {"memory_budget_mb": 0}),
        ("vanilla_gradient", {"region": _SOFT}),  # a soft mask is no region
        ("vanilla_gradient", {"region": _EMPTY}),
        ("vanilla_gradient", {"region": np.ones((3, 3), dtype=bool)}),  # another grid
        ("vanilla_gradient", {"channel_axis": 7}),
    ],
)
def test_estimate_and_explain_refuse_alike(method, kwargs):
    """One prepare step serves both: the same bad input gets the same error and message from each."""
    errors = []
    for call in (estimate, explain):
        with pytest.raises(XAIError) as info:
            call(make_net(3), random_volume(), method, target=1, **kwargs)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


def test_estimate_leaves_the_model_as_it_was():
    net = make_net(3).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    estimate(net, random_volume(), "integrated_gradients", steps=4)
    assert net.training
    after = net.state_dict()
    assert all(torch_equal(before[k], after[k]) for k in before)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_time_left_and_formatting(monkeypatch):
    assert time_left(10.0, 0.25) == pytest.approx(30.0)
    assert time_left(10.0, 1.0) == 0.0 and time_left(0.0, 0.5) is None and time_left(5.0, 0.0) is None
    assert format_seconds(12.4) == "12 s" and format_seconds(150) == "2.5 min" and format_seconds(7200) == "2.0 h"
    clock = RemainingTime()
    assert clock.text(0.0) == ""
    assert clock.text(0.5).startswith("about ") and clock.text(0.5).endswith(" left")
    monkeypatch.setenv("NAPARI_XAI_CONFIRM_SECONDS", "12")
    assert confirm_seconds() == 12.0
    est = estimate(make_net(3), np.zeros((6, 6, 6), np.float32), "vanilla_gradient")
    est.seconds = 13.0
    assert est.needs_confirmation
    est.seconds = 11.0
    assert not est.needs_confirmation


def _count_conv_samples(monkeypatch, weight_shape: tuple[int, ...]) -> list[int]:
    """Samples through ``conv3d`` calls with this weight shape (network passes, counted without a clock); one-item list."""
    import torch.nn.functional as F

    count, real = [0], F.conv3d

    def counted(x, weight, *args, **kwargs):
        if tuple(weight.shape) == tuple(weight_shape):
            count[0] += int(x.shape[0])
        return real(x, weight, *args, **kwargs)

    monkeypatch.setattr(F, "conv3d", counted)  # nn.Conv3d looks it up at each call, in the backward's rule passes too
    return count


@pytest.mark.parametrize(
    "method, params",
    [
        ("lrp", {"composite": "epsilon"}),
        ("lrp", {"composite": "epsilon_plus"}),  # the default: alpha-beta (beta 0) re-runs each convolution twice
        ("lrp", {"composite": "epsilon_alpha2_beta1"}),
        ("lrp", {"composite": "epsilon_gamma_box"}),
        ("deeplift", {}),
        ("deeplift_shap", {"n_baselines": 5}),  # each reference runs forward, then forward + backward
        ("integrated_gradients", {"steps": 6}),
    ],
)
def test_counted_forward_passes_match_the_run(method, params, monkeypatch):
    """The estimate's forward passes are the network passes the run makes (counted at the second convolution)."""
    net, vol = make_net(3), random_volume()
    est = estimate(net, vol, method, **params)
    count = _count_conv_samples(monkeypatch, net.features[3].weight.shape)
    explain(net, vol, method, **params)
    # batched methods also run the planner's one activation-measuring pass, which the estimate leaves out
    assert est.forward_passes <= count[0] <= est.forward_passes + 1


def test_forward_only_methods_are_timed_at_the_batch_the_time_slice_allows():
    """A pass that fills the run's time slice runs one sample per batch: the estimate uses that cost, not a batch's."""
    import time

    import torch

    from napari_xai.engine.budget import PAIR_SECONDS, SLICE_SECONDS

    class Slow(torch.nn.Module):
        """A classifier whose every call takes at least 0.45 s, whatever the batch (so a batch of 8 costs 0.06 s a sample)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = make_net(3)

        def forward(self, x):
            time.sleep(0.45)
            return self.net(x)

    # one pass fills the slice and two would take longer than a pair may: the run's batches hold one sample
    assert SLICE_SECONDS < 0.45 and PAIR_SECONDS < 2 * 0.45
    est = estimate(Slow(), random_volume(), "rise", n_masks=30)
    assert est.forward_seconds >= 0.45
    assert est.seconds >= 30 * 0.45


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp"])
@pytest.mark.parametrize("layer", ["features.4", ""])
def test_class_activation_maps_run_one_network_pass(method, layer, monkeypatch):
    """A named layer (parameter or spec) is checked on the method's own pass, not on a probe pass of its own."""
    net, vol = make_net(3), random_volume()
    count = _count_conv_samples(monkeypatch, net.features[3].weight.shape)
    explain(net, vol, method, layer=layer, spec={"cam_layer": "features.4"} if not layer else None)
    assert count[0] == 1
