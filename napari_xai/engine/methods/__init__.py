"""Built-in attribution methods; importing this package registers them."""

from . import gradient, integrated_gradients, grad_cam, occlusion  # noqa: F401
from . import lime  # noqa: F401
from . import kernel_shap  # noqa: F401
from . import rise  # noqa: F401
from . import hipe  # noqa: F401
from . import backprop  # noqa: F401
from . import smoothgrad  # noqa: F401
from . import deeplift  # noqa: F401
from . import lrp  # noqa: F401
from . import cams  # noqa: F401
from . import meaningful_perturbation  # noqa: F401
from . import extremal_perturbation  # noqa: F401
from . import activation_maximisation  # noqa: F401
