"""Upsampling a coarse map (a CAM layer's grid, a low-resolution mask) onto the model input's grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``(N, C, *grid)`` to ``(N, C, *size)``: linear in 1D, bilinear in 2D, trilinear in 3D (``align_corners=False``).

    A map already on ``size`` is returned as it is. This is the interpolation
    Captum's ``LayerAttribution.interpolate`` and MONAI's CAM classes use, so
    class activation maps agree with theirs.
    """
    if tuple(t.shape[2:]) == tuple(size):
        return t
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)
