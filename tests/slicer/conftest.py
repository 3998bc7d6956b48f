"""Fixtures for the 3D Slicer module's tests: real MRML from slicer-core, and stand-ins for the GUI layers.

slicer-core (PyPI) provides Slicer's data model without Qt: scenes, volume,
display, colour, segmentation and slice-composite nodes, ``slicer.util``'s
array helpers. It has no application (``slicer.app``, ``slicer.mrmlScene``)
and none of ``qt``, ``ctk``, ``slicer.ScriptedLoadableModule`` or
``slicer.parameterNodeWrapper``; :func:`module` stands in for exactly those
four, so the module file itself is imported and its wiring tested.

These tests are never skipped: without slicer-core, collecting them fails.
"""

from __future__ import annotations

import enum
import importlib.util
import pathlib
import sys
import types
import typing
import unittest

import pytest

try:
    import slicer
    import slicer.util

    _HAS_MRML = hasattr(slicer, "vtkMRMLScene") and hasattr(slicer.util, "updateVolumeFromArray")
except ImportError as err:  # pragma: no cover - CI must install slicer-core
    raise ImportError(
        "tests/slicer need slicer-core (real MRML from PyPI): pip install -e .[test] or pip install 'slicer-core>=5.8'. "
        "Do not install the unrelated PyPI package 'slicer'."
    ) from err
if not _HAS_MRML:  # pragma: no cover
    raise ImportError(
        f"'slicer' at {getattr(slicer, '__file__', '?')} is not slicer-core (no vtkMRMLScene). "
        "Uninstall the unrelated 'slicer' package and pip install 'slicer-core>=5.8'."
    )

REPO = pathlib.Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "slicer_module" / "SaliencyMaps"
MODULE_FILE = MODULE_DIR / "SaliencyMaps.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SaliencyMaps.ui"

# SaliencyMapsLib is imported as Slicer imports it: from the module's folder.
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


@pytest.fixture
def scene(monkeypatch):
    """A fresh MRML scene, also installed as ``slicer.mrmlScene`` (which slicer-core lacks)."""
    mrml = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", mrml, raising=False)
    return mrml


# ----------------------------------------------------------------------------
# Stand-ins for qt, ctk, slicer.ScriptedLoadableModule, slicer.parameterNodeWrapper
# ----------------------------------------------------------------------------


def _guarded_module(name: str) -> types.ModuleType:
    """A module that fails loudly if anything is looked up on it (the module file must not use Qt at import)."""

    class Guard(types.ModuleType):
        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            raise AssertionError(f"{name}.{attr} was used while importing or running non-GUI code")

    return Guard(name)


def _scripted_loadable_module() -> types.ModuleType:
    mod = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = type(self).__name__

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent
            self.moduleName = type(self).__name__[: -len("Widget")]

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[: -len("Logic")]

        def getParameterNode(self):
            scene = slicer.mrmlScene
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetSingletonTag(self.moduleName)
                node.SetAttribute("ModuleName", self.moduleName)
                node.SetName(self.moduleName)
                scene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, requestedDelay=None, msec=None):
            pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest):
        setattr(mod, cls.__name__, cls)
    mod.__all__ = [c for c in dir(mod) if c.startswith("Scripted")]
    return mod


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"{value!r} not in {self.choices}")


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{value!r} outside [{self.minimum}, {self.maximum}]")


def parameterNodeWrapper(cls):
    """A small stand-in for Slicer's ``@parameterNodeWrapper``: typed properties stored in the scripted module node.

    Supports what the module declares: MRML node references, str, int, float,
    bool, pathlib.Path, Enum, with ``Annotated`` validators (Choice, WithinRange)
    checked on every write, and class-level defaults written when absent.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        validators = []
        if typing.get_origin(hint) is typing.Annotated:
            hint, *validators = typing.get_args(hint)
        fields[name] = (hint, validators)

    def is_node(t):
        return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)

    def default_of(name, t):
        if name in cls.__dict__:
            return cls.__dict__[name]
        if is_node(t):
            return None
        if issubclass(t, enum.Enum):
            return next(iter(t))
        return t()

    class Wrapped:
        allParameters = fields

        def __init__(self, node):
            self.parameterNode = node
            for name, (t, _v) in fields.items():
                if not is_node(t) and not node.GetParameter(name):
                    setattr(self, name, default_of(name, t))

        def default(self, name):
            return default_of(name, fields[name][0])

        def connectGui(self, gui):  # pragma: no cover - GUI only
            raise AssertionError("connectGui needs Qt")

    def make_property(name, t, validators):
        def getter(self):
            node = self.parameterNode
            if is_node(t):
                return node.GetNodeReference(name)
            text = node.GetParameter(name)
            if t is bool:
                return text == "True"
            if issubclass(t, enum.Enum):
                return t[text]
            return t(text)

        def setter(self, value):
            for validator in validators:
                validator.validate(value)
            node = self.parameterNode
            if is_node(t):
                if value is not None and not isinstance(value, t):
                    raise TypeError(f"{name} takes a {t.__name__}")
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            elif issubclass(t, enum.Enum):
                if not isinstance(value, t):
                    raise TypeError(f"{name} takes a {t.__name__}")
                node.SetParameter(name, value.name)
            else:
                if not isinstance(value, (t, int) if t is float else t) or (t is int and isinstance(value, bool)):
                    raise TypeError(f"{name} takes a {t.__name__}, not {value!r}")
                node.SetParameter(name, str(value))

        return property(getter, setter)

    for name, (t, validators) in fields.items():
        setattr(Wrapped, name, make_property(name, t, validators))
    Wrapped.__name__ = cls.__name__
    Wrapped.__doc__ = cls.__doc__
    return Wrapped


def _parameter_node_wrapper_module() -> types.ModuleType:
    mod = types.ModuleType("slicer.parameterNodeWrapper")
    mod.parameterNodeWrapper = parameterNodeWrapper
    mod.Choice = Choice
    mod.WithinRange = WithinRange
    return mod


def import_module_file(monkeypatch) -> types.ModuleType:
    """Import slicer_module/SaliencyMaps/SaliencyMaps.py with the four stand-ins (and nothing else) in place."""
    stand_ins = {
        "qt": _guarded_module("qt"),
        "ctk": _guarded_module("ctk"),
        "slicer.ScriptedLoadableModule": _scripted_loadable_module(),
        "slicer.parameterNodeWrapper": _parameter_node_wrapper_module(),
    }
    for name, mod in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(slicer, "ScriptedLoadableModule", stand_ins["slicer.ScriptedLoadableModule"], raising=False)
    monkeypatch.setattr(slicer, "parameterNodeWrapper", stand_ins["slicer.parameterNodeWrapper"], raising=False)
    monkeypatch.delitem(sys.modules, "SaliencyMaps", raising=False)
    spec = importlib.util.spec_from_file_location("SaliencyMaps", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "SaliencyMaps", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def module(monkeypatch, scene):
    """The module file, imported with the stand-ins, on a fresh scene."""
    return import_module_file(monkeypatch)
