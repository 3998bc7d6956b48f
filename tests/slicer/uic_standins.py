"""PyQt5 classes standing in for the CTK and qMRML widgets of ``SaliencyMaps.ui``, for Qt Designer's loader (PyQt's uic).

Each class is a real Qt widget (so uic can build and lay it out) that declares exactly the Qt properties of
the widget it stands for, read off the real headers: CTK's ``Libs/Widgets/ctkCollapsibleButton.h``,
``ctkPathLineEdit.h``, ``ctkSliderWidget.h`` and Slicer's ``Libs/MRML/Widgets/qMRMLNodeComboBox.h``,
``qMRMLWidget.h`` (the ``Q_PROPERTY`` lines). uic sets a property through its ``set<Name>`` method, so a
property the real widget lacks fails to load here as it would fail in Slicer's ``QUiLoader``.

uic resolves a custom widget by importing the module named after its ``<header>`` (``qMRMLNodeComboBox.h``
-> ``qMRMLNodeComboBox``): :func:`install` puts one module per class into ``sys.modules``. The binding
(PyQt5 or PyQt6) is the environment variable ``UIC_STANDIN_BINDING``, default PyQt5.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

_binding = os.environ.get("UIC_STANDIN_BINDING", "PyQt5")
QtCore = importlib.import_module(f"{_binding}.QtCore")
QtWidgets = importlib.import_module(f"{_binding}.QtWidgets")


def _standin(name, base, properties, extra=None):
    namespace = {"__doc__": f"Stand-in for {name}: its Qt properties {sorted(properties)}."}
    for prop, (ptype, default) in properties.items():
        store = f"_{prop}_value"

        def getter(self, store=store, default=default):
            return getattr(self, store, default)

        def setter(self, value, store=store):
            setattr(self, store, value)

        namespace[prop] = QtCore.pyqtProperty(ptype, getter, setter)
        namespace["set" + prop[0].upper() + prop[1:]] = setter
    namespace.update(extra or {})
    return type(name, (base,), namespace)


ctkCollapsibleButton = _standin(
    "ctkCollapsibleButton", QtWidgets.QGroupBox,
    {"collapsed": (bool, False), "collapsedHeight": (int, 14), "flat": (bool, False), "contentsFrameShape": (int, 0),
     "contentsFrameShadow": (int, 0), "contentsLineWidth": (int, 1), "contentsMidLineWidth": (int, 0),
     "buttonTextAlignment": (int, 0), "indicatorAlignment": (int, 0), "text": (str, "")},
    # QAbstractButton's text: a QGroupBox's title stands in for it on screen.
    {"setText": lambda self, text: self.setTitle(text)},
)

ctkPathLineEdit = _standin(
    "ctkPathLineEdit", QtWidgets.QLineEdit,
    {"label": (str, ""), "filters": (int, 0), "currentPath": (str, ""), "options": (int, 0), "settingKey": (str, ""),
     "showBrowseButton": (bool, True), "showHistoryButton": (bool, True), "sizeAdjustPolicy": (int, 0),
     "minimumContentsLength": (int, 0), "nameFilters": ("QStringList", [])},
    # ctkPathLineEdit::Filter (ctkPathLineEdit.h), used by the .ui's "filters" set.
    {"Dirs": 0x001, "Files": 0x002, "Drives": 0x004, "NoDotAndDotDot": 0x1000, "Readable": 0x010, "Writable": 0x020,
     "Executable": 0x040},
)

ctkSliderWidget = _standin(
    "ctkSliderWidget", QtWidgets.QDoubleSpinBox,
    {"decimals": (int, 2), "singleStep": (float, 1.0), "pageStep": (float, 10.0), "minimum": (float, 0.0),
     "maximum": (float, 99.0), "value": (float, 0.0), "prefix": (str, ""), "suffix": (str, ""),
     "tickInterval": (float, 0.0), "tickPosition": (int, 0), "synchronizeSiblings": (int, 0), "spinBoxAlignment": (int, 0),
     "tracking": (bool, True), "spinBoxVisible": (bool, True), "popupSlider": (bool, False),
     "invertedAppearance": (bool, False), "invertedControls": (bool, False)},
)


class _NodeComboBase(QtWidgets.QComboBox):
    def setMRMLScene(self, scene):
        self.scene = scene


qMRMLNodeComboBox = _standin(
    "qMRMLNodeComboBox", _NodeComboBase,
    {"currentNodeID": (str, ""), "currentNodeId": (str, ""), "nodeTypes": ("QStringList", []), "showHidden": (bool, False),
     "showChildNodeTypes": (bool, True), "hideChildNodeTypes": ("QStringList", []), "baseName": (str, ""),
     "noneEnabled": (bool, False), "addEnabled": (bool, True), "removeEnabled": (bool, True), "editEnabled": (bool, False),
     "renameEnabled": (bool, False), "interactionNodeSingletonTag": (str, ""), "selectNodeUponCreation": (bool, True),
     "noneDisplay": (str, "None"), "sizeAdjustPolicy": (int, 0)},
)


class qMRMLWidget(QtWidgets.QWidget):
    """Stand-in for qMRMLWidget (no Q_PROPERTY of its own; ``setMRMLScene`` slot)."""

    def setMRMLScene(self, scene):
        self.scene = scene


CLASSES = (ctkCollapsibleButton, ctkPathLineEdit, ctkSliderWidget, qMRMLNodeComboBox, qMRMLWidget)


def install() -> None:
    """One module per custom widget, named as uic derives it from the ``<header>``."""
    for cls in CLASSES:
        module = types.ModuleType(cls.__name__)
        setattr(module, cls.__name__, cls)
        sys.modules[cls.__name__] = module
