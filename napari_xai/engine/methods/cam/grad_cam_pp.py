"""Grad-CAM++: feature maps weighted by positive gradients with the paper's closed-form weights.

**Grad-CAM++** (Chattopadhyay et al. 2018, review ref. [66]): feature maps
weighted by ``sum_u alpha_k(u) relu(dS/dA_k(u))`` with the paper's
closed-form ``alpha = g² / (2 g² + sum_u A g³)`` (first-order gradients
only, as MONAI and pytorch-grad-cam). The paper's exponential output
multiplies all weights by ``exp(S)``; that constant factor is left out (it
overflows for region sums of a segmentation network).

Tests check it against MONAI's ``GradCAMpp``.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch

from ...progress import Progress
from ...registry import MethodSpec, register_method
from ..toolkit.context import MethodContext
from ..toolkit.layers import LAYER_PARAM, activation_and_gradient, find_cam_layer
from ..toolkit.params import RELU
from ..toolkit.resample import upsample
from .cam import CAM


def _grad_cam_pp(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    yield Progress(0, 1, f"Grad-CAM++ on layer {name}")
    if ctx.windows is not None:  # the carrying windows' layer voxels stand for the layer (methods/windowed_model.py)
        cam = ctx.windows.grad_cam_pp(ctx.model.get_layer(name), params["relu"])
        yield Progress(1, 1, "Grad-CAM++: done")
        return cam.cpu().numpy()
    act, grad, _ = activation_and_gradient(ctx, name)
    act, grad = act.double(), grad.double()
    axes = tuple(range(2, act.ndim))
    g2, g3 = grad.pow(2), grad.pow(3)
    denom = 2 * g2 + (act * g3).sum(dim=axes, keepdim=True)
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = g2 / denom
    weights = (alpha * torch.relu(grad)).sum(dim=axes, keepdim=True)
    cam = (weights * act).sum(dim=1, keepdim=True)
    if params["relu"]:
        cam = torch.relu(cam)
    yield Progress(1, 1, "Grad-CAM++: done")
    return upsample(cam.float(), ctx.spatial_shape)[0, 0].cpu().numpy()


GRAD_CAM_PP = register_method(
    MethodSpec(
        name="grad_cam_pp",
        title="Grad-CAM++",
        family="class activation",
        reference="Chattopadhyay A, Sarkar A, Howlader P, Balasubramanian VN. Grad-CAM++: Improved Visual Explanations for "
        "Deep Convolutional Networks. WACV 2018 (review ref. [66]).",
        summary="Grad-CAM with per-voxel weights of positive gradients: better coverage of several instances of a class.",
        needs=frozenset({"gradients", "layer"}),
        sign="signed",
        params=(LAYER_PARAM, RELU),
        run=_grad_cam_pp,
        one_pass=True,
        sign_param="relu",
    )
)
