"""The plugin's plain-Python logic: generic parameter forms, sample model discovery, the run generator, the main command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_xai._napari import _logic
from napari_xai.engine import Attribution, ParamSpec, ScanImage, list_methods
from tests.conftest import OBLIQUE, make_net

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
            values[p.name] = _logic.parse_param_value(p, w.value)
        assert spec.validate_params(values) == spec.validate_params({}), spec.name


def test_per_axis_text_and_bounds():
    p = ParamSpec("window", int, 8, "w", min=1, max=64, per_axis=True)
    assert _logic.parse_param_value(p, "5") == 5
    assert _logic.parse_param_value(p, "4, 6, 8") == (4, 6, 8)
    assert _logic.parse_param_value(p, "") == 8
    q = ParamSpec("sigma", float, 0.15, "s", min=0.0, max=1.0)
    opts = _logic.param_widget_options(q)
    assert opts["widget_type"] == "FloatSpinBox" and opts["options"]["max"] == 1.0 and 0 < opts["options"]["step"] <= 0.1
    c = ParamSpec("baseline", str, "zeros", "b", choices=("zeros", "mean"))
    assert _logic.param_widget_options(c)["options"]["choices"] == ["zeros", "mean"]


def test_methods_grouped_by_family_in_catalogue_order():
    groups = _logic.methods_by_family()
    fams = [f for f, _ in groups]
    assert fams == sorted(fams, key=lambda f: ("perturbation", "backpropagation", "class activation", "activation maximisation").index(f))
    assert sum(len(s) for _, s in groups) == len(list_methods())


def test_sample_models_come_from_the_folder(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"x")
    (tmp_path / "a.json").write_text(json.dumps({"name": "model A", "weights": "a.safetensors"}))
    (tmp_path / "b.json").write_text(json.dumps({"name": "model B", "weights": "missing.safetensors"}))
    (tmp_path / "c.json").write_text(json.dumps({"name": "not a model"}))
    (tmp_path / "d.json").write_text("{broken")
    assert _logic.sample_models(tmp_path) == {"model A": tmp_path / "a.json"}
    # the shipped folder: every spec with weights present is listed
    from napari_xai.samples import SAMPLES_DIR

    for path in _logic.sample_models().values():
        assert path.parent == SAMPLES_DIR


def test_run_jobs_is_a_generator_with_overall_progress_and_cancel():
    scan = ScanImage(np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32), OBLIQUE)
    net = make_net(3)
    jobs = [_logic.Job(net, scan, "vanilla_gradient"), _logic.Job(net, scan, "integrated_gradients", params={"steps": 4})]
    gen = _logic.run_jobs(jobs)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            results = stop.value
            break
    assert [a.method for a in results] == ["vanilla_gradient", "integrated_gradients"]
    assert all(isinstance(a, Attribution) and a.geometry == OBLIQUE for a in results)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(e.message.startswith("[2/2]") for e in events)
    # closing mid-way stops it (what a worker's quit does)
    gen = _logic.run_jobs(jobs)
    next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_format_checks_generic_and_known():
    lines = _logic.format_checks(
        {"completeness": {"attribution_sum": 1.0, "score_difference": 1.01, "relative_delta": 0.0099}, "model_grid_is_scan_grid": True, "layer": "features.3", "deletion_auc": 0.1234567}
    )
    assert lines[0].startswith("completeness") and "ok" in lines[0]
    assert "layer: features.3" in lines and "deletion auc: 0.1235" in lines
    assert not any("model grid" in line for line in lines)


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
