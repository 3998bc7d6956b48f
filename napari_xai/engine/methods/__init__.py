"""The built-in attribution methods, one file per method, grouped by family; importing this package registers them.

- ``perturbation/``: occlusion, LIME, KernelSHAP, RISE, HiPe, Meaningful and
  Extremal Perturbation (forward passes, or a mask learnt through the model);
- ``backprop/``: vanilla gradient, integrated gradients, input x gradient,
  Guided Backprop, DeconvNet, SmoothGrad / SmoothGrad² / VarGrad, DeepLIFT /
  DeepLIFT-SHAP and LRP (gradients or modified backward passes);
- ``cam/``: Grad-CAM, CAM, Grad-CAM++, Score-CAM, Guided Grad-CAM (one layer's feature maps);
- ``activation_maximisation/``: class model visualisation and Deep Dream (images, not maps).

``toolkit/`` holds the pieces every method is built from (the public API for
method authors); ``windowed_model.py`` runs scores and gradients window by
window for models whose spec has a ``sliding_window``. Within a family, the
import order below is the catalogue's order.
"""

from . import perturbation  # noqa: F401
from . import backprop  # noqa: F401  (before cam: Guided Grad-CAM uses its guided rule)
from . import cam  # noqa: F401
from . import activation_maximisation  # noqa: F401
