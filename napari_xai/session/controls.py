"""One description of the control for each method parameter, from its :class:`~napari_xai.engine.ParamSpec`.

napari renders a :class:`Control` as a magicgui widget
(``napari_xai/_napari/_logic.py``), Slicer as a PythonQt widget
(``SaliencyMapsLib/controls.py``); the rules are decided here once:

- choices first (a closed set), then booleans, then per-axis numbers, then
  plain numbers, else free text;
- numbers are bounded by the spec, unbounded ends by ``±2**31`` (int) and
  ``±1e9`` (float); a float's step is a tenth of its default's order of
  magnitude (of its range's when the default is zero), its decimals show
  that step;
- per-axis text takes one value or ``z, y, x`` (commas, semicolons or
  spaces); text that is not numbers raises :class:`ControlTextError`,
  empty text is the default.

The engine checks the ranges (its messages name the fix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from napari_xai.engine import MethodError, ParamSpec

#: Bounds of an int control whose spec has none.
INT_RANGE = (-(2**31), 2**31 - 1)
#: Bounds of a float control whose spec has none.
FLOAT_RANGE = (-1e9, 1e9)
#: Said after a per-axis parameter's help.
PER_AXIS_HINT = "One value, or one per axis: z, y, x."


class ControlTextError(MethodError):
    """Text in a per-axis control that is not one number or one per axis."""


@dataclass(frozen=True)
class Control:
    """What control to show for one method parameter, and how to read it back.

    Parameters
    ----------
    name : str
        The parameter's keyword.
    kind : str
        ``bool`` (check box), ``int`` (spin box), ``float`` (double spin
        box), ``choice`` (combo box of ``choices``), ``per_axis`` (line edit
        taking one number or ``z, y, x``) or ``text`` (line edit).
    label : str
        The name for a form row (``blur sigma``).
    default : Any
        The spec's default.
    help : str
        The tooltip: the spec's help, the per-axis hint, the default.
    minimum, maximum : float or None
        Bounds of number controls.
    choices : tuple of str
        The combo box's entries.
    step : float
        A float spin box's step.
    decimals : int
        A float spin box's decimals.
    value_type : str
        ``int``, ``float``, ``bool`` or ``str``: the type values are read back as.
    """

    name: str
    kind: str
    label: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    step: float = 1.0
    decimals: int = 0
    value_type: str = "str"

    @property
    def tooltip(self) -> str:
        """The help text (a tooltip)."""
        return self.help

    def parse(self, raw: Any) -> Any:
        """A control's value as the method takes it: per-axis text parsed, a choice's text in the parameter's type.

        Raises
        ------
        ControlTextError
            Per-axis text that is not numbers.
        """
        if self.kind == "per_axis" and isinstance(raw, str):
            if not raw.strip():
                return self.default
            return parse_per_axis(raw, int if self.value_type == "int" else float, self.name)
        if self.kind == "choice" and isinstance(raw, str):
            return convert_choice(raw, self.value_type)
        return raw

    def text(self, value: Any) -> str:
        """A value as a line edit shows it."""
        return format_value(value)


def control_for(p: ParamSpec) -> Control:
    """The :class:`Control` of one parameter spec (the rules in the module docstring)."""
    vt = getattr(p.type, "__name__", "str")
    label = p.name.replace("_", " ")
    help_text = p.help + (f" {PER_AXIS_HINT}" if p.per_axis and not p.choices else "")
    help_text += f" Default: {format_value(p.default)}." if p.default not in ("", None) else ""
    if p.choices:
        return Control(p.name, "choice", label, p.default, help_text, choices=tuple(str(c) for c in p.choices), value_type=vt)
    if p.type is bool:
        return Control(p.name, "bool", label, bool(p.default), help_text, value_type=vt)
    if p.per_axis:
        return Control(p.name, "per_axis", label, p.default, help_text, p.min, p.max, value_type=vt)
    if p.type is int:
        lo = int(p.min) if p.min is not None else INT_RANGE[0]
        hi = int(p.max) if p.max is not None else INT_RANGE[1]
        return Control(p.name, "int", label, int(p.default), help_text, lo, hi, value_type=vt)
    if p.type is float:
        lo = float(p.min) if p.min is not None else FLOAT_RANGE[0]
        hi = float(p.max) if p.max is not None else FLOAT_RANGE[1]
        step = float_step(float(p.default), lo, hi)
        return Control(p.name, "float", label, float(p.default), help_text, lo, hi, step=step, decimals=float_decimals(step, float(p.default)), value_type=vt)
    return Control(p.name, "text", label, "" if p.default is None else str(p.default), help_text, value_type=vt)


def controls_for(method_spec: Any) -> list[Control]:
    """One :class:`Control` per parameter of a :class:`~napari_xai.engine.MethodSpec`, in the spec's order."""
    return [control_for(p) for p in method_spec.params]


def float_step(default: float, lo: float, hi: float) -> float:
    """A tenth of the default's order of magnitude (of the range's when the default is zero)."""
    span = hi - lo
    scale = abs(default) or (span if math.isfinite(span) and 0 < span < 1e6 else 1.0)
    return float(10 ** math.floor(math.log10(scale)) / 10)


def float_decimals(step: float, default: float) -> int:
    """Decimals that show ``step`` and ``default`` (at least 2, at most 6)."""
    digits = max(0, -math.floor(math.log10(step))) if step > 0 else 2
    text = f"{default:.6f}".rstrip("0")
    shown = len(text.split(".")[1]) if "." in text else 0
    return int(min(6, max(2, digits, shown)))


def parse_per_axis(text: str, type_: type, name: str = "parameter") -> Any:
    """``"8"`` -> 8, ``"8, 8, 4"`` -> (8, 8, 4); the engine checks the bounds and the number of axes.

    Raises
    ------
    ControlTextError
        Empty, or not numbers.
    """
    parts = [t for t in text.replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    try:
        if not parts:
            raise ValueError(text)
        values = tuple(_number(t, type_) for t in parts)
    except ValueError:
        raise ControlTextError(f"The {name.replace('_', ' ')} {text!r} is not a number or one number per axis.",
                               "Type one number, or three separated by commas (z, y, x).") from None
    return values[0] if len(values) == 1 else values


def _number(text: str, type_: type) -> int | float:
    value = float(text)
    if type_ is int:
        return int(value) if value.is_integer() else value  # 2.5 for an int: the engine names the problem
    return value


def format_value(value: Any) -> str:
    """Text for a line edit: ``8`` or ``8, 8, 4`` for per-axis tuples."""
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


def convert_choice(text: str, value_type: str) -> Any:
    """A combo box's text back to the parameter's type (choices may be numbers)."""
    if value_type == "int":
        return int(text)
    if value_type == "float":
        return float(text)
    if value_type == "bool":
        return text == "True"
    return text
