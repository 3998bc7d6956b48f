"""The module's model-folder picker on the Slicer stand-ins: a MONAI bundle and an nnU-Net folder (folds) load and explain."""

from __future__ import annotations

import numpy as np
import pytest

from tests.real_format_fixtures import write_monai_bundle, write_nnunet_results
from tests.slicer import standins
from tests.slicer.conftest import make_gui
from tests.slicer.test_module import oblique_volume


@pytest.fixture
def gui510(monkeypatch, scene):
    return make_gui(monkeypatch, scene, (5, 10))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"results": write_nnunet_results(root / "nnUNetTrainer__nnUNetPlans__3d_fullres", folds=(0, 1)),
            "bundle": write_monai_bundle(root / "bundle")}


def _pick_folder(monkeypatch, gui, folder):
    monkeypatch.setattr(standins.QFileDialog, "answer", str(folder))
    gui.widget.onModelFolderButton()


def test_nnunet_folder_offers_folds_and_loads_the_chosen_one(gui510, folders, monkeypatch):
    gui = gui510
    gui.pn.inputVolume = oblique_volume(gui.scene)
    _pick_folder(monkeypatch, gui, folders["results"])
    ui = gui.ui
    assert gui.pn.modelPath == str(folders["results"])
    assert [ui.modelChoiceComboBox.itemText(i) for i in range(ui.modelChoiceComboBox.count)] == ["average of folds (0, 1)", "fold 0", "fold 1"]
    assert ui.modelChoiceComboBox.visible and ui.modelChoiceLabel.visible
    assert "mean of the logits of folds 0, 1" in ui.modelChoiceComboBox.toolTip
    assert ui.applyButton.enabled
    assert gui.widget.logic.parameterNodeModel(gui.pn).extra["folds"] == [0, 1]
    ui.modelChoiceComboBox.currentIndex = 2
    assert gui.pn.modelChoice == "fold 1"
    assert gui.widget.logic.parameterNodeModel(gui.pn).extra["folds"] == [1]
    # a model file again: the menu goes away
    gui.pn.modelPath = ""
    assert not ui.modelChoiceComboBox.visible and ui.modelChoiceComboBox.count == 0


def test_bundle_folder_explains_through_apply(gui510, folders, monkeypatch):
    gui = gui510
    volume = oblique_volume(gui.scene, shape=(12, 16, 16))
    gui.pn.inputVolume = volume
    _pick_folder(monkeypatch, gui, folders["bundle"])
    assert gui.ui.modelChoiceComboBox.count == 1 and gui.ui.applyButton.enabled
    gui.pn.method = gui.module.SaliencyMethod["vanilla_gradient"]
    out, attribution = gui.widget.logic.processParameterNode(gui.pn)
    assert attribution.model["kind"] == "monai_bundle"
    assert np.abs(attribution.values).max() > 0 and attribution.values.shape == (12, 16, 16)


def test_a_folder_that_is_no_model_disables_apply_with_the_reason(gui510, tmp_path, monkeypatch):
    gui = gui510
    gui.pn.inputVolume = oblique_volume(gui.scene)
    _pick_folder(monkeypatch, gui, tmp_path)
    assert not gui.ui.applyButton.enabled and "model file or folder" in gui.ui.applyButton.toolTip
    assert "not a MONAI bundle" in gui.ui.modelPathLineEdit.toolTip
