"""The shared engine: attribution maps for PyTorch models on 2D images and 3D volumes.

Imports no napari, Qt, magicgui or Slicer: hosts import it, never the reverse.
"""

from .attribution import Attribution
from .budget import BatchPlanner, default_budget_mb
from .errors import (
    Cancelled,
    ImageError,
    MemoryBudgetError,
    MethodError,
    ModelError,
    TargetError,
    UntrustedModelError,
    XAIError,
)
from .estimate import CONFIRM_SECONDS, Estimate, estimate
from .explain import explain, explain_iter
from .geometry import Geometry, napari_layer_kwargs, slicer_ijk_to_ras
from .image import ScanImage, validate_scan
from .scan_input import as_scan
from .image_io import read_image, write_image
from .metrics import Comparison, compare, compare_iter, evaluate, evaluate_iter
from .models import LoadedModel, ModelSpec, load_model, register_architecture
from .predict import Prediction, predict
from .progress import Progress
from .registry import MethodSpec, ParamSpec, get_method, list_methods, register_method, unregister_method
from .methods.toolkit import MethodContext
from . import methods as _builtin_methods  # noqa: F401  (registers the built-in methods; after the registry)

__all__ = [
    "Attribution",
    "BatchPlanner",
    "CONFIRM_SECONDS",
    "Cancelled",
    "Comparison",
    "Estimate",
    "Geometry",
    "ImageError",
    "LoadedModel",
    "MemoryBudgetError",
    "MethodContext",
    "MethodError",
    "MethodSpec",
    "ModelError",
    "ModelSpec",
    "ParamSpec",
    "Prediction",
    "Progress",
    "ScanImage",
    "TargetError",
    "UntrustedModelError",
    "XAIError",
    "as_scan",
    "compare",
    "compare_iter",
    "default_budget_mb",
    "estimate",
    "evaluate",
    "evaluate_iter",
    "explain",
    "explain_iter",
    "get_method",
    "list_methods",
    "load_model",
    "napari_layer_kwargs",
    "predict",
    "read_image",
    "register_architecture",
    "register_method",
    "unregister_method",
    "slicer_ijk_to_ras",
    "validate_scan",
    "write_image",
]
