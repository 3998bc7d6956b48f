"""Make docs/images/slicer_saliency_maps.png, the screenshot the Slicer extension's index entry shows.

3D Slicer cannot run on the build machines, so the picture is put together from the module's real
parts: its panel (``Resources/UI/SaliencyMaps.ui`` loaded by Qt Designer's loader with the CTK/qMRML
stand-ins of ``tests/slicer/uic_standins.py``, filled in as for a run), beside the map the module computes
for the sample brain and lesion classifier (Integrated Gradients through the engine, drawn over the scan
by ``napari_xai.engine.overlay.render_overlay``). Run from the repository root::

    QT_QPA_PLATFORM=offscreen python docs/images/make_slicer_screenshot.py
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "images" / "slicer_saliency_maps.png"
sys.path.insert(0, str(REPO))


def main() -> Path:
    import torch

    torch.set_num_threads(2)
    from napari_xai.catalogue import read_catalogue
    from napari_xai.engine import explain
    from napari_xai.engine.overlay import render_overlay
    from napari_xai.samples import load_lesion_classifier, load_sample_scan
    from tests.slicer import uic_standins as s

    scan = load_sample_scan()
    attribution = explain(load_lesion_classifier(), scan, "integrated_gradients", target=1, steps=16)
    tmp = Path(tempfile.mkdtemp())
    overlay = render_overlay(scan, attribution, tmp / "overlay.png", dpi=90)

    s.install()
    from PyQt5 import QtGui, QtWidgets, uic

    app = QtWidgets.QApplication([])
    text = (REPO / "slicer_module" / "SaliencyMaps" / "Resources" / "UI" / "SaliencyMaps.ui").read_text(encoding="utf-8")
    ui_file = tmp / "panel.ui"
    ui_file.write_text(re.sub(r"<connections>.*</connections>", "", text, flags=re.S), encoding="utf-8")
    panel = uic.loadUi(str(ui_file))
    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    find(s.qMRMLNodeComboBox, "inputSelector").addItem("sample_brain_t1")
    find(s.ctkPathLineEdit, "modelPathLineEdit").setText("lesion_classifier_3d.json")
    find(QtWidgets.QLineEdit, "targetLineEdit").setText("1")
    find(s.qMRMLNodeComboBox, "regionSegmentationSelector").addItem("None")
    find(QtWidgets.QComboBox, "regionSegmentComboBox").addItem("(none: the predicted mask)")
    find(QtWidgets.QComboBox, "reduceComboBox").addItems(["sum", "mean"])
    methods = find(QtWidgets.QComboBox, "methodComboBox")
    methods.addItems([entry.label for entry in read_catalogue()])
    methods.setCurrentIndex([e.name for e in read_catalogue()].index("integrated_gradients"))
    entry = next(e for e in read_catalogue() if e.name == "integrated_gradients")
    find(QtWidgets.QLabel, "methodDescriptionLabel").setText(entry.summary)
    find(s.qMRMLNodeComboBox, "outputSelector").addItem(f"sample_brain_t1 {attribution.name}")
    QtWidgets.QDoubleSpinBox.setValue(find(s.ctkSliderWidget, "thresholdSliderWidget"), 0.1)  # what the stand-in shows
    for name in ("applyButton", "saveMapButton", "screenshotButton"):
        find(QtWidgets.QPushButton, name).setEnabled(True)

    window = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(window)
    layout.addWidget(panel)
    picture = QtWidgets.QLabel()
    picture.setPixmap(QtGui.QPixmap(str(overlay)))
    layout.addWidget(picture)
    window.resize(420 + picture.pixmap().width(), max(660, picture.pixmap().height() + 20))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(OUT))
    app.quit()
    return OUT


if __name__ == "__main__":
    print(main())
