"""The PDF/PNG report: pages rendered with poppler, fonts embedded, radiological views, a run that repeats."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_xai.engine import Geometry, ImageError, ScanImage, explain, load_model, read_image
from napari_xai.cli import main
from napari_xai.engine.report import _views, repeat_command, write_report

from tests.conftest import make_net, oblique_sitk

needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) is not installed")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    x = torch.randn(2, 1, 7, 9, 11)
    ep = torch.export.export(make_net(3), (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(ep, str(root / "net.pt2"))
    (root / "net.json").write_text(json.dumps({"labels": ["a", "b", "c"], "task": "classification", "cam_layer": "features.3"}))
    return root / "net.pt2"


@pytest.fixture(scope="module")
def report(tmp_path_factory, model_file):
    root = tmp_path_factory.mktemp("report")
    sitk.WriteImage(oblique_sitk(), str(root / "scan.nrrd"))
    scan = read_image(root / "scan.nrrd")
    model = load_model(model_file)
    maps = [explain(model, scan, "integrated_gradients", steps=8), explain(model, scan, "grad_cam")]
    files = write_report(scan, maps, root / "scan_report.pdf", image_path=root / "scan.nrrd")
    return root, scan, maps, files


@needs_poppler
def test_report_pages_render_non_empty_with_embedded_fonts(report, tmp_path):
    root, scan, maps, files = report
    assert files.pdf.stat().st_size > 20_000
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(files.pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == len(files.pages) >= 1 + len(maps) + 1  # title, one per map, appendix
    for page in pages:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(page)))
        ink = (arr[..., :3] < 200).any(axis=-1).mean()
        assert ink > 0.005, f"{page.name} is (nearly) blank"
    # the map pages hold images: many distinct colours, not just text
    assert len(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(pages[1]))).reshape(-1, 3), axis=0)) > 200
    fonts = subprocess.run(["pdffonts", str(files.pdf)], capture_output=True, encoding="utf-8", errors="replace", check=True).stdout.splitlines()[2:]
    assert fonts and all("TrueType" in f and " yes " in f for f in fonts), fonts
    for png in files.pages:
        assert png.stat().st_size > 10_000


@needs_poppler
def test_report_text_holds_title_block_trust_table_and_provenance(report):
    root, scan, maps, files = report
    text = subprocess.run(["pdftotext", "-layout", str(files.pdf), "-"], capture_output=True, encoding="utf-8", errors="replace", check=True).stdout
    for needed in ("Saliency report: scan", "Weights SHA-256", maps[0].model["weights_sha256"], "0.7 x 1.3 x 2.9 mm", "Trust table",
                   "completeness error", "Integrated Gradients", "Grad-CAM", "Sign convention: signed map", "Sign convention: non-negative",
                   "Provenance appendix", "napari-xai-explain --model", "mm"):
        assert needed in text, needed


def test_repeat_command_in_the_appendix_makes_the_same_map(report, model_file, tmp_path):
    root, scan, maps, files = report
    args = shlex.split(repeat_command(maps[0], root / "scan.nrrd").replace("OUT_DIR", str(tmp_path)))
    assert args[0] == "napari-xai-explain"
    assert main(args[1:] + ["--no-png"]) == 0
    (written,) = tmp_path.glob("*.nii.gz")
    np.testing.assert_allclose(read_image(written).array, maps[0].values, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("direction, right_side_letter", [((1, 0, 0, 0, 1, 0, 0, 0, 1), "L"), ((-1, 0, 0, 0, -1, 0, 0, 0, 1), "R")])
def test_axial_view_is_radiological_whatever_the_storage_order(direction, right_side_letter):
    geometry = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), direction)
    values = np.zeros((5, 8, 12), np.float32)
    values[2, 3, 10] = 1.0  # high x index: +x is L (LPS identity) or R (RAS storage)
    scan = ScanImage(np.ones_like(values), geometry)
    from napari_xai.engine import Attribution

    a = Attribution(values, geometry, "m", "M", "f", "non-negative", {"description": ""}, {}, {})
    axial = _views(scan, a)[0]
    assert axial.letters == ("A", "P", "R", "L")
    col = int(np.argwhere(axial.values > 0)[0][1])
    on_right = col > axial.values.shape[1] / 2
    # patient's left is on the viewer's right (radiological): a left-sided peak shows on the right
    assert on_right == (right_side_letter == "L")


def test_report_refuses_bad_input(report, tmp_path):
    root, scan, maps, files = report
    with pytest.raises(ImageError, match="PDF"):
        write_report(scan, maps, tmp_path / "r.png")
    with pytest.raises(ImageError, match="no map"):
        write_report(scan, [], tmp_path / "r.pdf")
    other = ScanImage(np.zeros((3, 4, 5), np.float32), Geometry.identity(3))
    with pytest.raises(ImageError, match="shape"):
        write_report(other, maps, tmp_path / "r.pdf")
    assert not list(tmp_path.iterdir())


def test_cli_report_holds_every_method_of_a_scan(report, model_file, tmp_path):
    root = report[0]
    out = tmp_path / "out"
    assert main(["--model", str(model_file), "--image", str(root / "scan.nrrd"), "--method", "vanilla_gradient", "--method", "grad_cam", "--no-png", "--report", "--out", str(out)]) == 0
    pdf = out / "scan_report.pdf"
    pages = sorted(out.glob("scan_report_page*.png"))
    assert pdf.stat().st_size > 20_000 and len(pages) >= 4
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, encoding="utf-8", errors="replace", check=True).stdout
        assert "Vanilla Gradient" in text and "Grad-CAM" in text
