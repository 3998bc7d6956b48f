"""Score-CAM against a hand computation of its definition on a small 3D network.

Wang H, Wang Z, Du M, Yang F, Zhang Z, Ding S, Mardziel P, Hu X. Score-CAM:
Score-Weighted Visual Explanations for Convolutional Neural Networks. CVPR
Workshops 2020: each channel ``A_k`` of the layer is upsampled to the input
and min-max normalised, ``H_k = s(Up(A_k))``; its weight is the increase of
confidence ``C_k = f(X o H_k) - f(X_b)`` (here with a constant baseline
``X_b``: the masked input is ``X_b + (X - X_b) H_k``, which is ``X o H_k`` for
the zero baseline); the map is ``ReLU(sum_k C_k A_k)`` on the layer's grid,
upsampled to the input. Algorithm 1 of the paper normalises the weights with
a softmax over channels (``softmax=True``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_xai.engine import explain


class TinyNet3D(nn.Module):
    """Two convolutions with zero padding, max pooling between, global average pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv1 = nn.Conv3d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool3d(2)
        self.conv2 = nn.Conv3d(4, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv2(self.pool(torch.relu(self.conv1(x)))))
        return self.head(a.mean(dim=(2, 3, 4)))


def hand_score_cam(net: nn.Module, x: torch.Tensor, target: int, baseline: float, softmax: bool) -> np.ndarray:
    store = {}
    handle = net.act.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out.detach()))
    with torch.no_grad():
        net(x)
    handle.remove()
    a = store["a"][0]  # (K, 4, 5, 6)
    xb = torch.full_like(x, baseline)
    with torch.no_grad():
        base_score = float(net(xb)[0, target])
        weights = []
        for k in range(a.shape[0]):
            up = F.interpolate(a[None, k : k + 1], size=x.shape[2:], mode="trilinear", align_corners=False)
            span = float(up.max() - up.min())
            h = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            weights.append(float(net(xb + (x - xb) * h)[0, target]) - base_score)
    w = torch.tensor(weights, dtype=torch.float64)
    if softmax:
        w = torch.softmax(w, dim=0)
    cam = torch.relu((w.float()[:, None, None, None] * a).sum(dim=0))
    return F.interpolate(cam[None, None], size=x.shape[2:], mode="trilinear", align_corners=False)[0, 0].numpy()


@pytest.mark.parametrize("baseline, softmax", [("zeros", False), ("zeros", True), ("min", False)])
def test_score_cam_matches_the_definition(baseline, softmax):
    net = TinyNet3D().eval()
    x = torch.randn(1, 1, 8, 10, 12, generator=torch.Generator().manual_seed(3))
    target = 0
    expected = hand_score_cam(net, x, target, 0.0 if baseline == "zeros" else float(x.min()), softmax)
    a = explain(net, x[0, 0].numpy(), "score_cam", target=target, layer="act", baseline=baseline, softmax=softmax)
    assert a.checks["layer"] == "act"
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(a.values, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
