"""Class activation methods: one layer's feature maps, weighted and upsampled to the scan.

All of them read the feature maps ``A`` of one layer: by default the last layer
with a spatial output (``toolkit.find_cam_layer``), else the spec's
``cam_layer``, else the ``layer`` parameter (a dotted module name). Maps are
computed on the layer's grid and upsampled to the model input (bilinear in
2D, trilinear in 3D). Values stay raw: nothing is min-max scaled, clipped
(other than each paper's ReLU, which ``relu=False`` switches off) or inverted
(MONAI's CAM classes invert by default; pytorch-grad-cam clips and rescales).
Region targets of segmentation networks work like class targets.
"""

from . import grad_cam  # noqa: F401
from . import cam  # noqa: F401
from . import grad_cam_pp  # noqa: F401
from . import score_cam  # noqa: F401
from . import guided_grad_cam  # noqa: F401
