"""Fixtures for the 3D Slicer module's tests: real MRML from slicer-core, and stand-ins for the GUI layers.

slicer-core (PyPI) provides Slicer's data model without Qt: scenes, volume,
display, colour, segmentation and slice-composite nodes, ``slicer.util``'s
array helpers. It has no application (``slicer.app``, ``slicer.mrmlScene``)
and none of ``qt``, ``ctk``, ``slicer.ScriptedLoadableModule`` or
``slicer.parameterNodeWrapper``: ``tests/slicer/standins.py`` stands in for
exactly those (following Slicer 5.8 and 5.10 where they differ), so the module
file itself is imported, its widget set up, entered and left, and its wiring
tested.

These tests are never skipped: without slicer-core, collecting them fails.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys
import types
import typing

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
# The module file imported with stand-ins for what slicer-core lacks (tests/slicer/standins.py)
# ----------------------------------------------------------------------------

#: The Slicer versions whose behaviour the stand-ins follow where they differ.
SLICER_VERSIONS = ((5, 8), (5, 10))


def _guarded_module(name: str) -> types.ModuleType:
    """A module that fails loudly if anything is looked up on it (the module file must not use Qt at import)."""

    class Guard(types.ModuleType):
        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            raise AssertionError(f"{name}.{attr} was used while importing or running non-GUI code")

    return Guard(name)


def import_module_file(monkeypatch, version=(5, 10), gui=False) -> types.ModuleType:
    """Import slicer_module/SaliencyMaps/SaliencyMaps.py as Slicer ``version`` would, with the stand-ins in place.

    ``gui=False``: qt and ctk are guards that fail on any use (importing the
    module and running its Logic must not need Qt). ``gui=True``: the PythonQt,
    CTK and qMRML stand-ins, for the widget.
    """
    from tests.slicer import standins

    stand_ins = {
        "qt": standins.qt_module() if gui else _guarded_module("qt"),
        "ctk": standins.ctk_module() if gui else _guarded_module("ctk"),
        "slicer.ScriptedLoadableModule": standins.scripted_loadable_module(MODULE_DIR),
        "slicer.parameterNodeWrapper": standins.parameter_node_wrapper_module(version),
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
    """The module file, imported with the stand-ins (Slicer 5.10's wrapper, no Qt), on a fresh scene."""
    return import_module_file(monkeypatch)


@dataclasses.dataclass
class Gui:
    """The module's widget after ``setup()``, on Slicer ``version``'s stand-ins."""

    module: types.ModuleType
    widget: typing.Any
    dialogs: typing.Any
    app: typing.Any
    version: tuple
    scene: typing.Any

    @property
    def ui(self):
        return self.widget.ui

    @property
    def pn(self):
        return self.widget._parameterNode

    def wait(self, timeout=120.0):
        """Turn the (stand-in) event loop until the module's timers stop: a run started by Apply or Evaluate has ended."""
        from tests.slicer import standins

        standins.run_timers(timeout=timeout)


#: Widgets made by :func:`make_gui`; cleaned up after each test (as Slicer does when a module is unloaded),
#: so that no scene observer of a finished test's widget fires later.
_WIDGETS = []


@pytest.fixture(autouse=True)
def _cleanup_widgets():
    yield
    while _WIDGETS:
        _WIDGETS.pop().cleanup()


def make_gui(monkeypatch, scene, version) -> Gui:
    """The widget set up with Slicer ``version``'s stand-ins, entered, on ``scene``."""
    from tests.slicer import standins

    app = standins.App(version)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(standins.QTimer, "active", [])  # no timer of an earlier test fires in this one
    dialogs = standins.Dialogs()
    standins.install_gui_util(monkeypatch, dialogs)
    module = import_module_file(monkeypatch, version, gui=True)
    widget = module.SaliencyMapsWidget(standins.qSlicerScriptedLoadableModuleWidget())
    _WIDGETS.append(widget)
    widget.parent.setLayout(standins.QVBoxLayout())
    widget.layout = widget.parent.layout()
    widget.setup()
    widget.parent.isEntered = True
    widget.enter()
    return Gui(module, widget, dialogs, app, version, scene)


@pytest.fixture(params=SLICER_VERSIONS, ids=lambda v: f"slicer{v[0]}.{v[1]}")
def gui(request, monkeypatch, scene):
    """The widget set up and entered, once with Slicer 5.8's and once with 5.10's behaviour."""
    return make_gui(monkeypatch, scene, request.param)
