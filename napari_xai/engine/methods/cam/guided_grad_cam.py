"""Guided Grad-CAM: Guided Backprop times the upsampled Grad-CAM.

**Guided Grad-CAM** (Selvaraju et al. 2017, review ref. [62]): Guided
Backprop times the (ReLU'd) Grad-CAM, upsampled. Signed like Guided
Backprop. Captum's ``GuidedGradCam`` upsamples with nearest neighbours by
default; here the Grad-CAM factor is upsampled like every CAM (bilinear /
trilinear), so the two agree exactly when the layer has the input's grid.

Tests check it against Captum's ``GuidedGradCam``.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np

from ...progress import Progress
from ...registry import MethodSpec, register_method
from ..backprop.modified_backward import relu_rule_gradients
from .grad_cam import grad_cam_map
from ..toolkit.context import MethodContext
from ..toolkit.layers import LAYER_PARAM, activation_and_gradient, find_cam_layer
from ..toolkit.model_copy import copy_model
from ..toolkit.resample import upsample
from .cam import CAM


def _guided_grad_cam(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    yield Progress(0, 2, f"Guided Grad-CAM on layer {name}")
    act, grad, _ = activation_and_gradient(ctx, name)
    cam = upsample(grad_cam_map(act, grad, relu=True), ctx.spatial_shape)
    yield Progress(1, 2, "Guided Grad-CAM: guided backprop")
    guided = relu_rule_gradients(ctx, copy_model(ctx, "Guided Grad-CAM"), ctx.x, "guided")
    yield Progress(2, 2, "Guided Grad-CAM: done")
    return (guided * cam)[0].cpu().numpy()


GUIDED_GRAD_CAM = register_method(
    MethodSpec(
        name="guided_grad_cam",
        title="Guided Grad-CAM",
        family="class activation",
        reference="Selvaraju RR, Cogswell M, Das A, Vedantam R, Parikh D, Batra D. Grad-CAM: Visual Explanations From Deep "
        "Networks via Gradient-Based Localization. ICCV 2017 (review ref. [62]).",
        summary="Guided Backprop times the upsampled Grad-CAM: fine detail, class-specific.",
        needs=frozenset({"gradients", "layer"}),
        sign="signed",
        params=(LAYER_PARAM,),
        run=_guided_grad_cam,
        one_pass=True,
    )
)
