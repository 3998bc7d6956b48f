"""Stand-ins for the parts of 3D Slicer that slicer-core (PyPI) lacks: PythonQt widgets, CTK and qMRML
widgets, the ``.ui`` loader, ``slicer.parameterNodeWrapper``, ``slicer.ScriptedLoadableModule`` and the GUI
half of ``slicer.util`` and ``slicer.app``.

Each follows the real behaviour of Slicer 5.8 and 5.10 where the module depends on it, and cites the Slicer
source it follows (paths inside https://github.com/Slicer/Slicer at the tags v5.8.1 and v5.10.0, and CTK's
headers at the revisions those tags pin in ``SuperBuild/External_CTK.cmake``). Where the versions differ the
stand-in takes ``slicer_version``:

- ``parameterNodeWrapper/wrapper.py``: ``connectGui`` returns None on 5.8 (``_connectGui`` drops the tag of
  ``_connectParametersToGui``), the tag on 5.10; on both, ``connectParametersToGui`` returns the tag and every
  connection adds a ModifiedEvent observer to the node that nothing removes.
- ``parameterNodeWrapper/guiConnectors.py``: on 5.10 ``QLineEditToStrConnector.write`` writes only a changed
  text and the double-spin-box/slider connector also takes ``int`` parameters.
- The embedded Python: 3.9.10 on 5.8, 3.12.10 on 5.10 (``SuperBuild/External_python.cmake``).

What they keep from the real code: exact widget types for the GUI connectors (``type(widget) in (...)``), the
serializers' validators (``TypeError`` for a wrong type, ``ValueError`` out of range or not a choice), the Enum
serializer's ``ValueError`` for a stored name that is not a member, cached parameters (an observer per cached
parameter), ``disconnectGui`` taking the tag, widgets exposing Qt properties as attributes (PythonQt) and
refusing properties their class does not declare (the lists are those of the CTK and qMRML headers),
``slicer.util.tryWithErrorDisplay`` showing a dialog and re-raising, ``createProgressDialog`` setting keyword
arguments only where the dialog has such a property.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import enum
import inspect
import pathlib
import types
import typing
import unittest
import weakref
import xml.etree.ElementTree as ET

import slicer
import slicer.util
import vtk

# ----------------------------------------------------------------------------
# PythonQt-like widgets
# ----------------------------------------------------------------------------


class Signal:
    """A Qt signal as PythonQt exposes it: ``widget.valueChanged.connect(slot)``.

    PythonQt calls a slot with as many of the signal's arguments as the slot takes.
    """

    def __init__(self, owner, name):
        self._owner = weakref.ref(owner)
        self.name = name
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot):
        for i, s in enumerate(self._slots):
            if s == slot:
                del self._slots[i]
                return
        raise RuntimeError(f"{self.name}: slot {slot!r} is not connected")  # PythonQt/Qt refuse too

    def emit(self, *args):
        owner = self._owner()
        if owner is not None and owner._signalsBlocked:
            return
        for slot in list(self._slots):
            slot(*args[: _arity(slot, len(args))])

    @property
    def count(self):
        return len(self._slots)


def _arity(slot, available):
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return available
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return available
    return min(available, sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)))


class QObject:
    """Qt properties are attributes (PythonQt); unknown attribute names are refused, as an unknown property is in Qt."""

    #: Qt properties declared by the class (``Q_PROPERTY``), with defaults; merged along the MRO.
    PROPERTIES: dict = {"objectName": ""}
    #: Signals by name.
    SIGNALS: tuple = ("destroyed",)

    def __init__(self, parent=None):
        object.__setattr__(self, "_props", {})
        object.__setattr__(self, "_dynamic", {})
        object.__setattr__(self, "_signals", {})
        object.__setattr__(self, "_signalsBlocked", False)
        object.__setattr__(self, "_children", [])
        object.__setattr__(self, "_parent", None)
        for cls in reversed(type(self).__mro__):
            self._props.update(getattr(cls, "PROPERTIES", {}) if "PROPERTIES" in cls.__dict__ else {})
        if parent is not None:
            self.setParent(parent)

    @classmethod
    def allProperties(cls):
        names = {}
        for c in reversed(cls.__mro__):
            if "PROPERTIES" in c.__dict__:
                names.update(c.__dict__["PROPERTIES"])
        return names

    @classmethod
    def allSignals(cls):
        return {s for c in cls.__mro__ for s in c.__dict__.get("SIGNALS", ())}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        props = object.__getattribute__(self, "_props")
        if name in props:
            return props[name]
        if name in type(self).allSignals():
            signals = object.__getattribute__(self, "_signals")
            if name not in signals:
                signals[name] = Signal(self, name)
            return signals[name]
        raise AttributeError(f"{type(self).__name__} has no property, signal or method {name!r}")

    def __setattr__(self, name, value):
        if name.startswith("_") or name in type(self).__dict__ or any(name in c.__dict__ for c in type(self).__mro__):
            object.__setattr__(self, name, value)
            return
        if name not in self._props:
            raise AttributeError(f"{type(self).__name__} has no property {name!r}")
        self._setProp(name, value)

    def _setProp(self, name, value):
        self._props[name] = value

    def _signal(self, name):
        return getattr(self, name)

    def connect(self, signature, slot):
        """PythonQt's ``obj.connect("signal(args)", slot)``."""
        name = signature.split("(", 1)[0]
        if name not in type(self).allSignals():
            raise AttributeError(f"{type(self).__name__} has no signal {signature}")
        self._signal(name).connect(slot)

    def disconnect(self, signature, slot):
        self._signal(signature.split("(", 1)[0]).disconnect(slot)

    def property(self, name):
        if name in self._dynamic:
            return self._dynamic[name]
        return self._props.get(name)

    def setProperty(self, name, value):
        if name in self._props:
            self._setProp(name, value)
        else:
            self._dynamic[name] = value

    def blockSignals(self, block):
        was = self._signalsBlocked
        object.__setattr__(self, "_signalsBlocked", bool(block))
        return was

    def signalsBlocked(self):
        return self._signalsBlocked

    def setParent(self, parent):
        if self._parent is not None:
            self._parent._children.remove(self)
        object.__setattr__(self, "_parent", parent)
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found.extend(child.findChildren(cls))
        return found

    def isWidgetType(self):
        return False

    def deleteLater(self):
        self.setParent(None)


