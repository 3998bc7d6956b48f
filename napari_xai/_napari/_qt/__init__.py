"""Qt widgets of the napari plugin (thin: logic lives in ``napari_xai._napari._logic``)."""

from ._dock_widget import XAIWidget
from ._trust_widget import TrustWidget

__all__ = ["TrustWidget", "XAIWidget"]
