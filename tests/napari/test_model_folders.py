"""The dock widget's folder picker: a MONAI bundle and an nnU-Net folder load (fold, average of folds, configuration) and explain."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai._napari._layers import PROVENANCE_KEY, is_result_layer
from napari_xai._napari._qt import _dock_widget
from napari_xai.engine import napari_layer_kwargs
from napari_xai.engine.models import LoadedModel
from napari_xai.samples.synthetic_ct import synthetic_ct
from tests.real_format_fixtures import NNUNET_SPACING, write_monai_bundle, write_nnunet_results

from .conftest import wait_until_done


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    dataset = root / "Dataset901_SyntheticCT"
    write_nnunet_results(dataset / "nnUNetTrainer__nnUNetPlans__3d_fullres", folds=(0, 1))
    write_nnunet_results(dataset / "nnUNetTrainer__nnUNetPlans__3d_fullres_bs4", folds=(0,))
    return {"dataset": dataset, "results": dataset / "nnUNetTrainer__nnUNetPlans__3d_fullres", "bundle": write_monai_bundle(root / "bundle")}


def _offer(monkeypatch, answer: str | None):
    """Answer the fold / configuration question with ``answer`` (None: cancel); records what was offered."""
    offered = []

    def get_item(_parent, _title, _label, items, *_args):
        offered.append(list(items))
        return (answer or "", answer is not None)

    monkeypatch.setattr(_dock_widget.QInputDialog, "getItem", staticmethod(get_item))
    return offered


def test_nnunet_results_folder_offers_the_average_and_each_fold(widget, folders, monkeypatch):
    offered = _offer(monkeypatch, "average of folds (0, 1)")
    assert widget.open_model_folder(folders["results"])
    assert offered == [["average of folds (0, 1)", "fold 0", "fold 1"]]
    model = widget.model
    assert isinstance(model, LoadedModel) and model.extra["folds"] == [0, 1]
    assert widget.model_combo.currentText() == "nnUNetTrainer__nnUNetPlans__3d_fullres: average of folds (0, 1)"
    assert "mean of the logits of folds 0, 1" in widget.status.text()
    # the "Open…" entries stay last
    assert [widget.model_combo.itemText(i) for i in range(widget.model_combo.count())][-2:] == [_dock_widget._OPEN_FILE, _dock_widget._OPEN_FOLDER]


def test_dataset_folder_offers_each_configuration(widget, folders, monkeypatch):
    offered = _offer(monkeypatch, "3d_fullres_bs4: fold 0")
    assert widget.open_model_folder(folders["dataset"])
    assert "3d_fullres: fold 1" in offered[0] and "3d_fullres_bs4: fold 0" in offered[0]
    assert widget.model.extra["folds"] == [0] and widget.model.source.endswith("nnUNetTrainer__nnUNetPlans__3d_fullres_bs4")


def test_cancelled_choice_loads_nothing(widget, folders, monkeypatch):
    before = widget.model_combo.count()
    _offer(monkeypatch, None)
    assert not widget.open_model_folder(folders["results"])
    assert widget.model_combo.count() == before


def test_bundle_loads_without_a_question_and_explains_a_region(viewer, widget, folders, monkeypatch, qtbot):
    offered = _offer(monkeypatch, "unused")
    assert widget.open_model_folder(folders["bundle"])
    assert offered == []
    assert widget.model_combo.currentText() == "bundle"
    scan, lesion = synthetic_ct((20, 40, 40), tuple(NNUNET_SPACING))
    layer = viewer.add_image(scan.array, name="synthetic CT", **napari_layer_kwargs(scan.geometry))
    viewer.add_labels(lesion.astype(np.uint8), name="lesion", **napari_layer_kwargs(scan.geometry))
    widget.image_combo.value = layer
    widget.region_combo.value = widget.region_combo.choices[-1]
    widget.set_method("vanilla_gradient")
    widget.run()
    wait_until_done(qtbot, widget)
    (result,) = [lay for lay in viewer.layers if is_result_layer(lay)]
    prov = result.metadata[PROVENANCE_KEY]
    assert prov["model"]["kind"] == "monai_bundle" and prov["target"]["region_source"] == "given"
    assert np.abs(result.data).max() > 0


def test_a_folder_that_is_no_model_is_an_error_on_the_status_line(widget, tmp_path):
    assert not widget.open_model_folder(tmp_path)
    assert widget.status.text().startswith("Error:") and "MONAI bundle" in widget.status.text()
