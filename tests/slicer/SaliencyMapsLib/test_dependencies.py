"""The dependency installer's plan and its consent."""

from __future__ import annotations

from pathlib import Path

import pytest

from SaliencyMapsLib import dependencies


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
