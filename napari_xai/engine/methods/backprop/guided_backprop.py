"""Guided Backprop: the gradient with ReLUs passing back only positive gradients at positive inputs; one backward pass.

**Guided Backprop** (Springenberg et al. 2015, review ref. [46]): the
gradient with every ReLU's backward replaced by "pass only positive
gradients, and only where the forward input was positive".

Signed in principle (its values are gradients); ``absolute`` gives the usual
non-negative display.

Hand-written rather than Captum's ``InputXGradient`` / ``GuidedBackprop`` /
``Deconvolution``: these are a few lines on top of the engine's target score
(which covers segmentation regions), and Captum's guided methods put backward
hooks on the user's own ReLU modules, where ours work on a private copy of the
model (``toolkit.copy_model``), so the user's model is never touched. Tests
check all three against Captum (exact agreement).
"""

from __future__ import annotations

from ...registry import MethodSpec, register_method
from .modified_backward import relu_rule_map
from ..toolkit.params import ABSOLUTE
from ..toolkit.recipes import single_pass_run


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
