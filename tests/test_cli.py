"""The headless command: aligned maps and overlay figures for one or many scans."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_xai.engine import read_image
from napari_xai.cli import main

from tests.conftest import OBLIQUE, make_net, oblique_sitk


@pytest.fixture
def model_file(tmp_path):
    net = make_net(3)
    x = torch.randn(2, 1, 7, 9, 11)
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(ep, str(tmp_path / "net.pt2"))
    (tmp_path / "net.json").write_text(json.dumps({"labels": ["a", "b", "c"], "task": "classification"}))
    return tmp_path / "net.pt2"


def test_cli_writes_aligned_maps_and_figures_for_several_scans(tmp_path, model_file, capsys):
    scans = []
    for i in range(2):
        p = tmp_path / f"scan{i}.nrrd"
        sitk.WriteImage(oblique_sitk(seed=i), str(p))
        scans.append(str(p))
    out = tmp_path / "out"
    code = main(["--model", str(model_file), "--image", *scans, "--method", "grad_cam", "--method", "occlusion", "--param", "window=3", "--param", "stride=2", "--target", "b", "--out", str(out)])
    assert code == 0
    for i in range(2):
        for method in ("grad_cam", "occlusion"):
            m = read_image(out / f"scan{i}_{method}.nii.gz")
            assert m.array.shape == (7, 9, 11) and m.array.dtype == np.float32
            np.testing.assert_allclose(m.geometry.direction, OBLIQUE.direction, atol=1e-5)
            np.testing.assert_allclose(m.geometry.origin, OBLIQUE.origin, atol=1e-4)
            prov = json.loads((out / f"scan{i}_{method}.nii.gz.json").read_text())
            assert prov["target"]["label"] == "b" and prov["method"] == method
            assert (out / f"scan{i}_{method}.png").stat().st_size > 10_000
    assert "class 1 'b'" in capsys.readouterr().out


def test_cli_user_error_exits_2_with_the_message(tmp_path, model_file, capsys):
    p = tmp_path / "scan.nrrd"
    sitk.WriteImage(oblique_sitk(), str(p))
    assert main(["--model", str(model_file), "--image", str(p), "--target", "7", "--no-png", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Class 7 is out of range" in err and "Fix:" in err
    assert main(["--image", str(p)]) == 2


def test_cli_lists_methods(capsys):
    assert main(["--list-methods"]) == 0
    out = capsys.readouterr().out
    assert "integrated_gradients" in out and "steps=50" in out
