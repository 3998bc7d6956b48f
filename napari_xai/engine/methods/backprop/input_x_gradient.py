"""Input x Gradient: the input times the gradient of the target score; one backward pass.

**Input x Gradient** (Shrikumar et al. 2016, review ref. [54]): the input
times the gradient of the target score. Signed: positive where the voxel's
intensity pushes the score up (for a linear model it is each voxel's exact
contribution relative to a zero image).

Hand-written rather than Captum's ``InputXGradient``: a few lines on top of
the engine's target score (which covers segmentation regions). Tests check it
against Captum (exact agreement).
"""

from __future__ import annotations

from typing import Any

from ...registry import MethodSpec, register_method
from ..toolkit.context import MethodContext
from ..toolkit.recipes import single_pass_run


def _input_x_gradient_map(ctx: MethodContext, params: dict[str, Any]):
    """Input x gradient of each input of a batch (one pass each)."""
    return (lambda xb: xb * ctx.gradients(xb)[0]), 1


INPUT_X_GRADIENT = register_method(
    MethodSpec(
        name="input_x_gradient",
        title="Input x Gradient",
        family="backpropagation",
        reference="Shrikumar A, Greenside P, Shcherbina A, Kundaje A. Not Just a Black Box: Learning Important Features "
        "Through Propagating Activation Differences. arXiv:1605.01713, 2016 (review ref. [54]).",
        summary="Each voxel's intensity times the gradient of the target score: first-order contribution against a zero image.",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=(),
        run=single_pass_run(_input_x_gradient_map, "input x gradient"),
        one_pass=True,
        batch_map=_input_x_gradient_map,
    )
)
