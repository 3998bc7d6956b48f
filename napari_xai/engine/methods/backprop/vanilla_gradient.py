"""Vanilla gradient (saliency map): the gradient of the target score w.r.t. the input.

Simonyan, Vedaldi & Zisserman 2014 (review ref. [43]). Hand-written rather
than Captum's ``Saliency`` so that it honours segmentation targets and the
engine's progress/cancel contract; tests check it against ``Saliency``.
"""

from __future__ import annotations

from typing import Any

from ...registry import MethodSpec, ParamSpec, register_method
from ..toolkit.context import MethodContext
from ..toolkit.recipes import single_pass_run


def _batch_map(ctx: MethodContext, params: dict[str, Any]):
    """The raw, signed gradient of each input of a batch (one pass each)."""
    return (lambda xb: ctx.gradients(xb)[0]), 1


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
        params=(
            ParamSpec("absolute", bool, True, "Absolute value of the gradient, as in the paper; off keeps its sign."),
        ),
        run=single_pass_run(_batch_map, "gradient", absolute="absolute"),
        one_pass=True,
        sign_param="absolute",
        batch_map=_batch_map,
    )
)
