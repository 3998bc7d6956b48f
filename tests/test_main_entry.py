"""``python -m napari_xai``: the main command on a sample-shaped model, without a screen, and its choice of Qt binding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from napari_xai import __main__ as entry


REPO = Path(__file__).resolve().parents[1]


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


def test_no_display_gives_a_clear_message_instead_of_a_qt_abort(monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert entry.main(["--no-show"]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "xvfb-run -a" in err and "napari-xai-explain --sample" in err


def test_display_detection():
    assert entry.display_missing({}, "linux")
    assert not entry.display_missing({"DISPLAY": ":99"}, "linux")
    assert not entry.display_missing({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not entry.display_missing({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not entry.display_missing({}, "darwin") and not entry.display_missing({}, "win32")


def test_a_supported_qt_binding_is_preferred():
    env: dict[str, str] = {}
    entry.prefer_supported_qt(env)
    assert env["QT_API"] in ("pyqt6", "pyside6")
    env = {"QT_API": "pyqt5"}
    entry.prefer_supported_qt(env)
    assert env == {"QT_API": "pyqt5"}  # the user's choice stands
