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


def conv_block_2d(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=False),
    )


@register_architecture("lesion_segmenter_3d")
class LesionSegmenter3D(nn.Module):
    """A tiny two-level 3D U-Net with BatchNorm: ``(N, 1, z, y, x)`` to ``(N, n_classes, z, y, x)`` logits.

    Takes any grid size: the decoder upsamples (trilinear) to the size of
    each skip connection, so sizes need not be multiples of 4. ``dec1`` (the
    full-resolution decoder block before the 1x1 head) is the layer the
    sample spec names for Grad-CAM; ``dec2`` (1/2 resolution) gives a coarser
    map whose positive part spreads along white-matter borders.

    Parameters
    ----------
    in_channels : int
        Input channels.
    n_classes : int
        Output channels (background, lesion).
    width : int
        Channels at full resolution (doubled at each level).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(conv_block(in_channels, w), conv_block(w, w))
        self.enc2 = nn.Sequential(conv_block(w, 2 * w), conv_block(2 * w, 2 * w))
        self.bottleneck = nn.Sequential(conv_block(2 * w, 4 * w), conv_block(4 * w, 4 * w))
        self.dec2 = nn.Sequential(conv_block(6 * w, 2 * w), conv_block(2 * w, 2 * w))
        self.dec1 = nn.Sequential(conv_block(3 * w, w), conv_block(w, w))
        self.head = nn.Conv3d(w, n_classes, kernel_size=1)
        self.pool = nn.MaxPool3d(2, ceil_mode=True)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, size=like.shape[2:], mode="trilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d2 = self.dec2(torch.cat([self._up(b, e2), e2], dim=1))
        d1 = self.dec1(torch.cat([self._up(d2, e1), e1], dim=1))
        return self.head(d1)


@register_architecture("lesion_classifier_3d")
class LesionClassifier3D(nn.Module):
    """A 3D lesion detector with a classifier's output: lesion present or not.

    A :class:`LesionSegmenter3D` backbone scores each voxel (lesion minus
    background logit); the evidence is averaged over 3x3x3 neighbourhoods (so
    a lone noisy voxel cannot raise an alarm), and the volume's lesion logit
    is its maximum minus a calibrated ``threshold``; the no-lesion logit is 0
    (softmax gives ``sigmoid(max evidence - threshold)``). Max, not mean: a
    lesion of a few voxels is a small part of the brain and an average would
    dilute it away. The class activation methods read the backbone's
    full-resolution decoder block (``cam_layer = "backbone.dec1"``): there
    Grad-CAM, Grad-CAM++ and Score-CAM all peak on the lesion, while on the
    half-resolution block (``dec2``) Grad-CAM puts an eighth of its mass on
    the volume's edges and Grad-CAM++ and Score-CAM peak over 10 cm away
    (measured in ``sample_models/lesion_classifier_3d.md``); on the
    bottleneck (1/4 resolution) the averaged gradients weight channels that
    fire along the midline. CAM proper, which needs an average-pooling head,
    does not apply.

    Parameters
    ----------
    in_channels : int
        Input channels.
    n_classes : int
        Must be 2 (no lesion, lesion).
    width : int
        Channels of the backbone at full resolution.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        if n_classes != 2:
            raise ValueError("LesionClassifier3D is a two-class detector (no lesion, lesion)")
        self.backbone = LesionSegmenter3D(in_channels, 2, width)
        self.smooth = nn.AvgPool3d(3, stride=1, padding=1, count_include_pad=False)
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.register_buffer("threshold", torch.zeros(()))

    def evidence_map(self, x: torch.Tensor) -> torch.Tensor:
        """Smoothed lesion evidence per voxel, ``(N, 1, z, y, x)``, before the threshold."""
        logits = self.backbone(x)
        return self.smooth(logits[:, 1:2] - logits[:, 0:1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lesion = self.pool(self.evidence_map(x)).flatten(1) - self.threshold
        return torch.cat([torch.zeros_like(lesion), lesion], dim=1)


@register_architecture("lesion_classifier_2d")
class LesionClassifier2D(nn.Module):
    """A small 2D CNN on axial slices: four conv blocks, global average pooling and a linear head.

    The global-average-pooling head makes it CAM-able; ``features`` ends at
    1/4 of the input resolution, where Grad-CAM reads (``cam_layer =
    "features.5"``), as in :class:`LesionClassifier3D`.

    Parameters
    ----------
    in_channels : int
        Input channels.
    n_classes : int
        Output classes (no lesion, lesion).
    width : int
        Channels of the first block (doubled twice).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block_2d(in_channels, width),
            nn.MaxPool2d(2),
            conv_block_2d(width, 2 * width),
            nn.MaxPool2d(2),
            conv_block_2d(2 * width, 4 * width),
            conv_block_2d(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_architecture("small_classifier_3d")
class SmallClassifier3D(nn.Module):
    """A plain small 3D CNN: three conv blocks (two max-pools), global max pooling and a linear log-odds head.

    The architecture of the shortcut sample model (``shortcut_classifier_3d.json``):
    nothing in it is a shortcut, the training data are (a marker outside the
    head goes with the label; ``sample_models/train_shortcut_classifier.py``).
    As in :class:`LesionClassifier3D`, the output is ``(no lesion, lesion)``
    logits with the first fixed at 0, so the lesion logit is the log-odds a
    map explains (a free pair of logits can move together, and then a map of
    one of them shows evidence for neither class).

    Parameters
    ----------
    in_channels : int
        Input channels.
    n_classes : int
        Must be 2 (no lesion, lesion).
    width : int
        Channels of the first block (doubled once).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 4) -> None:
        super().__init__()
        if n_classes != 2:
            raise ValueError("SmallClassifier3D is a two-class detector (no lesion, lesion)")
        self.features = nn.Sequential(
            conv_block(in_channels, width),
            nn.MaxPool3d(2, ceil_mode=True),
            conv_block(width, 2 * width),
            nn.MaxPool3d(2, ceil_mode=True),
            conv_block(2 * width, 2 * width),
        )
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.classifier = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lesion = self.classifier(self.pool(self.features(x)).flatten(1))
        return torch.cat([torch.zeros_like(lesion), lesion], dim=1)
