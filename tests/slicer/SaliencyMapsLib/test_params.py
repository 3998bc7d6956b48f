"""Parameter controls from the registry spec, the parameter store and the target field."""

from __future__ import annotations

import pytest

from napari_xai.engine import ParamSpec, get_method, list_methods
from SaliencyMapsLib import params


def test_controls_are_built_from_every_registered_methods_spec():
    kinds = set()
    for spec in list_methods():
        controls = params.control_specs(spec)
        assert [c.name for c in controls] == [p.name for p in spec.params]
        for control, p in zip(controls, spec.params):
            kinds.add(control.kind)
            assert control.tooltip.startswith(p.help)
            if p.choices:
                assert control.kind == "choice" and set(control.choices) == {str(c) for c in p.choices}
            elif p.type is bool:
                assert control.kind == "bool"
            elif p.per_axis:
                assert control.kind == "per_axis"
            elif p.type in (int, float):
                assert control.kind == p.type.__name__
                assert control.minimum <= p.default <= control.maximum
                if p.min is not None:
                    assert control.minimum == p.min
                if p.max is not None:
                    assert control.maximum == p.max
    assert {"bool", "int", "choice", "per_axis"} <= kinds


def test_control_for_a_new_kind_of_parameter_needs_no_code():
    """A method added tomorrow with a float and a free-text parameter gets controls too."""

    class Spec:
        name = "future"
        params = (
            ParamSpec("sigma", float, 0.15, "Noise level.", min=0.0, max=1.0),
            ParamSpec("layer", str, "", "Layer name."),
            ParamSpec("samples", int, 25, "Samples.", min=1),
        )

    sigma, layer, samples = params.control_specs(Spec)
    assert (sigma.kind, sigma.minimum, sigma.maximum, sigma.default) == ("float", 0.0, 1.0, 0.15)
    assert sigma.decimals >= 2 and 0 < sigma.step <= 0.1
    assert (layer.kind, layer.default) == ("text", "")
    assert samples.kind == "int" and samples.minimum == 1 and samples.maximum >= 2**30


def test_parameter_store_round_trip_and_engine_validation():
    store = params.store_value("{}", "occlusion", "window", (8, 4, 4))
    store = params.store_value(store, "occlusion", "baseline", "mean")
    store = params.store_value(store, "integrated_gradients", "steps", 16)
    assert params.load_values(store, "occlusion") == {"window": (8, 4, 4), "baseline": "mean"}
    assert params.load_values("not json", "occlusion") == {}
    spec = get_method("occlusion")
    chosen = params.method_params(params.store_value(store, "occlusion", "gone", 1), spec)
    assert chosen == {"window": (8, 4, 4), "baseline": "mean"}
    assert spec.validate_params(chosen)["window"] == (8, 4, 4)  # the engine accepts what the controls store
    # per-axis text is read by the control description napari shares (napari_xai.session.controls)
    window = next(c for c in params.control_specs(spec) if c.name == "window")
    assert window.parse("8") == 8 and window.parse("8, 4;2") == (8, 4, 2)
    with pytest.raises(ValueError):
        window.parse("eight")
    assert window.text((8, 4, 2)) == "8, 4, 2"


def test_target_field():
    assert params.parse_target("") is None
    assert params.parse_target("  ") is None
    assert params.parse_target("2") == 2
    assert params.parse_target(" lesion ") == "lesion"