class QWidget(QObject):
    PROPERTIES = {"enabled": True, "visible": True, "toolTip": "", "styleSheet": "", "geometry": None,
                  "windowTitle": "", "windowModality": 0, "sizePolicy": None, "minimumSize": None}
    SIGNALS = ("customContextMenuRequested",)

    def __init__(self, parent=None):
        super().__init__(parent)
        object.__setattr__(self, "_layout", None)

    def isWidgetType(self):
        return True

    def setLayout(self, layout):
        object.__setattr__(self, "_layout", layout)
        layout._owner = self

    def layout(self):
        return self._layout

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def close(self):
        self.visible = False
        return True

    def setEnabled(self, value):
        self.enabled = bool(value)


class QLayout(QObject):
    """Layouts own their items; widgets added become children of the layout's widget."""

    def __init__(self, parent=None):
        super().__init__(None)
        object.__setattr__(self, "_items", [])
        object.__setattr__(self, "_owner", None)
        object.__setattr__(self, "margins", None)
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def _adopt(self, widget):
        if isinstance(widget, QWidget) and self._owner is not None:
            widget.setParent(self._owner)

    def addWidget(self, widget, *args):
        self._adopt(widget)
        self._items.append(_LayoutItem(widget))

    def addLayout(self, layout, *args):
        layout._owner = self._owner
        self._items.append(_LayoutItem(None, layout))

    def addRow(self, label, widget=None):
        if widget is None:
            widget, label = label, None
        if isinstance(label, QWidget):
            self._adopt(label)
        self._adopt(widget)
        self._items.append(_LayoutItem(widget, label=label))

    def count(self):
        return len(self._items)

    def takeAt(self, index):
        item = self._items.pop(index)
        return item

    def setContentsMargins(self, *margins):
        object.__setattr__(self, "margins", margins)

    def rows(self):
        return [(item.label, item._widget) for item in self._items]


class _LayoutItem:
    def __init__(self, widget, layout=None, label=None):
        self._widget = widget
        self._layout = layout
        self.label = label

    def widget(self):
        return self._widget

    def layout(self):
        return self._layout


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QLabel(QWidget):
    PROPERTIES = {"text": "", "wordWrap": False, "alignment": 0, "textFormat": 0, "openExternalLinks": False}
    SIGNALS = ("linkActivated",)


class QFrame(QWidget):
    PROPERTIES = {"frameShape": 0, "frameShadow": 0, "lineWidth": 1}


class QAbstractButton(QWidget):
    PROPERTIES = {"text": "", "checkable": False, "checked": False, "icon": None}
    SIGNALS = ("clicked", "toggled", "pressed", "released")

    def click(self):
        if self.enabled:
            if self.checkable:
                self.checked = not self.checked
            self.clicked.emit(self.checked)

    def _setProp(self, name, value):
        old = self._props.get(name)
        super()._setProp(name, value)
        if name == "checked" and bool(old) != bool(value):
            self.toggled.emit(bool(value))


class QPushButton(QAbstractButton):
    PROPERTIES = {"default": False, "flat": False}


class QCheckBox(QAbstractButton):
    PROPERTIES = {"tristate": False}


class QLineEdit(QWidget):
    PROPERTIES = {"text": "", "placeholderText": "", "readOnly": False, "maxLength": 32767}
    SIGNALS = ("textChanged", "textEdited", "editingFinished", "returnPressed")

    def __init__(self, *args):
        text = args[0] if args and isinstance(args[0], str) else ""
        parent = args[-1] if args and isinstance(args[-1], QObject) else None
        super().__init__(parent)
        self._props["text"] = text

    def _setProp(self, name, value):
        old = self._props.get(name)
        super()._setProp(name, value)
        if name == "text" and old != value:
            self.textChanged.emit(value)


class QComboBox(QWidget):
    PROPERTIES = {"currentIndex": -1, "currentText": "", "count": 0, "editable": False, "maxVisibleItems": 10,
                  "sizeAdjustPolicy": 0}
    SIGNALS = ("currentIndexChanged", "currentTextChanged", "activated", "highlighted")

    def __init__(self, parent=None):
        super().__init__(parent)
        object.__setattr__(self, "_items", [])

    def addItem(self, text, data=None):
        self._items.append((str(text), data))
        self._props["count"] = len(self._items)
        if self._props["currentIndex"] < 0:
            self._setProp("currentIndex", 0)

    def clear(self):
        self._items.clear()
        self._props["count"] = 0
        if self._props["currentIndex"] != -1:
            self._setProp("currentIndex", -1)

    def itemText(self, index):
        return self._items[index][0] if 0 <= index < len(self._items) else ""

    def itemData(self, index):
        return self._items[index][1] if 0 <= index < len(self._items) else None

    def findData(self, data):
        for i, (_text, d) in enumerate(self._items):
            if d == data:
                return i
        return -1

    def findText(self, text):
        for i, (t, _d) in enumerate(self._items):
            if t == text:
                return i
        return -1

    def setCurrentIndex(self, index):
        self.currentIndex = index

    def _setProp(self, name, value):
        if name == "currentText":
            index = self.findText(value)
            if index >= 0:
                self._setProp("currentIndex", index)
            return
        old = self._props.get(name)
        if name == "currentIndex":
            value = int(value) if -1 <= int(value) < len(self._items) else old
        super()._setProp(name, value)
        if name == "currentIndex" and old != value:
            self._props["currentText"] = self.itemText(value)
            self.currentIndexChanged.emit(value)
            self.currentTextChanged.emit(self._props["currentText"])


