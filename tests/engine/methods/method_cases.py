"""The networks, images and targets the backpropagation, CAM and activation-maximisation tests share.

Each method runs on a 2D and a 3D network with BatchNorm, for a class target
and a region target (:func:`case`); :class:`Scored` wraps a network as the
one-output model Captum and MONAI take.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from tests.conftest import make_net


MAP_METHODS = [
    "input_x_gradient",
    "guided_backprop",
    "deconvnet",
    "smoothgrad",
    "smoothgrad_sq",
    "vargrad",
    "deeplift",
    "deeplift_shap",
    "lrp",
    "cam",
    "grad_cam_pp",
    "score_cam",
    "guided_grad_cam",
]


STOCHASTIC = {"smoothgrad": {"n_samples": 4}, "smoothgrad_sq": {"n_samples": 4}, "vargrad": {"n_samples": 4}, "deeplift_shap": {"n_baselines": 3}}


#: A random network can leave Score-CAM's ReLU'd map all zero (every channel's weighted sum negative): keep the sign.
#: Likewise the ReLU'd Grad-CAM inside Guided Grad-CAM on the segmentation head: read the last feature layer instead.
EXTRA = {**STOCHASTIC, "score_cam": {"relu": False}, "guided_grad_cam": {"layer": "features.4"}}


SHAPES = {2: (16, 18), 3: (8, 10, 9)}


def image(dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=SHAPES[dim]).astype(np.float32)


def region(dim: int) -> np.ndarray:
    r = np.zeros(SHAPES[dim], dtype=bool)
    r[tuple(slice(2, 6) for _ in range(dim))] = True
    return r


def case(dim: int, task: str, **net_kwargs):
    """``(net, image, explain kwargs, score function of a batch)`` for a class or a region target."""
    net = make_net(dim, segmentation=task == "region", **net_kwargs)
    kwargs = {"region": region(dim)} if task == "region" else {}
    mask = torch.from_numpy(region(dim))
    if task == "region":
        return net, image(dim), kwargs, lambda out: (out[:, 1] * mask).flatten(1).sum(1)
    return net, image(dim), kwargs, lambda out: out[:, 1]


class Scored(nn.Module):
    """The network with the target score as its one output, for Captum / MONAI."""

    def __init__(self, net: nn.Module, score) -> None:
        super().__init__()
        self.net, self.score = net, score
        self.eval()  # MONAI restores the wrapper's training flag after its pass: keep it (and the net) in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.net(x))[:, None]


def tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img)[None, None]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def hooks_left(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in net.modules())
