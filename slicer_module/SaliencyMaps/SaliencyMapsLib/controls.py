"""PythonQt controls for method parameters, rendered from the engine's host-neutral control descriptions.

What control a parameter gets (kind, range, step, choices, help, how
per-axis text is read) is decided once for napari and Slicer in
``napari_xai.session.controls``; this module only makes the PythonQt widget
for one :class:`~napari_xai.session.controls.Control` and wires its edits to
a ``store(value)`` callback. The ``qt`` module is passed in, so that this
package imports no Qt itself (it is tested with stand-ins).
"""

from __future__ import annotations

from typing import Any, Callable


def form_label(control: Any) -> str:
    """The form row's label: ``Blur sigma:``."""
    return control.label.capitalize() + ":"


def make_control(qt: Any, control: Any, value: Any, store: Callable[[Any], None]) -> Any:
    """A widget for ``control`` showing ``value``; each edit calls ``store`` with the value the method takes.

    Per-axis text that is not numbers is shown in red and not stored (the
    control's :meth:`~napari_xai.session.controls.Control.parse` raises).
    """
    if control.kind == "bool":
        widget = qt.QCheckBox()
        widget.checked = bool(value)
        widget.connect("toggled(bool)", store)
    elif control.kind == "int":
        widget = qt.QSpinBox()
        widget.setRange(int(control.minimum), int(control.maximum))
        widget.value = int(value)
        widget.connect("valueChanged(int)", store)
    elif control.kind == "float":
        widget = qt.QDoubleSpinBox()
        widget.decimals = control.decimals
        widget.singleStep = control.step
        widget.setRange(control.minimum, control.maximum)
        widget.value = float(value)
        widget.connect("valueChanged(double)", store)
    elif control.kind == "choice":
        widget = qt.QComboBox()
        for choice in control.choices:
            widget.addItem(choice)
        widget.currentText = str(value)
        widget.connect("currentTextChanged(QString)", lambda text: store(control.parse(text)))
    elif control.kind == "per_axis":
        widget = qt.QLineEdit(control.text(value))

        def onEdited(widget=widget):
            from napari_xai.session.controls import ControlTextError

            try:
                parsed = control.parse(widget.text)
            except ControlTextError:
                widget.styleSheet = "color: red"
                return
            widget.styleSheet = ""
            store(parsed)

        widget.connect("editingFinished()", onEdited)
    else:
        widget = qt.QLineEdit(str(value))
        widget.connect("textChanged(QString)", store)
    widget.toolTip = control.help
    widget.objectName = f"methodParameter_{control.name}"
    return widget