class _RangeMixin:
    def setRange(self, lo, hi):
        self.minimum = lo
        self.maximum = hi

    def setMinimum(self, lo):
        self.minimum = lo

    def setMaximum(self, hi):
        self.maximum = hi

    def setValue(self, value):
        self.value = value

    def _setProp(self, name, value):
        old = self._props.get(name)
        if name == "value":
            value = min(max(value, self._props["minimum"]), self._props["maximum"])
            if self._INTEGER:
                value = int(value)
            else:
                value = round(float(value), int(self._props.get("decimals", 2)))
        super()._setProp(name, value)
        if name in ("minimum", "maximum"):
            self._setProp("value", self._props["value"])
        if name == "value" and old != value:
            self.valueChanged.emit(value)


class QSpinBox(_RangeMixin, QWidget):
    _INTEGER = True
    PROPERTIES = {"minimum": 0, "maximum": 99, "singleStep": 1, "value": 0, "prefix": "", "suffix": ""}
    SIGNALS = ("valueChanged", "textChanged", "editingFinished")


class QSlider(_RangeMixin, QWidget):
    _INTEGER = True
    PROPERTIES = {"minimum": 0, "maximum": 99, "singleStep": 1, "pageStep": 10, "value": 0, "orientation": 1}
    SIGNALS = ("valueChanged", "sliderMoved", "sliderPressed", "sliderReleased")


class QDoubleSpinBox(_RangeMixin, QWidget):
    _INTEGER = False
    PROPERTIES = {"minimum": 0.0, "maximum": 99.99, "singleStep": 1.0, "value": 0.0, "decimals": 2, "prefix": "", "suffix": ""}
    SIGNALS = ("valueChanged", "textChanged", "editingFinished")


class QProgressDialog(QWidget):
    """Follows Qt's QProgressDialog: ``windowModality`` defaults to Qt::NonModal (0)."""

    PROPERTIES = {"value": 0, "minimum": 0, "maximum": 100, "labelText": "", "minimumDuration": 4000,
                  "wasCanceled": False, "autoClose": True, "autoReset": True}
    SIGNALS = ("canceled",)

    def setValue(self, value):
        self.value = value

    def setCancelButtonText(self, text):
        object.__setattr__(self, "cancelButtonText", text)

    def cancel(self):
        self._props["wasCanceled"] = True
        self.canceled.emit()


class QFileDialog(QWidget):
    answer = ""

    @staticmethod
    def getSaveFileName(*args):
        return QFileDialog.answer

    @staticmethod
    def getExistingDirectory(*args):
        return QFileDialog.answer


class QTimer(QObject):
    """Qt's QTimer (``qtimer.h``): ``interval`` and ``singleShot`` properties, ``timeout`` signal, ``start``/``stop``/``isActive``.

    There is no event loop here: :func:`run_timers` stands in for it, firing every active timer in turn
    (on the calling thread, the main thread, as Qt fires a timer in the thread that owns it).
    """

    PROPERTIES = {"interval": 0, "singleShot": False}
    SIGNALS = ("timeout",)
    #: The timers started and not stopped, as Qt's event loop holds them.
    active = []

    def start(self, msec=None):
        if msec is not None:
            self.interval = int(msec)
        if self not in QTimer.active:
            QTimer.active.append(self)

    def stop(self):
        if self in QTimer.active:
            QTimer.active.remove(self)

    def isActive(self):
        return self in QTimer.active

    @staticmethod
    def singleShot(msec, slot):
        timer = QTimer()
        timer._props["singleShot"] = True  # the property (the name is also this static method)
        timer.timeout.connect(slot)
        timer.start(msec)


def run_timers(until=None, timeout=120.0, tick=0.005):
    """The event loop for timers: fire the active timers (each after its interval) until none is left or ``until()``.

    Raises ``TimeoutError`` if timers are still running after ``timeout`` seconds (a run that never ends).
    """
    import time

    end = time.monotonic() + timeout
    while QTimer.active and not (until is not None and until()):
        if time.monotonic() > end:
            raise TimeoutError(f"{len(QTimer.active)} timer(s) still active after {timeout} s")
        time.sleep(max(tick, min(t.interval for t in QTimer.active) / 1000.0))
        for timer in list(QTimer.active):
            if timer._props["singleShot"]:
                timer.stop()
            timer.timeout.emit()


class Qt:
    """The Qt namespace values the module uses (Qt::WindowModality)."""

    NonModal = 0
    WindowModal = 1
    ApplicationModal = 2
    WaitCursor = 3
    Vertical = 2
    Horizontal = 1


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def exists(self):
        return self.path.is_file()


# --- CTK (Libs/Widgets/*.h: the Q_PROPERTY and Q_SIGNALS lists) ---


class ctkCollapsibleButton(QAbstractButton):
    PROPERTIES = {"collapsed": False, "collapsedHeight": 14, "flat": False, "contentsFrameShape": 0, "contentsFrameShadow": 0,
                  "contentsLineWidth": 1, "contentsMidLineWidth": 0, "buttonTextAlignment": 0, "indicatorAlignment": 0}
    SIGNALS = ("contentsCollapsed",)


