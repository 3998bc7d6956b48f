"""The method registry: every method describes itself completely, and parameters are checked against it."""

from __future__ import annotations

import json

import pytest

from napari_xai.engine import MethodError, get_method, list_methods
from napari_xai.engine.registry import FAMILIES, NEEDS, SIGNS

FIRST_METHODS = {"vanilla_gradient", "integrated_gradients", "grad_cam", "occlusion"}


def test_first_methods_are_registered():
    assert FIRST_METHODS <= {m.name for m in list_methods()}


@pytest.mark.parametrize("spec", list_methods(), ids=lambda s: s.name)
def test_each_method_declares_name_family_reference_needs_sign_and_params(spec):
    assert spec.family in FAMILIES and spec.sign in SIGNS
    assert spec.needs and set(spec.needs) <= set(NEEDS)
    assert spec.model_agnostic == (spec.needs == frozenset({"forward"}))
    assert spec.reference and spec.summary and spec.title
    for p in spec.params:
        assert p.help and p.type in (int, float, bool, str)
        assert p.coerce(p.default, spec.title) == p.default  # defaults pass their own checks
        if p.choices:
            assert p.default in p.choices
        if p.min is not None and p.type in (int, float):
            assert p.min <= p.default <= (p.max if p.max is not None else p.default)
    json.dumps(spec.to_dict())  # hosts read it as plain JSON
    if spec.sign_param:
        assert spec.param(spec.sign_param).type is bool


def test_methods_are_listed_in_catalogue_order_and_by_family():
    families = [m.family for m in list_methods()]
    assert families == sorted(families, key=FAMILIES.index)
    assert all(m.family == "perturbation" for m in list_methods("perturbation"))


@pytest.mark.parametrize("name", ["grad_cam", "Grad-CAM", "grad cam", "INTEGRATED_GRADIENTS", "Integrated Gradients"])
def test_lookup_by_key_or_title(name):
    assert get_method(name).name in {"grad_cam", "integrated_gradients"}


def test_validate_params_fills_defaults_and_coerces():
    ig = get_method("integrated_gradients")
    assert ig.validate_params({}) == ig.defaults()
    assert ig.validate_params({"steps": 10.0})["steps"] == 10
    with pytest.raises(MethodError, match="not a int"):
        ig.validate_params({"steps": 2.5})
    with pytest.raises(MethodError, match="not a bool"):
        get_method("grad_cam").validate_params({"relu": "yes"})
    assert get_method("occlusion").validate_params({"window": [2, 3, 4]})["window"] == (2, 3, 4)


def test_output_sign_follows_the_sign_parameter():
    g = get_method("vanilla_gradient")
    assert g.output_sign({"absolute": True}) == "non-negative"
    assert g.output_sign({"absolute": False}) == "signed"


def test_method_guide_covers_every_registered_method():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "methods.md").read_text(encoding="utf-8")
    missing = [m.name for m in list_methods() if f"`{m.name}`" not in guide]
    assert not missing, f"docs/methods.md does not describe {missing}"


def test_method_guide_has_a_measured_trust_metrics_row_for_every_method():
    """docs/methods.md's metric tables are benchmarks/trust_metrics.py's rendering of its committed records, a row per method."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "trust_metrics.py"
    spec = importlib.util.spec_from_file_location("trust_metrics_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    guide = bench.GUIDE.read_text(encoding="utf-8")
    section = guide.split(bench.START, 1)[1].split(bench.END, 1)[0]
    assert section.strip() == bench.render(bench.DEFAULT_OUT).strip(), "rerun: python benchmarks/trust_metrics.py --render --write"
    lesion_table, _, shortcut_table = section.partition("Shortcut classifier")
    for m in list_methods():
        assert f"| `{m.name}` |" in lesion_table, m.name
    measured = [m.name for m in list_methods() if f"| `{m.name}` |" in shortcut_table]
    assert {"vanilla_gradient", "grad_cam"} <= set(measured)
