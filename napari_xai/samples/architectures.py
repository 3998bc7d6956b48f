"""Architectures of the sample models, registered by name for weights files."""

from __future__ import annotations

import torch
import torch.nn as nn

from napari_xai.engine.models.architectures import register_architecture


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=False),
    )


@register_architecture("lesion_classifier_3d")
class LesionClassifier3D(nn.Module):
    """A small 3D CNN: four conv blocks, global average pooling and a linear head.

    The global-average-pooling head makes it a CAM-able network (issue 3's
    CAM needs one); ``features`` ends at 1/4 of the input resolution, which
    is where Grad-CAM reads (``cam_layer = "features.5"``).

    Parameters
    ----------
    in_channels : int
        Input channels.
    n_classes : int
        Output classes.
    width : int
        Channels of the first block (doubled twice).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, width),
            nn.MaxPool3d(2),
            conv_block(width, 2 * width),
            nn.MaxPool3d(2),
            conv_block(2 * width, 4 * width),
            conv_block(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