class ctkPathLineEdit(QWidget):
    """``ctkPathLineEdit.h``: ``currentPathChanged(const QString&)``; ``Filters`` flags."""

    Dirs, Files, Drives, NoDotAndDotDot, AllEntries, Readable, Writable, Executable = 1, 2, 4, 0x1000, 7, 0x10, 0x20, 0x40
    PROPERTIES = {"label": "", "filters": 0, "currentPath": "", "options": 0, "settingKey": "", "showBrowseButton": True,
                  "showHistoryButton": True, "sizeAdjustPolicy": 0, "minimumContentsLength": 0, "nameFilters": []}
    SIGNALS = ("validInputChanged", "currentPathChanged")

    def setCurrentPath(self, path):
        self.currentPath = path

    def _setProp(self, name, value):
        old = self._props.get(name)
        super()._setProp(name, value)
        if name == "currentPath" and old != value:
            self.currentPathChanged.emit(value)


class ctkSliderWidget(_RangeMixin, QWidget):
    """``ctkSliderWidget.h``: double-valued slider with spin box; ``valueChanged(double)``."""

    _INTEGER = False
    PROPERTIES = {"decimals": 2, "singleStep": 1.0, "pageStep": 10.0, "minimum": 0.0, "maximum": 99.0, "value": 0.0,
                  "prefix": "", "suffix": "", "tickInterval": 0.0, "tickPosition": 0, "synchronizeSiblings": 0,
                  "spinBoxAlignment": 0, "tracking": True, "spinBoxVisible": True, "popupSlider": False,
                  "invertedAppearance": False, "invertedControls": False}
    SIGNALS = ("valueChanged", "valueIsChanging", "decimalsChanged")


class ctkComboBox(QComboBox):
    PROPERTIES = {"defaultText": "", "forceDefault": False}


class ctkDoubleSpinBox(QDoubleSpinBox):
    pass


class ctkDoubleSlider(QSlider):
    pass


# --- qMRML (Libs/MRML/Widgets/qMRMLWidget.h, qMRMLNodeComboBox.h) ---


