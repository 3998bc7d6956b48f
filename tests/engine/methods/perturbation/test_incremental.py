"""Incremental occlusion (cached unoccluded pass, receptive-field replay) gives Captum's map.

The networks here are sized so that occlusion boxes stay smaller than the
feature maps for several layers (on tiny inputs every box covers the whole
map at once and the replay is a plain batched pass), and cover every kind of
op the replay handles on a box, plus ones it runs in full.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import Occlusion

from napari_xai.engine import explain
from napari_xai.engine.methods.perturbation import incremental as _incremental


def _randomise_norms(net: nn.Module) -> nn.Module:
    torch.manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net.eval()


def plain_cnn(dim: int = 3, c: int = 4) -> nn.Module:
    """Conv / BatchNorm / ReLU / max pool (ceil mode) / average pool / strided dilated conv, then a global head."""
    conv, bn = (nn.Conv3d, nn.BatchNorm3d) if dim == 3 else (nn.Conv2d, nn.BatchNorm2d)
    mp, ap, gp = (nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d) if dim == 3 else (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    torch.manual_seed(0)
    net = nn.Sequential(
        conv(1, c, 3, padding=1, bias=False), bn(c), nn.ReLU(inplace=True),
        conv(c, c, 3, padding=2, dilation=2), nn.LeakyReLU(0.1),
        mp(2, ceil_mode=True),
        conv(c, 2 * c, 3, padding=1, groups=1), bn(2 * c), nn.ReLU(), nn.Dropout(0.5),
        ap(3, stride=2, padding=1),
        conv(2 * c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
        gp(1), nn.Flatten(), nn.Linear(2 * c, 3),
    )
    return _randomise_norms(net)


class Branchy(nn.Module):
    """Custom forward: dense concatenation, channel slicing, a residual add, an in-place ReLU, a broadcast gate,
    interpolation and instance norm (run in full once the global gate has changed every voxel), a max-pooled global head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv3d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.grow = nn.Conv3d(4, 2, 3, padding=1)
        self.down = nn.Conv3d(6, 6, 2, stride=2)
        self.gate = nn.Linear(6, 6)
        self.norm = nn.InstanceNorm3d(6)
        self.head = nn.Conv3d(6, 2, 1)
        self.offset = nn.Parameter(torch.randn(1, 6, 1, 1, 1) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn(self.stem(x)), inplace=True)
        d = torch.cat([a, self.grow(a)], dim=1)
        d = d + self.offset
        d = d[:, :6] * 1.5 - d[:, :6] * 0.5
        g = self.down(d)
        gate = torch.sigmoid(self.gate(g.mean(dim=(2, 3, 4))))[:, :, None, None, None]
        g = g * gate
        up = F.interpolate(g, size=d.shape[2:], mode="trilinear", align_corners=False)
        y = self.head(self.norm(up) + d)
        return F.adaptive_max_pool3d(y, 1).flatten(1)


class ReadsValues(nn.Module):
    """A forward with a Python branch on a tensor value: not replayable."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv3d(1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if float(y.mean()) > 100:  # never true here, but the model reads a value
            y = -y
        return y.mean(dim=(2, 3, 4))


def _volume(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _captum(net, image, window, stride, target, baseline=0.0):
    x = torch.from_numpy(image)[None, None]
    dim = image.ndim
    w = window if isinstance(window, tuple) else (window,) * dim
    s = stride if isinstance(stride, tuple) else (stride,) * dim
    ref = Occlusion(net).attribute(x, sliding_window_shapes=(1,) + w, strides=(1,) + s, target=target, baselines=baseline)
    return ref[0, 0].detach().numpy()


@pytest.mark.parametrize("window, stride", [(6, 6), (6, 5), ((4, 6, 8), (4, 5, 8))])
def test_plain_cnn_incremental_equals_captum(window, stride):
    net = plain_cnn()
    image = _volume((24, 28, 26))
    a = explain(net, image, "occlusion", target=1, window=window, stride=stride)
    info = a.checks["occlusion"]
    assert info["incremental"] and info["verification_error"] < 1e-5
    # the global head is what runs in full; every convolution, norm, activation and pool replays on a box
    assert set(info["ops_run_in_full"]) <= {"adaptive_avg_pool3d", "TensorBase.flatten", "linear"}
    np.testing.assert_allclose(a.values, _captum(net, image, window, stride, 1), rtol=1e-4, atol=1e-6)


def test_plain_cnn_2d_incremental_equals_full_passes():
    net = plain_cnn(dim=2)
    image = _volume((40, 36))
    a = explain(net, image, "occlusion", target=2, window=6, stride=5)
    b = explain(net, image, "occlusion", target=2, window=6, stride=5, incremental=False)
    assert a.checks["occlusion"]["incremental"] and not b.checks["occlusion"]["incremental"]
    np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.values, _captum(net, image, 6, 5, 2), rtol=1e-4, atol=1e-6)


def test_custom_forward_incremental_equals_captum_and_names_ops_run_in_full():
    net = Branchy().eval()
    image = _volume((16, 20, 18), seed=4)
    a = explain(net, image, "occlusion", target=0, window=4, stride=4, baseline="mean")
    info = a.checks["occlusion"]
    assert info["incremental"]
    assert "TensorBase.mean" in info["ops_run_in_full"]  # the global gate; after it every op runs on full maps
    np.testing.assert_allclose(a.values, _captum(net, image, 4, 4, 0, float(image.mean())), rtol=1e-4, atol=1e-6)


def test_replay_of_single_boxes_equals_forward_passes():
    net = Branchy().eval()
    x = torch.from_numpy(_volume((16, 20, 18), seed=5))[None, None]
    tape, why, _ = _incremental.record(net, x)
    assert why is None
    boxes = [((0, 4), (0, 4), (0, 4)), ((12, 16), (16, 20), (14, 18)), ((6, 10), (3, 7), (9, 13))]
    crop = torch.full((3, 1, 4, 4, 4), 2.5)
    got = tape.replay(boxes, crop)
    want = []
    for box in boxes:
        xx = x.clone()
        xx[(0, slice(None)) + tuple(slice(a, b) for a, b in box)] = 2.5
        with torch.no_grad():
            want.append(net(xx))
    torch.testing.assert_close(got, torch.cat(want), rtol=1e-5, atol=1e-6)
    assert torch.equal(x, torch.from_numpy(_volume((16, 20, 18), seed=5))[None, None])  # the input is untouched


def test_model_reading_input_values_falls_back_to_full_passes():
    net = ReadsValues().eval()
    image = _volume((10, 12, 11))
    a = explain(net, image, "occlusion", target=1, window=3, stride=3)
    info = a.checks["occlusion"]
    assert not info["incremental"] and "reads values" in info["reason"]
    np.testing.assert_allclose(a.values, _captum(net, image, 3, 3, 1), rtol=1e-4, atol=1e-6)


def test_sample_segmenter_region_target_incremental_equals_full():
    from napari_xai.samples import load_lesion_segmenter, load_sample_lesion_mask, load_sample_scan

    model, scan = load_lesion_segmenter(), load_sample_scan()
    region = load_sample_lesion_mask().array > 0
    kw = dict(target=1, region=region, window=(27, 33, 27), stride=(27, 33, 27))
    a = explain(model, scan, "occlusion", **kw)
    b = explain(model, scan, "occlusion", incremental=False, **kw)
    assert a.checks["occlusion"]["incremental"]
    np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-5 * np.abs(b.values).max())
