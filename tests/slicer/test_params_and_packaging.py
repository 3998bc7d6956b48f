"""Parameter controls from the registry spec, the dependency installer's plan, and the extension files."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from napari_xai.engine import ParamSpec, get_method, list_methods
from SaliencyMapsLib import dependencies, params
from tests.slicer.conftest import MODULE_DIR, REPO


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


def test_install_plan_keeps_slicer_simpleitk_and_gets_torch_from_pytorchutils(tmp_path):
    reqs = dependencies.read_requirements()
    plan = dependencies.make_plan(["torch", "napari_xai", "scipy"], Path("/src/napari-xai"), reqs, str(tmp_path / "c.txt"))
    assert plan.torch
    assert plan.pip_steps[0] == ["--no-deps", "/src/napari-xai"]
    assert plan.pip_steps[1][-2:] == ["-c", str(tmp_path / "c.txt")]
    flat = " ".join(" ".join(step) for step in plan.pip_steps).lower()
    assert "simpleitk" not in flat and "torch" not in flat.replace("--no-deps", "")
    assert "PyTorch" in plan.describe()
    assert dependencies.make_plan([], "x", reqs, None).empty


def test_ensure_dependencies_order_and_consent(monkeypatch):
    state = {"missing": ["torch", "napari_xai", "scipy"]}
    monkeypatch.setattr(dependencies, "constraints_text", lambda version=None: "numpy==1.26.4\nSimpleITK==2.4.0\n")

    def find_spec(name):
        return None if name in state["missing"] else object()

    log = []

    def pip_install(args):
        log.append(("pip", args))
        state["missing"] = []

    def install_torch():
        log.append(("torch",))
        return object()

    prompts = []
    ok = dependencies.ensure_dependencies(
        lambda text: prompts.append(text) or True, pip_install, install_torch, (5, 10), (3, 12), find_spec=find_spec, source=Path("/src")
    )
    assert ok and len(prompts) == 1 and "SimpleITK" in prompts[0]
    assert log[0] == ("torch",)
    assert log[1] == ("pip", ["--no-deps", "/src"])
    constraints = Path(log[2][1][-1])
    assert log[2][1][-2] == "-c" and "SimpleITK==2.4.0" in constraints.read_text(encoding="utf-8")
    # Declined: nothing happens.
    state["missing"] = ["torch"]
    log.clear()
    assert not dependencies.ensure_dependencies(lambda text: False, pip_install, install_torch, (5, 10), find_spec=find_spec)
    assert log == []
    # Nothing missing: no prompt at all.
    state["missing"] = []
    assert dependencies.ensure_dependencies(lambda text: pytest.fail("prompted"), pip_install, install_torch, (5, 10), find_spec=find_spec)


def test_requirements_match_pyproject_minus_slicer_provided():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    name = lambda req: re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower()  # noqa: E731
    expected = {name(r) for r in project} - {"torch", "numpy", "simpleitk"}
    assert {name(r) for r in dependencies.read_requirements()} == expected
    assert dependencies.source_checkout() == REPO


def test_extension_files_list_every_module_file():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule" in cmake and "slicer_add_python_unittest" in cmake
    for py in sorted((MODULE_DIR / "SaliencyMapsLib").glob("*.py")):
        assert f"${{MODULE_NAME}}Lib/{py.name}" in cmake, py.name
    for resource in ("Resources/Icons/${MODULE_NAME}.png", "Resources/UI/${MODULE_NAME}.ui", "Resources/requirements.txt"):
        assert resource in cmake
        assert (MODULE_DIR / resource.replace("${MODULE_NAME}", "SaliencyMaps")).is_file()
    assert (MODULE_DIR / "Resources/Icons/SaliencyMaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(slicer_module/SaliencyMaps)" in top and "Slicer_EXTENSION_CPACK" in top
    entry = json.loads((MODULE_DIR.parent / "SlicerSaliencyMaps.json").read_text(encoding="utf-8"))
    assert {"$schema", "category", "scm_url"} <= set(entry)
