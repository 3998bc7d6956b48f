"""What both docks share: the model menu's entries and an error's message."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

from napari_xai._napari._qt._docks import error_message, same_model, select_model
from napari_xai.engine import ModelError


def test_model_menu_selects_a_model_once_by_path_or_identity(qtbot, tmp_path):
    combo = QComboBox()
    qtbot.addWidget(combo)
    combo.addItem("Open model file…", None)
    select_model(combo, tmp_path / "a.pt", at=0)
    select_model(combo, str(tmp_path / "a.pt"))  # the same path: selected, not added again
    assert combo.count() == 2 and combo.currentIndex() == 0 and combo.currentData() == str(tmp_path / "a.pt")
    module = object()
    select_model(combo, module, "in-process")
    assert combo.count() == 3 and combo.currentText() == "in-process" and combo.currentData() is module
    select_model(combo, tmp_path / "a.pt")
    assert combo.currentIndex() == 0
    assert same_model("a.pt", tmp_path.parent / "x") is False and same_model(module, module)


def test_error_message_is_the_problem_and_fix_or_the_type():
    assert error_message(ModelError("No model.", "Pick one.")) == str(ModelError("No model.", "Pick one."))
    assert error_message(ValueError("bad")) == "ValueError: bad"
