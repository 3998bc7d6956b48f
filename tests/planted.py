"""Planted evidence: a network whose output depends only on a known box of the input.

Every method must put most of its positive attribution inside the box (grown
by the network's receptive-field margin). A method that fails on evidence
this plain has a bug.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

#: Receptive-field margin of two 3x3 convolutions.
MARGIN = 2


class PlantedEvidenceNet(nn.Module):
    """Conv-BN-ReLU-conv-ReLU features, masked to ``box``; a GAP + linear head or a 1x1-conv segmentation head.

    Kernels are positive averages, so brighter voxels in the box raise class 1
    and lower class 0; nothing outside the box (plus the margin) can change the output.
    """

    def __init__(self, shape: tuple[int, ...], box: tuple[slice, ...], segmentation: bool = False) -> None:
        super().__init__()
        dim = len(shape)
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dim == 3 else nn.BatchNorm2d
        self.features = nn.Sequential(conv(1, 4, 3, padding=1), norm(4), nn.ReLU(), conv(4, 4, 3, padding=1), nn.ReLU())
        mask = torch.zeros((1, 1) + tuple(shape))
        mask[(0, 0) + tuple(box)] = 1.0
        self.register_buffer("mask", mask)
        self.segmentation = segmentation
        with torch.no_grad():
            for m in self.features:
                if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                    m.weight.fill_(1.0 / m.weight[0].numel())
                    m.weight.mul_(torch.linspace(0.8, 1.2, m.weight.shape[0]).view(-1, *([1] * (m.weight.ndim - 1))))
                    m.bias.fill_(0.0)
            bn = self.features[1]
            bn.running_mean.fill_(0.1)
            bn.running_var.fill_(0.8)
            bn.weight.fill_(1.1)
            bn.bias.fill_(0.0)
        self.pool = nn.AdaptiveAvgPool3d(1) if dim == 3 else nn.AdaptiveAvgPool2d(1)
        self.head = conv(4, 2, 1) if segmentation else nn.Linear(4, 2)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[1] = 1.0
            self.head.weight[0] = -1.0
            self.head.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x) * self.mask
        if self.segmentation:
            return self.head(f)
        return self.head(self.pool(f).flatten(1)) * (self.mask[0, 0].numel() / self.mask.sum())


def planted_case(dim: int, segmentation: bool = False, seed: int = 0):
    """``(net, image, box, region)``: a bright blob in the box on a weak noise background.

    ``region`` is the box as a boolean mask (the segmentation target region).
    """
    shape = (12, 14, 16) if dim == 3 else (24, 28)
    box = tuple(slice(s // 4, s // 4 + max(3, s // 3)) for s in shape)
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 0.1, size=shape).astype(np.float32)
    image[box] += 2.0
    region = np.zeros(shape, dtype=bool)
    region[box] = True
    return PlantedEvidenceNet(shape, box, segmentation), image, box, region


def positive_mass_in_box(values: np.ndarray, box: tuple[slice, ...], margin: int = MARGIN) -> float:
    """Share of the map's positive mass inside the box grown by ``margin`` voxels."""
    grown = tuple(slice(max(0, s.start - margin), s.stop + margin) for s in box)
    pos = np.clip(values, 0, None)
    total = float(pos.sum())
    return float(pos[grown].sum()) / total if total > 0 else 0.0