class qMRMLWidget(QWidget):
    SIGNALS = ("mrmlSceneChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        object.__setattr__(self, "_scene", None)

    def setMRMLScene(self, scene):
        object.__setattr__(self, "_scene", scene)
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qSlicerScriptedLoadableModuleWidget(qMRMLWidget):
    """The widget Slicer gives a scripted module as ``parent`` (Base/QTGUI/qSlicerAbstractModuleWidget.h: isEntered)."""

    PROPERTIES = {"isEntered": False}


class qMRMLNodeComboBox(QWidget):
    PROPERTIES = {"currentNodeID": "", "currentNodeId": "", "nodeTypes": [], "showHidden": False, "showChildNodeTypes": True,
                  "hideChildNodeTypes": [], "baseName": "", "noneEnabled": False, "addEnabled": True, "removeEnabled": True,
                  "editEnabled": False, "renameEnabled": False, "interactionNodeSingletonTag": "",
                  "selectNodeUponCreation": True, "noneDisplay": "None", "sizeAdjustPolicy": 0}
    SIGNALS = ("currentNodeChanged", "currentNodeIDChanged", "nodeAdded", "nodeAddedByUser", "nodeAboutToBeRemoved",
               "nodeActivated", "mrmlSceneChanged")

    def __init__(self, parent=None):
        super().__init__(parent)
        object.__setattr__(self, "_scene", None)
        object.__setattr__(self, "_current", None)

    def setMRMLScene(self, scene):
        object.__setattr__(self, "_scene", scene)

    def mrmlScene(self):
        return self._scene

    def currentNode(self):
        node = self._current
        if node is not None and (self._scene is None or self._scene.GetNodeByID(node.GetID()) is not node):
            return None  # removed from the scene: the real combo box drops it
        return node

    def setCurrentNode(self, node):
        # qMRMLNodeComboBox.cxx: setCurrentNode -> setCurrentNodeID; an ID not in the scene's list selects none.
        if node is not None and (self._scene is None or self._scene.GetNodeByID(node.GetID()) is not node):
            node = None
        if node is not None and self.nodeTypes and not any(node.IsA(t) for t in self.nodeTypes):
            return  # not a listed type: the real combo box cannot show it
        if node is not self._current:
            object.__setattr__(self, "_current", node)
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(node.GetID() if node is not None else "")


class qMRMLSliderWidget(ctkSliderWidget):
    pass


class qMRMLSpinBox(ctkDoubleSpinBox):
    pass


WIDGET_CLASSES = {
    cls.__name__: cls
    for cls in (QWidget, QLabel, QFrame, QPushButton, QCheckBox, QLineEdit, QComboBox, QSpinBox, QSlider, QDoubleSpinBox,
                ctkCollapsibleButton, ctkPathLineEdit, ctkSliderWidget, ctkComboBox, ctkDoubleSpinBox, ctkDoubleSlider,
                qMRMLWidget, qMRMLNodeComboBox, qMRMLSliderWidget, qMRMLSpinBox)
}
LAYOUT_CLASSES = {cls.__name__: cls for cls in (QVBoxLayout, QHBoxLayout, QFormLayout, QGridLayout)}


def qt_module() -> types.ModuleType:
    mod = types.ModuleType("qt")
    for name, value in list(globals().items()):
        if name.startswith("Q") or name == "Qt":
            setattr(mod, name, value)
    mod.QUiLoader = UiLoader
    return mod


def ctk_module() -> types.ModuleType:
    mod = types.ModuleType("ctk")
    for name, value in list(globals().items()):
        if name.startswith("ctk"):
            setattr(mod, name, value)
    return mod


# ----------------------------------------------------------------------------
# The .ui loader (what QUiLoader does with the file, in the fake widgets)
# ----------------------------------------------------------------------------


def _property_value(prop, cls):
    kind = next(iter(prop))
    text = kind.text or ""
    if kind.tag == "string":
        return text
    if kind.tag == "bool":
        return text == "true"
    if kind.tag == "number":
        return int(text)
    if kind.tag == "double":
        return float(text)
    if kind.tag == "stringlist":
        return [s.text or "" for s in kind.findall("string")]
    if kind.tag == "set":
        value = 0
        for part in text.split("|"):
            owner, _, flag = part.partition("::")
            value |= getattr(WIDGET_CLASSES.get(owner, cls), flag)
        return value
    if kind.tag == "enum":
        owner, _, name = text.partition("::")
        return getattr(Qt, name, 0) if owner == "Qt" else text
    return text  # rect, size, ...: kept as text


class UiLoader:
    """Builds the fake widgets from a Qt Designer file; refuses classes and properties the real widgets lack."""

    def load(self, qfile):
        tree = ET.parse(qfile.path if isinstance(qfile, QFile) else qfile)
        root = tree.getroot().find("widget")
        top = self._widget(root, None)
        for conn in tree.getroot().iter("connection"):
            sender = top if conn.findtext("sender") == top.objectName else _find(top, conn.findtext("sender"))
            receiver = _find(top, conn.findtext("receiver"))
            slot_name = conn.findtext("slot").split("(", 1)[0]
            sender.connect(conn.findtext("signal"), getattr(receiver, slot_name))
        return top

    def _widget(self, elem, parent):
        cls_name = elem.get("class")
        if cls_name not in WIDGET_CLASSES:
            raise RuntimeError(f"QUiLoader: no widget class {cls_name!r}")
        cls = WIDGET_CLASSES[cls_name]
        widget = cls(parent)
        widget.objectName = elem.get("name")
        self._properties(widget, elem)
        for child in elem:
            if child.tag == "layout":
                self._layout(child, widget)
            elif child.tag == "widget":
                self._widget(child, widget)
        return widget

    def _properties(self, widget, elem):
        for prop in elem.findall("property"):
            name = prop.get("name")
            value = _property_value(prop, type(widget))
            if prop.get("stdset") == "0":
                widget.setProperty(name, value)
            elif name in type(widget).allProperties():
                widget.setProperty(name, value)
            else:
                raise RuntimeError(f"QUiLoader: {type(widget).__name__} has no property {name!r}")

    def _layout(self, elem, owner):
        layout = LAYOUT_CLASSES[elem.get("class")](owner if isinstance(owner, QWidget) else None)
        if not isinstance(owner, QWidget):
            owner.addLayout(layout)
        for item in elem.findall("item"):
            for child in item:
                if child.tag == "widget":
                    layout.addWidget(self._widget(child, layout._owner))
                elif child.tag == "layout":
                    self._layout(child, layout)
        return layout


def _find(top, name):
    for w in top.findChildren():
        if w.objectName == name:
            return w
    raise RuntimeError(f"QUiLoader: no widget {name!r}")


# ----------------------------------------------------------------------------
# slicer.parameterNodeWrapper (Base/Python/slicer/parameterNodeWrapper/)
# ----------------------------------------------------------------------------


class Validator(abc.ABC):
    @abc.abstractmethod
    def validate(self, value): ...


class IsInstance(Validator):
    """validators.py: None passes; another type is a TypeError."""

    def __init__(self, classtype):
        self.classtype = classtype

    def validate(self, value):
        if value is not None and not isinstance(value, self.classtype):
            raise TypeError(f"Value must be of type '{self.classtype}', is type '{type(value)}' value '{value}'")


class NotNone(Validator):
    def validate(self, value):
        if value is None:
            raise ValueError("Value must not be None")


class WithinRange(Validator):
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Choice(Validator):
    def __init__(self, choices):
        self.choices = choices

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


@dataclasses.dataclass
class ParameterInfo:
    """parameterInfo.py."""

    basename: str
    serializer: typing.Any
    default: typing.Any
    unalteredType: typing.Any


@dataclasses.dataclass
class Default:
    value: typing.Any


def unannotatedType(t):
    return typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t


def splitAnnotations(t):
    if typing.get_origin(t) is typing.Annotated:
        base, *annotations = typing.get_args(t)
        return base, list(annotations)
    return t, []


class _Serializer:
    """serializers.py: Number, String, Path, Bool, Node (cached) and Enum (not cached) serializers, with validators."""

    def __init__(self, type_, validators):
        self.type = type_
        self.validators = validators

    def supportsCaching(self):
        return not issubclass(self.type, enum.Enum)

    def default(self):
        if self.type in (int, float):
            return 0
        if self.type is bool:
            return False
        if issubclass(self.type, enum.Enum):
            return next(iter(self.type))
        if _isNode(self.type):
            return None
        return self.type()

    def isIn(self, node, name):
        return node.HasParameter(name)

    def write(self, node, name, value):
        for validator in self.validators:
            validator.validate(value)
        if _isNode(self.type):
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        elif issubclass(self.type, enum.Enum):
            node.SetParameter(name, value.name)
        elif self.type is bool:
            node.SetParameter(name, "True" if value else "False")
        else:
            node.SetParameter(name, str(value))

    def read(self, node, name):
        if _isNode(self.type):
            return node.GetNodeReference(name)
        text = node.GetParameter(name)
        if issubclass(self.type, enum.Enum):
            try:
                return self.type[text]
            except KeyError as ex:
                raise ValueError(f"Found {text!r} in parameter node but it is not a name in {self.type!r}") from ex
        if self.type is bool:
            return text == "True"
        return self.type(text)


def _isNode(t):
    return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)


def createSerializer(t):
    base, annotations = splitAnnotations(t)
    if base in (int, float):
        validators = [NotNone(), IsInstance((int, float) if base is float else int)]
    elif base in (str, bool) or base in (pathlib.Path, pathlib.PurePath, pathlib.PosixPath):
        validators = [NotNone(), IsInstance(base)]
    elif _isNode(base) or (isinstance(base, type) and issubclass(base, enum.Enum)):
        validators = [IsInstance(base)]
    else:
        raise Exception(f"Unable to create serializer for {t}")
    return _Serializer(base, validators + [a for a in annotations if isinstance(a, Validator)])


