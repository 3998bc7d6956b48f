"""Sliding-window models: the whole-volume output as MONAI defines it, and attribution window by window."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from napari_xai.engine.models.spec import ModelSpec
from napari_xai.engine.sliding_window import plan_windows, sliding_window_forward

monai_inferers = pytest.importorskip("monai.inferers")


def fcn(seed: int = 0, out_channels: int = 2) -> nn.Module:
    """A small fully convolutional segmentation network (receptive field 7 voxels)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, out_channels, 3, padding=1)
    ).eval()


SETTINGS = [
    ((20, 17, 9), {"roi_size": [8, 8, 12], "overlap": 0.25, "mode": "gaussian", "sigma_scale": 0.2}),
    ((16, 16, 16), {"roi_size": [16, 8, 6], "overlap": 0.5, "padding_mode": "reflect"}),
    ((10, 23, 13), {"roi_size": [12, 12, 12], "overlap": [0.1, 0.3, 0.6], "mode": "gaussian", "padding_mode": "replicate", "sw_batch_size": 3}),
    ((12, 12, 12), {"roi_size": [12, 12, 12]}),
]


@pytest.mark.parametrize("shape, sw", SETTINGS)
def test_forward_is_monais_sliding_window_inference(shape, sw):
    net = fcn()
    settings = ModelSpec(sliding_window=sw).sliding_window
    x = torch.randn(1, 1, *shape)
    with torch.no_grad():
        ref = monai_inferers.sliding_window_inference(
            x, tuple(sw["roi_size"]), settings["sw_batch_size"], net, overlap=settings["overlap"], mode=settings["mode"],
            sigma_scale=settings["sigma_scale"], padding_mode=settings["padding_mode"], cval=settings["cval"],
        )
        for batch in (1, 4):  # the result does not depend on how many windows run together
            got = sliding_window_forward(net, x, plan_windows(shape, settings), batch=batch)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- attribution window by window

SW = {"roi_size": [8, 8, 8], "overlap": 0.5, "mode": "gaussian", "sigma_scale": 0.25}
SHAPE = (14, 13, 12)


class StridedFCN(nn.Module):
    """Fully convolutional, with a layer at half resolution (for Grad-CAM on a coarser grid)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv3d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.head = nn.Conv3d(6 + 4, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        return self.head(torch.cat([self.up(self.down(a)), a], dim=1))


class MonaiWhole(nn.Module):
    """The reference: the network run through MONAI's own sliding_window_inference, differentiable end to end."""

    def __init__(self, net: nn.Module, settings: dict) -> None:
        super().__init__()
        self.net, self.s = net, settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.s
        return monai_inferers.sliding_window_inference(
            x, tuple(s["roi_size"]), 2, self.net, overlap=s["overlap"], mode=s["mode"], sigma_scale=s["sigma_scale"],
            padding_mode=s["padding_mode"], cval=s["cval"],
        )


def _case(sw=SW, shape=SHAPE, seed=0):
    import numpy as np

    settings = ModelSpec(sliding_window=sw).sliding_window
    net = StridedFCN(seed).eval()
    vol = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    region = np.zeros(shape, bool)
    region[5:9, 4:7, 6:10] = True  # spans several windows, not all
    return net, vol, region, settings


def _pair(method, params, sw=SW, shape=SHAPE, reduce="sum"):
    """The map window by window, and through the whole sliding-window forward (MONAI's), same engine method."""
    from napari_xai.engine import explain

    net, vol, region, settings = _case(sw, shape)
    windowed = explain(net, vol, method, 1, region=region, reduce=reduce, spec={"task": "segmentation", "sliding_window": sw}, **params)
    whole = explain(MonaiWhole(net, settings), vol, method, 1, region=region, reduce=reduce, spec={"task": "segmentation"}, **params)
    return windowed, whole


@pytest.mark.parametrize(
    "method, params",
    [
        ("vanilla_gradient", {"absolute": False}),
        ("input_x_gradient", {}),
        ("integrated_gradients", {"steps": 6}),
        ("occlusion", {"window": 4, "stride": 3}),
    ],
)
def test_windowed_attribution_equals_the_whole_sliding_window_forward(method, params):
    windowed, whole = _pair(method, params)
    assert windowed.target["score"] == pytest.approx(whole.target["score"], rel=1e-5)
    scale = float(abs(whole.values).max())
    assert scale > 0
    torch.testing.assert_close(torch.from_numpy(windowed.values), torch.from_numpy(whole.values), rtol=1e-4, atol=1e-5 * scale)


def test_windowed_gradient_through_padding_and_mean():
    sw = {"roi_size": [8, 16, 8], "overlap": 0.25, "padding_mode": "reflect"}  # y is padded (13 < 16), reflected
    windowed, whole = _pair("vanilla_gradient", {"absolute": False}, sw=sw, reduce="mean")
    torch.testing.assert_close(torch.from_numpy(windowed.values), torch.from_numpy(whole.values), rtol=1e-4, atol=1e-7)


