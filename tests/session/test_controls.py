"""One control per parameter spec, the same rules in every host."""

from __future__ import annotations

import pytest

from napari_xai.engine import ParamSpec, list_methods
from napari_xai.session import controls


def test_every_parameter_of_every_method_has_a_control_whose_default_validates():
    kinds = set()
    for spec in list_methods():
        values = {}
        for p in spec.params:
            c = controls.control_for(p)
            kinds.add(c.kind)
            assert c.help.startswith(p.help) and c.name == p.name
            raw = c.text(c.default) if c.kind in ("per_axis", "text") else (str(c.default) if c.kind == "choice" else c.default)
            values[p.name] = c.parse(raw)
            if c.kind in ("int", "float"):
                assert c.minimum <= c.default <= c.maximum
        assert spec.validate_params(values) == spec.validate_params({}), spec.name
    assert {"bool", "int", "float", "choice", "per_axis"} <= kinds


def test_per_axis_text_has_one_rule():
    c = controls.control_for(ParamSpec("window", int, 8, "w", min=1, max=64, per_axis=True))
    assert c.parse("5") == 5 and c.parse("4, 6, 8") == (4, 6, 8) and c.parse("4;6 8") == (4, 6, 8) and c.parse("") == 8
    with pytest.raises(controls.ControlTextError, match="window"):
        c.parse("eight")
    assert controls.parse_per_axis("0.5 1", float) == (0.5, 1.0)
    assert controls.format_value((8, 4, 2)) == "8, 4, 2"


def test_float_step_and_bounds_rule():
    sigma = controls.control_for(ParamSpec("sigma", float, 0.15, "s", min=0.0, max=1.0))
    assert sigma.step == pytest.approx(0.01) and sigma.decimals >= 2 and (sigma.minimum, sigma.maximum) == (0.0, 1.0)
    free = controls.control_for(ParamSpec("scale", float, 0.0, "s"))
    assert (free.minimum, free.maximum) == controls.FLOAT_RANGE and free.step == pytest.approx(0.1)
    n = controls.control_for(ParamSpec("samples", int, 25, "n", min=1))
    assert n.kind == "int" and n.minimum == 1 and n.maximum == controls.INT_RANGE[1]
    choice = controls.control_for(ParamSpec("k", int, 2, "k", choices=(1, 2, 4)))
    assert choice.kind == "choice" and choice.parse("4") == 4