class _Cached:
    """wrapper.py ``_CachedParameterWrapper``: reads at creation, observes the node to refresh."""

    def __init__(self, info, node):
        self.info, self.node = info, node
        self._value = info.serializer.read(node, info.basename)
        selfRef = weakref.ref(self)
        self._tag = node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda c, e: selfRef() and selfRef()._onModified())
        self._writing = False

    def __del__(self):
        self.node.RemoveObserver(self._tag)

    def _onModified(self):
        if not self._writing:
            self._value = self.info.serializer.read(self.node, self.info.basename)

    def read(self):
        return self._value

    def write(self, value):
        self._writing = True
        try:
            with slicer.util.NodeModify(self.node):
                self.info.serializer.write(self.node, self.info.basename, value)
                self._value = self.info.serializer.read(self.node, self.info.basename)
        finally:
            self._writing = False


class _Uncached:
    def __init__(self, info, node):
        self.info, self.node = info, node

    def read(self):
        return self.info.serializer.read(self.node, self.info.basename)

    def write(self, value):
        self.info.serializer.write(self.node, self.info.basename, value)


# --- GUI connectors (guiConnectors.py): exact widget types, as the real canRepresent checks ---


class GuiConnector:
    def __init__(self, widget, datatype=None, version=None):
        self._widget = widget
        self._callback = None

    def onChanged(self, callback):
        self._callback = callback
        if callback is None:
            self._signal().disconnect(self.changed)
        else:
            self._signal().connect(self.changed)

    def changed(self):
        if self._callback:
            self._callback()

    def widget(self):
        return self._widget

    # Most connectors move one property and listen to one signal (subclasses name them).
    SIGNAL = ""
    ATTR = ""

    def _signal(self):
        return getattr(self._widget, self.SIGNAL)

    def read(self):
        return getattr(self._widget, self.ATTR)

    def write(self, value):
        setattr(self._widget, self.ATTR, value)


class _IntConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype, version):
        return unannotatedType(datatype) is int and type(widget) in (QSlider, QSpinBox)

    def __init__(self, widget, datatype, version):
        super().__init__(widget)
        within = next((a for a in splitAnnotations(datatype)[1] if isinstance(a, WithinRange)), None)
        if within is not None:
            widget.setRange(within.minimum, within.maximum)
        else:
            widget.setMinimum(-(2**31))
            widget.setMaximum(2**31 - 1)

    SIGNAL, ATTR = "valueChanged", "value"


class _FloatConnector(GuiConnector):
    TYPES = (QDoubleSpinBox, ctkSliderWidget, qMRMLSliderWidget, ctkDoubleSlider, ctkDoubleSpinBox, qMRMLSpinBox)

    @staticmethod
    def canRepresent(widget, datatype, version):
        accepted = (float, int) if version >= (5, 10) else (float,)
        return unannotatedType(datatype) in accepted and type(widget) in _FloatConnector.TYPES

    def __init__(self, widget, datatype, version):
        super().__init__(widget)
        self._integer = unannotatedType(datatype) is int
        within = next((a for a in splitAnnotations(datatype)[1] if isinstance(a, WithinRange)), None)
        if type(widget) in (ctkSliderWidget, qMRMLSliderWidget) and within is None:
            raise RuntimeError("Cannot have a connection to ctkSliderWidget where the float types is unbounded.")
        if within is not None:
            widget.minimum, widget.maximum = within.minimum, within.maximum
        else:
            widget.minimum, widget.maximum = float("-inf"), float("inf")

    def _signal(self):
        return self._widget.valueChanged

    def read(self):
        return int(self._widget.value) if self._integer else self._widget.value

    def write(self, value):
        self._widget.value = int(value) if self._integer else value


class _ChoiceConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype, version):
        return type(widget) in (QComboBox, ctkComboBox) and unannotatedType(datatype) in (int, float, str, bool)

    def __init__(self, widget, datatype, version):
        super().__init__(widget)
        choice = next((a for a in splitAnnotations(datatype)[1] if isinstance(a, Choice)), None)
        if choice is None:
            raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
        self._choices = choice.choices
        widget.clear()
        for c in self._choices:
            widget.addItem(str(c))

    def _signal(self):
        return self._widget.currentIndexChanged

    def read(self):
        return self._choices[self._widget.currentIndex]

    def write(self, value):
        for index, c in enumerate(self._choices):
            if c == value:
                self._widget.currentIndex = index
                return
        raise ValueError(f"Unable to find value {value} in choices {self._choices}")


class _EnumConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype, version):
        t = unannotatedType(datatype)
        return type(widget) in (QComboBox, ctkComboBox) and isinstance(t, type) and issubclass(t, enum.Enum)

    def __init__(self, widget, datatype, version):
        super().__init__(widget)
        t = unannotatedType(datatype)
        label = getattr(t, "label", lambda x: x.name)
        self._labelToEnum = [(label(e), e) for e in t]
        widget.clear()
        for text, _e in self._labelToEnum:
            widget.addItem(text)

    def _signal(self):
        return self._widget.currentIndexChanged

    def read(self):
        return self._labelToEnum[self._widget.currentIndex][1]

    def write(self, value):
        for index, (_label, e) in enumerate(self._labelToEnum):
            if e == value:
                self._widget.currentIndex = index
                return
        # The real write formats self._choices, which the Enum connector lacks: an AttributeError on 5.8 and 5.10.
        raise AttributeError("'QComboBoxToEnumConnector' object has no attribute '_choices'")


class _LineEditConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype, version):
        return type(widget) is QLineEdit and unannotatedType(datatype) is str

    def __init__(self, widget, datatype, version):
        super().__init__(widget)
        self._version = version

    def _signal(self):
        return self._widget.textChanged

    def read(self):
        return self._widget.text

    def write(self, value):
        if self._version < (5, 10) or value != self._widget.text:
            self._widget.text = value


