"""Model specs, architectures and safe loading."""

from .architectures import register_architecture, resolve_architecture
from .loading import LoadedModel, as_loaded_model, load_model
from .spec import ModelSpec

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "as_loaded_model",
    "load_model",
    "register_architecture",
    "resolve_architecture",
]
