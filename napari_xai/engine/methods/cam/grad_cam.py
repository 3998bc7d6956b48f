"""Grad-CAM: a layer's feature maps weighted by the spatial mean of their gradients.

Selvaraju et al. 2017 (review ref. [62]). Hand-written for 3D and for
segmentation targets; tests check it against Captum's ``LayerGradCam`` with
``LayerAttribution.interpolate``.

Values are kept raw: the weighted sum of feature maps (after the paper's
ReLU, which ``relu=False`` switches off to keep the signed map), upsampled to
the input grid (bilinear in 2D, trilinear in 3D). Nothing is min-max scaled
or inverted (MONAI's CAM classes invert by default; pytorch-grad-cam clips and
rescales). Display is the host's choice: a sequential colour map for the
non-negative map, a diverging one with symmetric limits for the signed map.
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


def grad_cam_map(act: torch.Tensor, grad: torch.Tensor, relu: bool) -> torch.Tensor:
    """Feature maps weighted by their spatially averaged gradients, summed: ``(N, 1, *layer_grid)``."""
    alpha = grad.mean(dim=tuple(range(2, grad.ndim)), keepdim=True)
    cam = (alpha * act).sum(dim=1, keepdim=True)
    return torch.relu(cam) if relu else cam


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    yield Progress(0, 1, f"Grad-CAM on layer {name}")
    if ctx.windows is not None:  # activations stitched from the windows (methods/windowed_model.py)
        cam = ctx.windows.grad_cam(ctx.model.get_layer(name), params["relu"])
        yield Progress(1, 1, "Grad-CAM: done")
        return cam.cpu().numpy()
    act, grad, _ = activation_and_gradient(ctx, name)
    cam = upsample(grad_cam_map(act, grad, params["relu"]), ctx.spatial_shape)
    yield Progress(1, 1, "Grad-CAM: done")
    return cam[0, 0].cpu().numpy()


SPEC = register_method(
    MethodSpec(
        name="grad_cam",
        title="Grad-CAM",
        family="class activation",
        reference="Selvaraju RR, Cogswell M, Das A, Vedantam R, Parikh D, Batra D. Grad-CAM: Visual Explanations "
        "From Deep Networks via Gradient-Based Localization. ICCV 2017 (review ref. [62]).",
        summary="A layer's feature maps weighted by their mean gradient, upsampled to the scan: coarse, class-specific, one backward pass.",
        needs=frozenset({"gradients", "layer"}),
        sign="signed",
        params=(
            LAYER_PARAM,
            RELU,
        ),
        run=_run,
        one_pass=True,
        sign_param="relu",
    )
)
