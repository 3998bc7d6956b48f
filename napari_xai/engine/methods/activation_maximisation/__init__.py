"""Activation maximisation: synthetic images that raise the target score (not attribution maps)."""

from . import class_model_visualisation  # noqa: F401
from . import deep_dream  # noqa: F401
