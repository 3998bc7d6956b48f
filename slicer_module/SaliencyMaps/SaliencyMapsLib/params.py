"""Method choices and parameter controls, described from the engine's registry.

The widget builds one control per :class:`~napari_xai.engine.ParamSpec` of
the selected method from :func:`control_specs` (the host-neutral
description both hosts render); nothing here is written per method, so
methods added to the engine appear in Slicer with their controls.
Values live in the parameter node as one JSON string (``methodParameters``):
``{method name: {parameter: value}}``, so each method keeps its own settings.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

#: Shown only when no method catalogue can be read (a broken install): the
#: module still loads, with the default method.
FALLBACK_METHODS = (("integrated_gradients", "Integrated Gradients (backpropagation)"),)

#: The default method: signed, complete (sums to the score difference), cheap enough on a CPU.
DEFAULT_METHOD = "integrated_gradients"

#: The catalogue inside a source checkout (``<repo>/slicer_module/SaliencyMaps/SaliencyMapsLib/params.py``).
CHECKOUT_CATALOGUE = Path(__file__).resolve().parents[3] / "napari_xai" / "method_catalogue.json"


def engine_available() -> bool:
    """True when napari-xai and torch can be imported (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("napari_xai", "torch"))


def catalogue_entries() -> tuple:
    """The engine's method catalogue (``napari_xai.catalogue``), read without importing torch or the engine.

    From the installed or bundled ``napari_xai`` package, else from the
    source checkout holding this module; an empty tuple when neither is
    readable.
    """
    try:
        if importlib.util.find_spec("napari_xai") is not None:
            from napari_xai import catalogue

            return catalogue.read_catalogue()
    except Exception:  # a broken install must not stop Slicer from loading the module
        pass
    if CHECKOUT_CATALOGUE.is_file():
        try:
            spec = importlib.util.spec_from_file_location("_saliencymaps_catalogue", CHECKOUT_CATALOGUE.with_name("catalogue.py"))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.read_catalogue(CHECKOUT_CATALOGUE)
        except Exception:
            pass
    return ()


def method_choices() -> tuple:
    """``(registry name, menu label)`` of every method, in catalogue order.

    Read from the static catalogue, so listing the methods never imports
    torch (Slicer builds the menu at start-up; importing torch there slows
    every start and, on Windows, locks torch's DLLs against reinstalling).
    :data:`FALLBACK_METHODS` when no catalogue is readable. Never installs anything.
    """
    entries = catalogue_entries()
    choices = tuple((entry.name, entry.label) for entry in entries) if entries else FALLBACK_METHODS
    return choices + registered_elsewhere({name for name, _label in choices}) if entries else choices


def registered_elsewhere(listed: set) -> tuple:
    """``(name, label)`` of methods registered in this process (``napari_xai.engine.register_method``) but not in the catalogue.

    Read only when the engine is already imported (whoever registered a
    method imported it); nothing is imported here, so the module still loads
    without torch.
    """
    import sys

    registry = sys.modules.get("napari_xai.engine.registry")
    if registry is None:
        return ()
    return tuple((spec.name, f"{spec.title} ({spec.family})") for spec in registry.list_methods() if spec.name not in listed)


def control_specs(method_spec: Any) -> list:
    """The engine's control description of each parameter of a :class:`~napari_xai.engine.MethodSpec`.

    One description for napari and Slicer (``napari_xai.session.controls``),
    rendered here by :func:`SaliencyMapsLib.controls.make_control`; imported
    lazily, as it imports the engine.
    """
    from napari_xai.session.controls import controls_for

    return controls_for(method_spec)


def load_values(store: str, method: str) -> dict[str, Any]:
    """The values saved for ``method`` in a ``methodParameters`` JSON string (only those set)."""
    try:
        data = json.loads(store or "{}")
    except json.JSONDecodeError:
        return {}
    values = data.get(method, {}) if isinstance(data, dict) else {}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def store_value(store: str, method: str, name: str, value: Any) -> str:
    """A new ``methodParameters`` JSON string with ``method``'s parameter ``name`` set to ``value``."""
    try:
        data = json.loads(store or "{}")
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.setdefault(method, {})[name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(data, sort_keys=True)


def method_params(store: str, method_spec: Any) -> dict[str, Any]:
    """The stored values of ``method_spec``'s parameters, unknown names dropped (the engine fills defaults)."""
    names = {p.name for p in method_spec.params}
    return {k: v for k, v in load_values(store, method_spec.name).items() if k in names}


def parse_target(text: str) -> int | str | None:
    """The target field: empty -> None (the predicted class), ``"2"`` -> 2, ``"lesion"`` -> ``"lesion"``."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text
