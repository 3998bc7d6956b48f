"""Backpropagation methods: gradients of the target score, or relevance passed back layer by layer.

SmoothGrad is imported after the methods it can wrap (those with a ``batch_map``).
"""

from . import vanilla_gradient  # noqa: F401
from . import integrated_gradients  # noqa: F401
from . import input_x_gradient  # noqa: F401
from . import guided_backprop  # noqa: F401
from . import deconvnet  # noqa: F401
from . import smoothgrad  # noqa: F401
from . import deeplift  # noqa: F401
from . import lrp  # noqa: F401
