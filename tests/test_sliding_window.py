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
