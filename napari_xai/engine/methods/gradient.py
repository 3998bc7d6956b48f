"""Vanilla gradient (saliency map): the gradient of the target score w.r.t. the input.

Simonyan, Vedaldi & Zisserman 2014 (review ref. [43]). Hand-written rather
than Captum's ``Saliency`` so that it honours segmentation targets and the
engine's progress/cancel contract; tests check it against ``Saliency``.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np

from ..progress import Progress
from ..registry import MethodSpec, ParamSpec, register_method
from ._context import MethodContext


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    yield Progress(0, 1, "gradient: backward pass")
    grad, _ = ctx.gradients(ctx.x)
    yield Progress(1, 1, "gradient: done")
    out = grad[0].cpu().numpy()
    return np.abs(out) if params["absolute"] else out


SPEC = register_method(
    MethodSpec(
        name="vanilla_gradient",
        title="Vanilla Gradient",
        family="backpropagation",
        reference="Simonyan K, Vedaldi A, Zisserman A. Deep Inside Convolutional Networks: Visualising Image "
        "Classification Models and Saliency Maps. ICLR Workshop 2014 (review ref. [43]).",
        summary="Gradient of the target score w.r.t. each voxel: how sensitive the output is to it. One backward pass.",
        needs=frozenset({"gradients"}),
        sign="signed",
        model_agnostic=False,
        params=(
            ParamSpec("absolute", bool, True, "Absolute value of the gradient, as in the paper; off keeps its sign."),
        ),
        run=_run,
        one_pass=True,
        sign_param="absolute",
    )
)