class _PathConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype, version):
        return type(widget) is ctkPathLineEdit and unannotatedType(datatype) in (
            pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)

    def __init__(self, widget, datatype, version):
        super().__init__(widget)
        self._type = unannotatedType(datatype)

    def _signal(self):
        return self._widget.currentPathChanged

    def read(self):
        return self._type(self._widget.currentPath)

    def write(self, value):
        self._widget.currentPath = str(value)


class _NodeConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype, version):
        return type(widget) is qMRMLNodeComboBox and _isNode(unannotatedType(datatype))

    def __init__(self, widget, datatype, version):
        super().__init__(widget)
        widget.nodeTypes = [unannotatedType(datatype).__name__]

    def _signal(self):
        return self._widget.currentNodeChanged

    def read(self):
        return self._widget.currentNode()

    def write(self, value):
        self._widget.setCurrentNode(value)


class _CheckBoxConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype, version):
        return unannotatedType(datatype) is bool and type(widget) is QCheckBox

    SIGNAL, ATTR = "toggled", "checked"


CONNECTORS = (_CheckBoxConnector, _IntConnector, _FloatConnector, _ChoiceConnector, _EnumConnector, _LineEditConnector,
              _PathConnector, _NodeConnector)


def createGuiConnector(widget, datatype, version):
    for connector in CONNECTORS:
        if connector.canRepresent(widget, datatype, version):
            return connector(widget, datatype, version)
    raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{type(widget)}'.")


def make_parameter_node_wrapper(version):
    """``@parameterNodeWrapper`` of Slicer ``version`` (wrapper.py ``_processClass``)."""

    def parameterNodeWrapper(classtype):
        hints = typing.get_type_hints(classtype, include_extras=True)
        allParameters = {}
        for name, t in hints.items():
            serializer = createSerializer(t)
            default = Default(getattr(classtype, name)) if hasattr(classtype, name) else Default(serializer.default())
            allParameters[name] = ParameterInfo(name, serializer, default, t)

        def __init__(self, parameterNode, prefix=None):
            self.parameterNode = parameterNode
            self._parameterGUIs = {}
            self._nextParameterGUIsTag = 0
            self._updatingGUIFromParameterNode = False
            for info in allParameters.values():
                if not info.serializer.isIn(parameterNode, info.basename):
                    info.serializer.write(parameterNode, info.basename, info.default.value)
                impl = _Cached(info, parameterNode) if info.serializer.supportsCaching() else _Uncached(info, parameterNode)
                setattr(self, f"_{name_of(info)}_impl", impl)

        def name_of(info):
            return info.basename

        def checkName(name):
            if name not in allParameters:
                raise ValueError(f"Cannot find a param with the given name: {name}")

        def getValue(self, name):
            checkName(name)
            return getattr(self, f"_{name}_impl").read()

        def setValue(self, name, value):
            checkName(name)
            getattr(self, f"_{name}_impl").write(value)

        def updateGui(self):
            if self._updatingGUIFromParameterNode:
                return
            try:
                self._updatingGUIFromParameterNode = True
                with slicer.util.NodeModify(self):
                    for mapping in self._parameterGUIs.values():
                        for name, connector in mapping.items():
                            connector.write(self.getValue(name))
            finally:
                self._updatingGUIFromParameterNode = False

        def callbackFor(self, name, connector):
            def callback():
                with slicer.util.NodeModify(self):
                    if not self._updatingGUIFromParameterNode:
                        self.setValue(name, connector.read())

            return callback

        def connectParametersToGui(self, mapping):
            for name in mapping:
                checkName(name)
            connectors = {name: createGuiConnector(w, allParameters[name].unalteredType, version) for name, w in mapping.items()}
            tag = self._nextParameterGUIsTag
            self._nextParameterGUIsTag += 1
            self._parameterGUIs[tag] = connectors
            for name, connector in connectors.items():
                connector.write(self.getValue(name))
                connector.onChanged(callbackFor(self, name, connector))
            self.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: updateGui(self))  # never removed
            return tag

        def connectGui(self, gui):
            mapping = {}
            children = gui.findChildren(QWidget) if getattr(gui, "isWidgetType", lambda: False)() else gui.__dict__.values()
            for widget in children:
                if widget.property("SlicerParameterName"):
                    mapping[widget.property("SlicerParameterName")] = widget
            tag = connectParametersToGui(self, mapping)
            return tag if version >= (5, 10) else None  # 5.8's _connectGui has no return statement

        def disconnectGui(self, tag):
            if tag in self._parameterGUIs:
                for connector in self._parameterGUIs[tag].values():
                    connector.onChanged(None)
                del self._parameterGUIs[tag]

        for info in allParameters.values():
            setattr(classtype, info.basename, property(
                lambda self, n=info.basename: getattr(self, f"_{n}_impl").read(),
                lambda self, value, n=info.basename: getattr(self, f"_{n}_impl").write(value),
            ))
        classtype.__init__ = __init__
        members = dict(
            allParameters=allParameters, _is_parameter_node_wrapper=True, getValue=getValue, setValue=setValue,
            default=lambda self, n: allParameters[n].default, isCached=lambda self, n: isinstance(getattr(self, f"_{n}_impl"), _Cached),
            dataType=staticmethod(lambda n: allParameters[n].unalteredType), connectGui=connectGui,
            connectParametersToGui=connectParametersToGui, disconnectGui=disconnectGui,
            StartModify=lambda self: self.parameterNode.StartModify(),
            EndModify=lambda self, was: self.parameterNode.EndModify(was),
            AddObserver=lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority),
            RemoveObserver=lambda self, tag: self.parameterNode.RemoveObserver(tag),
            Modified=lambda self: self.parameterNode.Modified(),
        )
        for key, value in members.items():
            if hasattr(classtype, key):
                raise ValueError(f"Cannot use reserved name '{key}' in a parameterNodeWrapper")
            setattr(classtype, key, value)
        return classtype

    return parameterNodeWrapper


