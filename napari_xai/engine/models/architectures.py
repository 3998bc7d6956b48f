"""Architectures that a weights file can be paired with by name.

A weights file (state dict or safetensors) holds no code, so its sidecar spec
names the architecture. Only two kinds of names resolve: names registered
here, and ``"package.module:Class"`` paths to an ``nn.Module`` subclass of an
installed package. A spec can therefore never make the loader call an
arbitrary function such as ``os:system``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

import torch.nn as nn

from ..errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make an ``nn.Module`` subclass loadable by ``name`` from a spec."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        _REGISTRY[name] = cls
        return cls

    return decorate


def resolve_architecture(factory: str) -> type[nn.Module]:
    """Find the ``nn.Module`` class a spec's ``architecture.factory`` names.

    Raises
    ------
    ModelError
        The name is unknown, cannot be imported, or is not an ``nn.Module`` class.
    """
    _load_builtin_architectures()
    if factory in _REGISTRY:
        return _REGISTRY[factory]
    if ":" not in factory:
        raise ModelError(
            f"Architecture {factory!r} is not registered.",
            f"Use one of {sorted(_REGISTRY)} or 'package.module:ClassName' of an installed package.",
        )
    module_name, _, attr = factory.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(
            f"Architecture {factory!r} could not be imported ({err}).",
            "Install the package that defines it, or fix the name in the spec.",
        ) from err
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ModelError(
            f"Architecture {factory!r} is not a torch.nn.Module class.",
            "Name the model's class in the spec's architecture.factory.",
        )
    return obj


def _load_builtin_architectures() -> None:
    # The sample models' architectures register themselves on import.
    importlib.import_module("napari_xai.samples.architectures")
