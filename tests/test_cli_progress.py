"""The command line's progress bar, long-run warning, colour limits and mask outline."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from napari_xai.cli import ProgressBar, main
from napari_xai.engine.progress import Progress

from tests.conftest import make_net, oblique_sitk


def test_progress_bar_follows_the_engine_events():
    import io

    screen = io.StringIO()
    bar = ProgressBar("scan / Occlusion", file=screen, disable=False)  # as on a terminal
    for done in (0, 3, 7, 10):
        bar.show(Progress(done, 10, f"window {done}/10"))
    assert bar._bar.n == 1000
    bar.close()
    drawn = screen.getvalue()
    assert "scan / Occlusion" in drawn and "100%" in drawn and "window 10/10" in drawn
    assert ProgressBar("quiet", file=io.StringIO())._bar.disable  # not a terminal: nothing drawn


def test_cli_warns_before_a_long_run_and_draws_limits_and_outline(tmp_path, monkeypatch, capsys):
    import torch

    net = make_net(3)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    p = tmp_path / "scan.nrrd"
    image = oblique_sitk()
    sitk.WriteImage(image, str(p))
    mask = sitk.GetArrayFromImage(image) > np.percentile(sitk.GetArrayFromImage(image), 90)
    m = sitk.GetImageFromArray(mask.astype(np.uint8))
    m.CopyInformation(image)
    sitk.WriteImage(m, str(tmp_path / "mask.nrrd"))
    model = tmp_path / "net.pt2"
    x = torch.randn(2, 1, *sitk.GetArrayFromImage(image).shape)
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(ep, str(model))
    (tmp_path / "net.json").write_text(json.dumps({"task": "classification"}))
    monkeypatch.setenv("NAPARI_XAI_CONFIRM_SECONDS", "0")
    out = tmp_path / "out"
    code = main(["--model", str(model), "--image", str(p), "--method", "vanilla_gradient", "--limits", "0", "0.001", "--outline", str(tmp_path / "mask.nrrd"), "--dpi", "72", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "will take long" in err and "forward" in err
    assert (out / "scan_vanilla_gradient.png").is_file()
    assert main(["--model", str(model), "--image", str(p), "--outline", str(p).replace("scan", "missing"), "--out", str(out)]) == 2
