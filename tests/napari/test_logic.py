"""The plugin's napari logic without Qt: parameter forms as magicgui widgets, the main command (the host-neutral part is tested in tests/session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from napari_xai._napari import _logic
from napari_xai.engine import ParamSpec, list_methods
from napari_xai.session.controls import control_for

REPO = Path(__file__).resolve().parents[2]


def test_every_method_gets_a_form_from_its_spec(qtbot):
    """One rule builds every method's controls, and their defaults validate in the engine."""
    from magicgui.widgets import create_widget

    assert list_methods(), "no methods registered"
    for spec in list_methods():
        values = {}
        for p in spec.params:
            w = create_widget(**_logic.param_widget_options(p))
            assert w.tooltip, (spec.name, p.name)
            values[p.name] = control_for(p).parse(w.value)
        assert spec.validate_params(values) == spec.validate_params({}), spec.name


def test_magicgui_options_render_the_shared_control():
    q = ParamSpec("sigma", float, 0.15, "s", min=0.0, max=1.0)
    opts = _logic.param_widget_options(q)
    assert opts["widget_type"] == "FloatSpinBox" and opts["options"]["max"] == 1.0 and opts["options"]["step"] == control_for(q).step
    c = ParamSpec("baseline", str, "zeros", "b", choices=("zeros", "mean"))
    assert _logic.param_widget_options(c)["options"]["choices"] == ["zeros", "mean"]
    w = ParamSpec("window", int, 8, "w", min=1, max=64, per_axis=True)
    assert _logic.param_widget_options(w)["widget_type"] == "LineEdit" and "z, y, x" in _logic.param_widget_options(w)["options"]["tooltip"]


def _tiny_sample_model(folder: Path) -> Path:
    """A sample-model-shaped spec + safetensors (random weights, narrow): the main command without the trained model."""
    from safetensors.torch import save_file

    from napari_xai.samples.architectures import LesionClassifier3D

    torch.manual_seed(0)
    net = LesionClassifier3D(width=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "tiny.safetensors"))
    spec = {
        "name": "tiny lesion classifier",
        "task": "classification",
        "spatial_dims": 3,
        "in_channels": 1,
        "intensity": {"type": "zscore", "nonzero": True},
        "labels": ["no lesion", "lesion"],
        "cam_layer": "features.5",
        "architecture": {"factory": "lesion_classifier_3d", "kwargs": {"width": 2}},
        "weights": "tiny.safetensors",
    }
    path = folder / "tiny.json"
    path.write_text(json.dumps(spec))
    return path


def test_main_command_opens_sample_and_runs(tmp_path):
    spec = _tiny_sample_model(tmp_path)
    figure = tmp_path / "figure.png"
    shot = tmp_path / "window.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "napari_xai", "--no-show", "--run", "--method", "vanilla_gradient", "--model", str(spec), "--figure", str(figure), "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "Done: Vanilla Gradient" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert figure.is_file() and figure.stat().st_size > 10_000
    assert shot.is_file() and shot.stat().st_size > 10_000
