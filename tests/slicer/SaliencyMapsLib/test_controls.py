"""The Slicer widget's controls (``SaliencyMapsLib.controls.make_control``): one per parameter of every method, its edits stored and valid for the engine."""

from __future__ import annotations

from types import SimpleNamespace

from napari_xai.engine import list_methods


class _FakeWidget:
    """Records properties and connections like a PythonQt widget (for the widget's control factory)."""

    def __init__(self, *args):
        self.kind = type(self).__name__
        self.text = args[0] if args else ""
        self.connections = {}
        self.items = []
        self.styleSheet = ""

    def connect(self, signal, slot):
        self.connections[signal] = slot

    def setRange(self, lo, hi):
        self.range = (lo, hi)

    def addItem(self, text):
        self.items.append(text)


FakeQt = SimpleNamespace(**{name: type(name, (_FakeWidget,), {}) for name in ("QCheckBox", "QSpinBox", "QDoubleSpinBox", "QComboBox", "QLineEdit")})


def test_widget_makes_a_working_control_for_every_parameter_of_every_method(module):
    """The widget's factory turns each ParamSpec into a control whose edits land in methodParameters, valid for the engine."""
    from SaliencyMapsLib import params

    from SaliencyMapsLib import controls

    widget = object.__new__(module.SaliencyMapsWidget)  # no Qt: only the control factory and the store are used
    widget._parameterNode = module.SaliencyMapsLogic().getParameterNode()
    for spec in list_methods():
        widget._parameterNode.method = module.SaliencyMethod[spec.name]
        for control in params.control_specs(spec):
            made = controls.make_control(FakeQt, control, control.default, lambda v, name=control.name: widget._storeMethodParameter(name, v))
            assert made.objectName == f"methodParameter_{control.name}" and made.toolTip == control.help
            (signal, slot), = made.connections.items()
            if control.kind == "bool":
                assert made.kind == "QCheckBox"
                slot(not control.default)
                expected = not control.default
            elif control.kind == "int":
                assert made.kind == "QSpinBox" and made.range[0] <= control.default <= made.range[1]
                slot(control.default)
                expected = control.default
            elif control.kind == "float":
                assert made.kind == "QDoubleSpinBox"
                slot(control.default)
                expected = control.default
            elif control.kind == "choice":
                assert made.kind == "QComboBox" and made.items == list(control.choices)
                slot(control.choices[-1])
                expected = control.parse(control.choices[-1])
            elif control.kind == "per_axis":
                assert made.kind == "QLineEdit" and made.text == control.text(control.default)
                made.text = ", ".join([str(control.default)] * 3)
                slot()
                expected = (control.default,) * 3
                made.text = "not a number"
                slot()
                assert made.styleSheet  # flagged, nothing stored
            else:
                assert made.kind == "QLineEdit"
                slot(str(control.default))
                expected = str(control.default)
            stored = params.load_values(widget._parameterNode.methodParameters, spec.name)
            assert stored[control.name] == expected, (spec.name, control.name)
        # What the controls stored is accepted by the engine's own validation.
        spec.validate_params(params.method_params(widget._parameterNode.methodParameters, spec))