def test_vanilla_gradient_is_autograd_through_monais_function():
    from napari_xai.engine import explain

    net, vol, region, settings = _case()
    x = torch.from_numpy(vol)[None, None].requires_grad_(True)
    score = (MonaiWhole(net, settings)(x)[0, 1] * torch.from_numpy(region)).sum()
    (ref,) = torch.autograd.grad(score, x)
    got = explain(net, vol, "vanilla_gradient", 1, region=region, spec={"task": "segmentation", "sliding_window": SW}, absolute=False)
    torch.testing.assert_close(torch.from_numpy(got.values), ref[0, 0], rtol=1e-4, atol=1e-7)
    assert got.target["score"] == pytest.approx(float(score), rel=1e-5)


def _channel_weights(method: str, acts: list, grads: tuple) -> torch.Tensor:
    """Grad-CAM's or Grad-CAM++'s channel weights from every window's layer activation and gradient (the reference)."""
    axes = (0, 2, 3, 4)
    if method == "grad_cam":
        n_layer = 1.0
        for n, a, r in zip(SHAPE, acts[0].shape[2:], SW["roi_size"]):
            n_layer *= n * a / r
        return sum(g.sum(dim=axes) for g in grads) / n_layer
    denom = sum((a.double() * g.double() ** 3).sum(dim=axes) for a, g in zip(acts, grads)).view(1, -1, 1, 1, 1)
    weights = 0
    for g in grads:
        g = g.double()
        d = 2 * g**2 + denom
        weights = weights + (g**2 / torch.where(d != 0, d, torch.ones_like(d)) * torch.relu(g)).sum(dim=axes)
    return weights.float()


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp"])
@pytest.mark.parametrize("relu", [True, False])
def test_windowed_cams_equal_autograd_with_stitched_activations(method, relu):
    """Channel weights from autograd through MONAI's whole forward, activations stitched by MONAI's own blending."""
    from napari_xai.engine import explain
    from napari_xai.engine.methods.cam.grad_cam import upsample

    net, vol, region, settings = _case()
    x = torch.from_numpy(vol)[None, None]
    acts = []
    handle = net.down.register_forward_hook(lambda _m, _i, out: acts.append(out))
    try:
        score = (MonaiWhole(net, settings)(x.requires_grad_(True))[0, 1] * torch.from_numpy(region)).sum()
    finally:
        handle.remove()
    grads = torch.autograd.grad(score, acts)
    alpha = _channel_weights(method, acts, grads)

    def upsampled_activation(w: torch.Tensor) -> torch.Tensor:
        return upsample(net.down(net.stem(w)), tuple(SW["roi_size"]))

    with torch.no_grad():
        stitched = MonaiWhole(upsampled_activation, settings)(x.detach())  # MONAI blends the layer's activations
    ref = (alpha.view(1, -1, 1, 1, 1) * stitched).sum(dim=1)[0]
    ref = torch.relu(ref) if relu else ref
    got = explain(net, vol, method, 1, region=region, spec={"task": "segmentation", "sliding_window": SW}, layer="down", relu=relu)
    assert float(ref.abs().max()) > 0
    torch.testing.assert_close(torch.from_numpy(got.values), ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp"])
def test_cam_of_one_window_is_the_plain_cam(method):
    from napari_xai.engine import explain

    net, vol, region, _ = _case(shape=(8, 8, 8))
    region = region[:8, :8, :8]
    spec = {"task": "segmentation"}
    plain = explain(net, vol[:8, :8, :8], method, 1, region=region, spec=spec, layer="down", relu=False)
    windowed = explain(net, vol[:8, :8, :8], method, 1, region=region, spec={**spec, "sliding_window": SW}, layer="down", relu=False)
    assert float(abs(plain.values).max()) > 0
    torch.testing.assert_close(torch.from_numpy(windowed.values), torch.from_numpy(plain.values), rtol=1e-4, atol=1e-6)


def test_only_the_carrying_windows_are_back_propagated():
    from napari_xai.engine import explain
    from napari_xai.engine.sliding_window import plan_windows as plan_of

    net, vol, region, settings = _case()
    calls = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            calls.append((x.shape[0], torch.is_grad_enabled()))
            return self.net(x)

    corner = region * False
    corner[1:3, 1:3, 1:3] = True  # inside the first window only (windows start at 0 and 4 on every axis)
    explain(Counting(), vol, "vanilla_gradient", 1, region=corner, spec={"task": "segmentation", "sliding_window": SW})
    assert plan_of(SHAPE, settings).n_windows == 18
    assert sum(n for n, g in calls if g) == 1  # one window back-propagated
    # without gradients: one to resolve the target, one probe measuring a window's memory; the other 17 never ran
    assert sum(n for n, g in calls if not g) == 2


def test_methods_that_need_the_whole_network_refuse_on_sliding_windows():
    from napari_xai.engine import MethodError, explain

    net, vol, region, _ = _case()
    with pytest.raises(MethodError, match="window by window"):
        explain(net, vol, "guided_backprop", 1, region=region, spec={"task": "segmentation", "sliding_window": SW})


# ---------------------------------------------------------------------- the memory budget

def test_a_single_gradient_pass_over_the_budget_is_stopped():
    import numpy as np

    from napari_xai.engine import MemoryBudgetError, explain
    from tests.conftest import make_net

    vol = np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32)
    with pytest.raises(MemoryBudgetError, match="memory budget of 1 MiB"):
        explain(make_net(3), vol, "vanilla_gradient", memory_budget_mb=1)
    with pytest.raises(MemoryBudgetError, match="memory budget of 1 MiB"):  # Grad-CAM keeps what lies above its layer
        explain(make_net(3), vol, "grad_cam", memory_budget_mb=1, layer="features.0")
    assert explain(make_net(3), vol, "vanilla_gradient", memory_budget_mb=64).values.shape == vol.shape


