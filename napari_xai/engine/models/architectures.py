"""Architectures that a weights file can be paired with by name.

A weights file (state dict or safetensors) holds no code, so its sidecar spec
names the architecture. A spec is data that may come from anyone, so naming a
module in it never makes napari-xai import that module (importing runs the
module's top-level code). Only two kinds of names resolve:

- names registered in this process with :func:`register_architecture`: by
  the sample models (``napari_xai.samples`` registers their architectures
  when it is imported; the hosts, the command line and the cohort runner
  import it, the engine never does) or by the user's own code before the
  load;
- names in the allowlist the caller passes for that one load
  (``load_model(..., architectures=...)``): classes, or ``"package.module:Class"``
  strings the caller allows to be imported.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Iterable, Mapping
from typing import Callable, Union

import torch.nn as nn

from ..errors import ModelError

ArchitectureAllowlist = Union[Mapping[str, Union[type, str]], Iterable[Union[type, str]], None]

_REGISTRY: dict[str, type[nn.Module]] = {}
_REGISTRY_LOCK = threading.Lock()


def register_architecture(name: str, cls: type[nn.Module] | None = None) -> Callable[[type[nn.Module]], type[nn.Module]] | type[nn.Module]:
    """Make an ``nn.Module`` subclass loadable by ``name`` from a spec.

    Use as a class decorator (``@register_architecture("my_unet")``) or call
    it with the class (``register_architecture("pkg.mod:UNet", UNet)``).

    Parameters
    ----------
    name : str
        The name a spec's ``architecture.factory`` gives.
    cls : type, optional
        The class; without it, a decorator is returned.
    """

    def decorate(klass: type[nn.Module]) -> type[nn.Module]:
        if not (inspect.isclass(klass) and issubclass(klass, nn.Module)):
            raise TypeError(f"register_architecture({name!r}) needs a torch.nn.Module subclass, got {klass!r}")
        with _REGISTRY_LOCK:
            _REGISTRY[name] = klass
        return klass

    return decorate(cls) if cls is not None else decorate


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class, the form a spec's ``architecture.factory`` uses."""
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_architecture(factory: object, allowed: ArchitectureAllowlist = None) -> type[nn.Module]:
    """Find the ``nn.Module`` class a spec's ``architecture.factory`` names.

    Parameters
    ----------
    factory : str
        The name from the spec.
    allowed : mapping or iterable, optional
        The caller's allowlist for this load (see :func:`load_model`).

    Raises
    ------
    ModelError
        The name is not a string, is neither registered nor allowed, or what
        it names is not an ``nn.Module`` class. Nothing is imported for a
        name that is not on the caller's allowlist.
    """
    if not isinstance(factory, str) or not factory:
        raise ModelError(
            f"Model spec: architecture.factory is {factory!r} ({type(factory).__name__}), not an architecture name.",
            'Write it as a string, e.g. "architecture": {"factory": "lesion_classifier_3d", "kwargs": {...}}.',
        )
    entries = _allowlist(allowed)
    if factory in entries:
        target = entries[factory]
    else:
        with _REGISTRY_LOCK:
            registered = _REGISTRY.get(factory)
            known = sorted(_REGISTRY)
        if registered is not None:
            return registered
        raise ModelError(
            f"Architecture {factory!r} is not registered, and napari-xai does not import a module because a spec names it "
            "(importing runs that module's code).",
            f"Use a registered name ({', '.join(known)}), register the class in your own code first "
            "(napari_xai.engine.register_architecture(name, cls)), or, if you trust that module, allow it for this load: "
            f"load_model(..., architectures=[{factory!r}]) (CLI: --architecture {factory}).",
        )
    if isinstance(target, str):
        target = _import_allowed(factory, target)
    if not (inspect.isclass(target) and issubclass(target, nn.Module)):
        raise ModelError(
            f"Architecture {factory!r} is not a torch.nn.Module class.",
            "Name the model's class in the spec's architecture.factory.",
        )
    return target


def _allowlist(allowed: ArchitectureAllowlist) -> dict[str, type | str]:
    if allowed is None:
        return {}
    if isinstance(allowed, (str, type)):
        allowed = [allowed]
    if isinstance(allowed, Mapping):
        return dict(allowed)
    out: dict[str, type | str] = {}
    for entry in allowed:
        if isinstance(entry, str):
            out[entry] = entry
        elif inspect.isclass(entry):
            out[class_path(entry)] = entry
        else:
            raise ModelError(
                f"The architecture allowlist holds {entry!r}, neither a class nor a 'package.module:Class' name.",
                "Pass classes or 'package.module:Class' strings.",
            )
    return out


def _import_allowed(factory: str, path: str) -> object:
    """Import what the caller's allowlist names (the caller chose this module, not the spec)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(
            f"The allowed architecture {path!r} is not of the form 'package.module:ClassName'.",
            "Give the module and the class, separated by a colon.",
        )
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ModelError(
            f"Architecture {factory!r} could not be imported ({err}).",
            "Install the package that defines it, or fix the name.",
        ) from err
    return obj