def parameter_node_wrapper_module(version) -> types.ModuleType:
    mod = types.ModuleType("slicer.parameterNodeWrapper")
    mod.parameterNodeWrapper = make_parameter_node_wrapper(version)
    mod.Choice = Choice
    mod.WithinRange = WithinRange
    mod.Default = Default
    return mod


# ----------------------------------------------------------------------------
# slicer.ScriptedLoadableModule (Base/Python/slicer/ScriptedLoadableModule.py, equal on 5.8.1 and 5.10.0)
# ----------------------------------------------------------------------------


def scripted_loadable_module(module_dir: pathlib.Path) -> types.ModuleType:
    mod = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = type(self).__name__

        def resourcePath(self, filename):
            return str(module_dir / "Resources" / filename)

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            super().__init__()
            self.moduleName = type(self).__name__[: -len("Widget")]
            self.developerMode = False
            if not parent:
                self.parent = qSlicerScriptedLoadableModuleWidget()
                self.parent.setLayout(QVBoxLayout())
                self.parent.setMRMLScene(slicer.mrmlScene)
            else:
                self.parent = parent
            self.layout = self.parent.layout()
            if not parent:
                self.setup()
                self.parent.show()

        def resourcePath(self, filename):
            return str(module_dir / "Resources" / filename)

        def setup(self):
            pass  # the real one adds the Reload & Test section in developer mode

        def cleanup(self):
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            super().__init__()
            self.moduleName = type(self).__name__[: -len("Logic")]
            self.isSingletonParameterNode = True

        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node:
                if node.GetAttribute("ModuleName") != self.moduleName:
                    node.SetAttribute("ModuleName", self.moduleName)
                return node
            return slicer.mrmlScene.AddNode(self.createParameterNode())

        def createParameterNode(self):
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, requestedDelay=None, msec=None):
            pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest):
        setattr(mod, cls.__name__, cls)
    return mod


# ----------------------------------------------------------------------------
# slicer.app and the GUI half of slicer.util (Base/Python/slicer/util.py)
# ----------------------------------------------------------------------------


class App:
    """``slicer.app``: version properties, event processing (with a hook for tests), testing mode."""

    def __init__(self, version):
        self.majorVersion, self.minorVersion = version
        self.onProcessEvents = None
        self.processedEvents = 0
        self.testing = False

    def processEvents(self):
        self.processedEvents += 1
        if self.onProcessEvents is not None:
            self.onProcessEvents()

    def testingEnabled(self):
        return self.testing

    def layoutManager(self):
        return None

    def setOverrideCursor(self, cursor):
        pass

    def restoreOverrideCursor(self):
        pass


class Dialogs:
    """Records what ``slicer.util``'s dialog functions would show; answers confirmations with ``confirm``."""

    def __init__(self):
        self.shown = []
        self.confirm = True
        self.progress = []

    def kinds(self, kind):
        return [text for k, text in self.shown if k == kind]


def install_gui_util(monkeypatch, dialogs: Dialogs):
    """Patch the GUI functions of slicer.util (slicer-core has the data half only)."""
    util = slicer.util

    def loadUI(path):
        qfile = QFile(path)
        if not qfile.exists():
            raise RuntimeError("Could not load UI file: file not found " + str(path) + "\n\n")
        return UiLoader().load(qfile)

    def childWidgetVariables(widget):
        ui = type("", (), {})()
        for child in widget.findChildren():
            if child.objectName:
                setattr(ui, child.objectName, child)
        return ui

    def errorDisplay(text, windowTitle=None, **kwargs):
        dialogs.shown.append(("error", text))

    def warningDisplay(text, windowTitle=None, **kwargs):
        dialogs.shown.append(("warning", text))

    def infoDisplay(text, windowTitle=None, **kwargs):
        dialogs.shown.append(("info", text))

    def confirmOkCancelDisplay(text, windowTitle=None, **kwargs):
        dialogs.shown.append(("confirm", text))
        return dialogs.confirm

    @contextlib.contextmanager
    def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
        # util.py: shows errorDisplay(message + error) unless testing, then re-raises.
        try:
            yield
        except Exception as e:
            if show and not slicer.app.testingEnabled():
                errorDisplay(f"{message}\n\n{e}" if message is not None else str(e))
            raise

    def createProgressDialog(parent=None, value=0, maximum=100, labelText="", windowTitle="Processing...", **kwargs):
        dialog = QProgressDialog(parent)
        dialog.minimumDuration = 0
        dialog.maximum = maximum
        dialog.value = value
        dialog.windowTitle = windowTitle
        dialog.labelText = labelText
        for key, argument in kwargs.items():
            if key in QProgressDialog.allProperties():  # util.py: hasattr(progressIndicator, key)
                setattr(dialog, key, argument)
        dialogs.progress.append(dialog)
        return dialog

    for name, fn in dict(loadUI=loadUI, childWidgetVariables=childWidgetVariables, errorDisplay=errorDisplay,
                         warningDisplay=warningDisplay, infoDisplay=infoDisplay, confirmOkCancelDisplay=confirmOkCancelDisplay,
                         tryWithErrorDisplay=tryWithErrorDisplay, createProgressDialog=createProgressDialog,
                         mainWindow=lambda: None, showStatusMessage=lambda text, duration=0: dialogs.shown.append(("status", text)),
                         reloadScriptedModule=lambda name: dialogs.shown.append(("reload", name))).items():
        monkeypatch.setattr(util, name, fn, raising=False)
