"""Input x Gradient, Guided Backprop and DeconvNet: one backward pass each.

- **Input x Gradient** (Shrikumar et al. 2016, review ref. [54]): the input
  times the gradient of the target score. Signed: positive where the voxel's
  intensity pushes the score up (for a linear model it is each voxel's exact
  contribution relative to a zero image).
- **Guided Backprop** (Springenberg et al. 2015, review ref. [46]): the
  gradient with every ReLU's backward replaced by "pass only positive
  gradients, and only where the forward input was positive".
- **DeconvNet** (Zeiler & Fergus 2014, review ref. [28]): the gradient with
  every ReLU's backward replaced by a ReLU of the gradient (the forward mask
  is ignored).

Guided Backprop and DeconvNet maps are signed in principle (their values are
gradients); the ``absolute`` switch gives the usual non-negative display.

Hand-written rather than Captum's ``InputXGradient`` / ``GuidedBackprop`` /
``Deconvolution``: these are a few lines on top of the engine's target score
(which covers segmentation regions), and Captum's guided methods put backward
hooks on the user's own ReLU modules, where ours work on a private copy of the
model (``_modified.copy_model``), so the user's model is never touched. Tests
check all three against Captum (exact agreement).
"""

from __future__ import annotations

from typing import Any

from ..registry import MethodSpec, register_method
from ._modified import relu_rule_map
from .toolkit.context import MethodContext
from .toolkit.params import ABSOLUTE
from .toolkit.recipes import single_pass_run


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

GUIDED_BACKPROP = register_method(
    MethodSpec(
        name="guided_backprop",
        title="Guided Backprop",
        family="backpropagation",
        reference="Springenberg JT, Dosovitskiy A, Brox T, Riedmiller M. Striving for Simplicity: The All Convolutional Net. "
        "ICLR Workshop 2015 (review ref. [46]).",
        summary="Gradient where every ReLU passes back only positive gradients at positive inputs: sharp, but weakly class-specific.",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=(ABSOLUTE,),
        run=single_pass_run(relu_rule_map("guided", "Guided Backprop"), "Guided Backprop", absolute="absolute"),
        one_pass=True,
        sign_param="absolute",
        batch_map=relu_rule_map("guided", "Guided Backprop"),
    )
)

DECONVNET = register_method(
    MethodSpec(
        name="deconvnet",
        title="DeconvNet",
        family="backpropagation",
        reference="Zeiler MD, Fergus R. Visualizing and Understanding Convolutional Networks. ECCV 2014 (review ref. [28]).",
        summary="Gradient where every ReLU passes back the positive part of the gradient, ignoring the forward mask.",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=(ABSOLUTE,),
        run=single_pass_run(relu_rule_map("deconv", "DeconvNet"), "DeconvNet", absolute="absolute"),
        one_pass=True,
        sign_param="absolute",
        batch_map=relu_rule_map("deconv", "DeconvNet"),
    )
)
