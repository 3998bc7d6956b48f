"""Shared fixtures: small networks with BatchNorm, oblique anisotropic volumes, model files."""

from __future__ import annotations

import os

# napari (through qtpy) must use the binding pytest-qt uses (pyproject's qt_api):
# PyQt6, as the `napari` extra installs; qtpy would try PyQt5 first where both are installed.
os.environ.setdefault("QT_API", "pyqt6")

import numpy as np  # noqa: E402
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn

from napari_xai.engine import Geometry, ScanImage

# Hosts ask before a run estimated over 30 s; on a loaded test machine any run
# may be estimated that long, so tests never ask unless one sets the threshold.
os.environ.setdefault("NAPARI_XAI_CONFIRM_SECONDS", "inf")


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A proper rotation from Euler angles in degrees."""
    a, b, c = np.deg2rad([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


#: An oblique, anisotropic geometry (x, y, z order, as SimpleITK).
OBLIQUE = Geometry(
    origin=(-12.5, 40.25, 7.75),
    spacing=(0.7, 1.3, 2.9),
    direction=tuple(rotation(20, -15, 30).ravel().tolist()),
)


def oblique_sitk(shape_zyx=(7, 9, 11), seed=0) -> sitk.Image:
    """A random float32 volume on the oblique, anisotropic geometry."""
    arr = np.random.default_rng(seed).random(shape_zyx).astype(np.float32)
    return OBLIQUE.apply_to(sitk.GetImageFromArray(arr))


@pytest.fixture
def oblique_image() -> sitk.Image:
    return oblique_sitk()


class SmallNet(nn.Module):
    """Conv, BatchNorm, ReLU, conv, ReLU; a linear head on global average pooling, or a 1x1 conv head (segmentation)."""

    def __init__(self, dim: int = 3, n_classes: int = 3, segmentation: bool = False, in_channels: int = 1) -> None:
        super().__init__()
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dim == 3 else nn.BatchNorm2d
        pool = nn.AdaptiveAvgPool3d if dim == 3 else nn.AdaptiveAvgPool2d
        self.features = nn.Sequential(
            conv(in_channels, 6, 3, padding=1), norm(6), nn.ReLU(), conv(6, 6, 3, padding=1), nn.ReLU()
        )
        self.segmentation = segmentation
        self.pool = pool(1)
        self.head = conv(6, n_classes, 1) if segmentation else nn.Linear(6, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(f) if self.segmentation else self.head(self.pool(f).flatten(1))


def make_net(dim: int = 3, segmentation: bool = False, seed: int = 0, **kwargs) -> SmallNet:
    """A SmallNet with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = SmallNet(dim, segmentation=segmentation, **kwargs)
    norm = net.features[1]
    with torch.no_grad():
        norm.running_mean.uniform_(-0.2, 0.2)
        norm.running_var.uniform_(0.5, 1.5)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.3, 0.3)
    return net.eval()


@pytest.fixture
def net3d() -> SmallNet:
    return make_net(3)


@pytest.fixture
def net2d() -> SmallNet:
    return make_net(2)


def random_volume(shape=(10, 12, 11), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def scan_on(geometry: Geometry, arr: np.ndarray) -> ScanImage:
    return ScanImage(arr, geometry, None, "test")