def test_grad_cam_keeps_nothing_for_the_backward_below_its_layer():
    import numpy as np

    from napari_xai.engine import explain
    from tests.conftest import make_net

    # the first layers' activations (6 x 40^3 floats, 1.5 MiB each) would exceed 1 MiB if they were saved
    vol = np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32)
    net = make_net(3)
    low = explain(net, vol, "grad_cam", memory_budget_mb=1, layer="features.4")
    high = explain(net, vol, "grad_cam", memory_budget_mb=512, layer="features.4")
    np.testing.assert_array_equal(low.values, high.values)


def test_a_window_over_the_budget_is_refused_with_the_fix():
    from napari_xai.engine import MemoryBudgetError, explain

    sw = {"roi_size": [32, 32, 32]}
    net, vol, region, _ = _case(sw=sw, shape=(40, 40, 40))
    with pytest.raises(MemoryBudgetError, match="roi_size") as err:
        explain(net, vol, "vanilla_gradient", 1, region=region, spec={"task": "segmentation", "sliding_window": sw}, memory_budget_mb=1)
    assert "over the memory budget of 1 MiB" in str(err.value)


def test_estimate_counts_windows():
    from napari_xai.engine import estimate
    from napari_xai.engine.sliding_window import plan_windows as plan_of

    net, vol, region, settings = _case()
    corner = region * False
    corner[1:3, 1:3, 1:3] = True
    spec = {"task": "segmentation", "sliding_window": SW}
    est = estimate(net, vol, "vanilla_gradient", 1, region=corner, spec=spec)
    assert est.unit == "window" and (est.forward_passes, est.backward_passes) == (2, 1)  # one window resolves, one back-propagates
    est = estimate(net, vol, "grad_cam", 1, region=corner, spec=spec, layer="down")
    assert est.forward_passes == 2 + plan_of(SHAPE, settings).n_windows  # the stitched activations need every window


def test_a_gradient_pass_under_the_budget_frees_the_graph_it_did_not_traverse():
    """A gradient taken at a layer leaves the graph below it untraversed; the budget's hook must not keep it alive.

    An in-place LeakyReLU (as in nnU-Net's U-Nets) saves its result for backward. Had the budget's pack hook
    kept that tensor itself, with its grad_fn, the saved tensor and its node would hold each other through
    C++ (no gc.collect() frees them): every Grad-CAM window group's graph stayed alive (measured on an
    nnU-Net-style PlainConvUNet at 128^3, 1.5 GiB per group, peak 3.7 GiB against a 2 GiB budget).
    """
    import gc
    import weakref

    from napari_xai.engine.budget import gradient_budget

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.LeakyReLU(inplace=True), nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 1))
    kept = []
    handle = net[0].register_forward_hook(lambda _m, _i, out: kept.append(weakref.ref(out)))
    try:
        with torch.enable_grad(), gradient_budget(64, net):
            layer = {}
            probe = net[2].register_forward_hook(lambda _m, _i, out: layer.__setitem__("a", out))
            out = net(torch.randn(1, 1, 8, 8, 8, requires_grad=True))
            probe.remove()
            (grad,) = torch.autograd.grad(out[:, 1].sum(), layer["a"])
        assert grad.abs().sum() > 0
        del out, layer, grad
        gc.collect()
    finally:
        handle.remove()
    assert kept and all(ref() is None for ref in kept)


def test_windowed_grad_cam_keeps_no_window_graph_alive():
    """After a windowed Grad-CAM, no window's activations below the layer are left alive (they grew per group)."""
    import gc
    import weakref

    import numpy as np

    from napari_xai.engine import explain

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.LeakyReLU(inplace=True), nn.Conv3d(4, 4, 3, padding=1), nn.LeakyReLU(inplace=True), nn.Conv3d(4, 2, 1)
    ).eval()
    kept = []

    def record(_m, _i, out):
        if out.requires_grad:  # the layer passes' windows, not the inference passes
            kept.append(weakref.ref(out))

    vol = np.random.default_rng(0).normal(size=(12, 12, 12)).astype(np.float32)
    region = np.zeros(vol.shape, bool)
    region[4:8, 4:8, 4:8] = True
    handle = net[0].register_forward_hook(record)
    try:
        att = explain(net, vol, "grad_cam", 1, region=region, spec={"task": "segmentation", "sliding_window": {"roi_size": [8, 8, 8]}}, layer="2")
    finally:
        handle.remove()
    gc.collect()
    assert float(np.abs(att.values).max()) > 0
    assert kept and all(ref() is None for ref in kept)
