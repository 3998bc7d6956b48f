"""DeconvNet: the gradient with every ReLU's backward replaced by a ReLU of the gradient; one backward pass.

**DeconvNet** (Zeiler & Fergus 2014, review ref. [28]): the gradient with
every ReLU's backward replaced by a ReLU of the gradient (the forward mask
is ignored).

Signed in principle (its values are gradients); ``absolute`` gives the usual
non-negative display. The rule runs on a private copy of the model
(``modified_backward``); tests check it against Captum's ``Deconvolution``.
"""

from __future__ import annotations

from ...registry import MethodSpec, register_method
from .modified_backward import relu_rule_map
from ..toolkit.params import ABSOLUTE
from ..toolkit.recipes import single_pass_run


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
