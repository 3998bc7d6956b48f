"""The module's widget as Slicer runs it: setup(), enter()/exit(), Apply, on the stand-ins of Slicer 5.8 and 5.10.

``gui`` (tests/slicer/conftest.py) loads the real ``.ui`` into the PythonQt/CTK/qMRML stand-ins, runs the
widget's ``setup()`` and ``enter()`` with ``slicer.parameterNodeWrapper`` behaving as in the version under
test (tests/slicer/standins.py), and records every dialog. One test (at least) per item of issue 15.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import slicer
import slicer.util
import torch

from napari_xai.engine import ImageError, XAIError
from SaliencyMapsLib import dependencies, nodes
from tests.conftest import make_net
from tests.slicer import standins
from tests.slicer.conftest import make_gui
from tests.slicer.test_module import oblique_volume, segmentation_from_labels


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.jit.script(make_net(3)).save(str(path))
    return str(path)


@pytest.fixture
def gui510(monkeypatch, scene):
    """The widget on Slicer 5.10 (the supported version: Apply can run)."""
    return make_gui(monkeypatch, scene, (5, 10))


def ready(gui, model_file, method="vanilla_gradient"):
    from SaliencyMapsLib import params

    volume = oblique_volume(gui.scene)
    gui.pn.inputVolume = volume
    gui.ui.modelPathLineEdit.currentPath = model_file
    gui.pn.method = gui.module.SaliencyMethod[method]
    if method == "occlusion":  # windows that fit the 7x9x11 test volume
        gui.pn.methodParameters = params.store_value(params.store_value(gui.pn.methodParameters, "occlusion", "window", 4),
                                                     "occlusion", "stride", 4)
    return volume


def volume_nodes(scene):
    return sorted(scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetID()
                  for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))


# --- setup / enter / exit, the GUI binding (items 9, 10, 11) ---


def test_setup_binds_the_ui_both_ways(gui, model_file):
    ui, pn = gui.ui, gui.pn
    assert ui.inputSelector.mrmlScene() is gui.scene  # the .ui's mrmlSceneChanged -> setMRMLScene connections
    assert ui.methodComboBox.count == len(gui.module.SaliencyMethod)
    assert ui.methodComboBox.currentText == gui.module.SaliencyMethod.label(pn.method)
    ui.targetLineEdit.text = "2"
    assert pn.targetClass == "2"
    pn.method = gui.module.SaliencyMethod["occlusion"]
    assert ui.methodComboBox.currentText.startswith("Occlusion")
    assert "Occlusion" in gui.module.SaliencyMethod.label(pn.method)
    ui.thresholdSliderWidget.value = 0.25
    assert pn.thresholdFraction == pytest.approx(0.25)
    ui.memoryBudgetSpinBox.value = 512
    assert pn.memoryBudgetMB == 512
    ui.reduceComboBox.currentIndex = 1
    assert pn.regionReduce == "mean"
    # Method parameter controls come from the engine's spec of the selected method.
    # (on 5.8 the module says instead that it needs 5.10: see the item 1 tests).
    rows = gui.widget._methodParametersLayout.rows()
    expected = [f"methodParameter_{p.name}" for p in gui.widget.logic.methodSpec(pn.method).params] if gui.version >= (5, 10) else []
    assert [w.objectName for _label, w in rows] == expected


@pytest.mark.qt_no_exception_capture
def test_enter_exit_keep_one_wrapper_and_one_gui_binding(gui):
    """Item 9: on 5.8 connectGui returns None, so the template's disconnectGui(tag) did nothing and each enter()
    added a wrapper, a binding and an observer. One wrapper per node, bound once.

    (Closing the scene empties the singleton parameter node; a wrapper that was ever bound stays alive through
    the observer connectParametersToGui adds, and its cached parameters fail to read the emptied node, as in
    Slicer: VTK prints those errors and goes on, so pytest-qt's capture of them is off here.)"""
    widget, pn = gui.widget, gui.pn
    assert pn.connectGui.__name__ == "connectGui"
    text_slots = gui.ui.targetLineEdit.textChanged.count
    for _ in range(3):
        widget.exit()
        widget.enter()
    assert widget._parameterNode is pn
    assert widget.logic.getParameterNode() is pn
    assert len(pn._parameterGUIs) == 1 and pn._nextParameterGUIsTag == 1
    assert gui.ui.targetLineEdit.textChanged.count == text_slots
    gui.ui.targetLineEdit.text = "lesion"
    assert pn.targetClass == "lesion"
    # A new scene (new parameter node): the old wrapper is disconnected by its tag on both versions.
    widget.onSceneStartClose(None, None)
    assert pn._parameterGUIs == {}
    gui.scene.Clear(0)
    widget.onSceneEndClose(None, None)
    new = widget._parameterNode
    assert new is not pn and len(new._parameterGUIs) == 1
    assert gui.ui.targetLineEdit.textChanged.count == text_slots


def test_the_stand_in_follows_each_versions_connect_gui(gui):
    """The 5.8/5.10 difference the module works around (parameterNodeWrapper/wrapper.py, _connectGui)."""
    pn = gui.module.SaliencyMapsParameterNode(slicer.vtkMRMLScriptedModuleNode())
    ui = type("", (), {})()
    ui.target = standins.QLineEdit()
    ui.target.setProperty("SlicerParameterName", "targetClass")
    tag = pn.connectGui(ui)
    assert (tag is None) == (gui.version < (5, 10))
    assert pn.connectParametersToGui({"targetClass": standins.QLineEdit()}) is not None


def test_model_box_starts_empty_and_follows_the_node(gui, model_file):
    """Item 10: an empty model path is "", not "." (Path("") serialises to ".")."""
    box = gui.ui.modelPathLineEdit
    assert box.currentPath == "" and gui.pn.modelPath == ""
    box.currentPath = model_file
    assert gui.pn.modelPath == model_file
    gui.pn.modelPath = ""
    assert box.currentPath == ""


def test_a_scene_saved_with_dot_as_model_path_opens_empty(monkeypatch, scene):
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    node.SetSingletonTag("SaliencyMaps")
    node.SetAttribute("ModuleName", "SaliencyMaps")
    node.SetParameter("modelPath", ".")
    gui = make_gui(monkeypatch, scene, (5, 10))
    assert gui.pn.parameterNode is node
    assert gui.pn.modelPath == "" and gui.ui.modelPathLineEdit.currentPath == ""


@pytest.mark.parametrize("version", [(5, 8), (5, 10)])
def test_a_saved_method_that_no_longer_exists_falls_back_with_a_message(monkeypatch, scene, version):
    """Item 11: the Enum serializer raises ValueError for an unknown name, which broke connectGui in enter()."""
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    node.SetSingletonTag("SaliencyMaps")
    node.SetAttribute("ModuleName", "SaliencyMaps")
    node.SetParameter("method", "retired_method")
    # What the real serializer does with it (the stand-in follows serializers.py, EnumSerializer.read):
    module = pytest.importorskip("tests.slicer.conftest").import_module_file(monkeypatch, version)
    raw = module.SaliencyMapsParameterNode(node)
    with pytest.raises(ValueError, match="retired_method"):
        raw.method
    gui = make_gui(monkeypatch, scene, version)
    assert gui.pn.method is gui.module.DEFAULT_METHOD
    assert node.GetParameter("method") == gui.module.DEFAULT_METHOD.name
    (warning,) = gui.dialogs.kinds("warning")
    assert "retired_method" in warning and "Integrated Gradients" in warning
    gui.widget.exit()
    gui.widget.enter()
    assert len(gui.dialogs.kinds("warning")) == 1  # said once


# --- Slicer version (item 1) ---


def test_on_slicer_58_the_module_loads_says_why_and_installs_nothing(monkeypatch, scene, model_file):
    gui = make_gui(monkeypatch, scene, (5, 8))
    ready(gui, model_file)
    assert not gui.ui.applyButton.enabled
    assert "Slicer 5.10 or later" in gui.ui.applyButton.toolTip
    assert "Slicer 5.10 or later" in gui.ui.methodDescriptionLabel.text
    installs = []
    monkeypatch.setattr(dependencies, "missing_imports", lambda find_spec=None: ["torch", "scipy"])
    monkeypatch.setattr(slicer.util, "pip_install", lambda args: installs.append(args))
    with pytest.raises(dependencies.InstallError, match="5.10"):
        gui.widget.onApplyButton()
    assert installs == [] and not gui.dialogs.kinds("confirm")
    (error,) = gui.dialogs.kinds("error")
    assert "Slicer 5.10 or later" in error and "Slicer 5.8" in error


def test_host_check_refuses_python_39_before_installing_anything():
    calls = []
    for slicer_version, python in (((5, 8), (3, 9)), (None, (3, 9)), ((5, 9), (3, 12))):
        with pytest.raises(dependencies.InstallError, match="Slicer 5.10 or later"):
            dependencies.ensure_dependencies(lambda text: calls.append("confirm"), calls.append, lambda: calls.append("torch"),
                                             slicer_version, python, find_spec=lambda name: None)
    assert calls == []
    assert dependencies.host_problem((5, 10), (3, 12)) == ""
    assert "Python 3.9" in dependencies.host_problem((5, 8), (3, 9))


# --- Apply: install failures, double clicks, modality, inputs edited mid-run (items 4, 5, 6, 15) ---


def test_install_failure_is_shown_and_apply_is_disabled_during_the_install(gui510, monkeypatch, model_file):
    gui = gui510
    ready(gui, model_file)
    assert gui.ui.applyButton.enabled
    monkeypatch.setattr(dependencies, "missing_imports", lambda find_spec=None: ["scipy"])
    seen = []

    def pip_install(args):
        # pip runs for minutes and logProcessOutput processes events: the user clicks Apply again.
        seen.append(gui.ui.applyButton.enabled)
        gui.ui.applyButton.click()
        gui.widget.onApplyButton()
        raise subprocess.CalledProcessError(1, ["PythonSlicer", "-m", "pip", "install", *args])

    monkeypatch.setattr(slicer.util, "pip_install", pip_install)
    with pytest.raises(subprocess.CalledProcessError):
        gui.widget.onApplyButton()
    assert seen == [False]  # disabled before the install started, and one install only
    (error,) = gui.dialogs.kinds("error")
    assert error.startswith("Failed to install what SaliencyMaps needs.") and "pip" in error
    assert gui.ui.applyButton.enabled  # usable again afterwards


def test_missing_pytorch_extension_is_a_dialog_not_a_traceback(gui510, monkeypatch, model_file):
    gui = gui510
    ready(gui, model_file)
    monkeypatch.setattr(dependencies, "missing_imports", lambda find_spec=None: ["torch"])
    monkeypatch.setitem(__import__("sys").modules, "PyTorchUtils", None)
    with pytest.raises(dependencies.InstallError):
        gui.widget.onApplyButton()
    (error,) = gui.dialogs.kinds("error")
    assert "PyTorch extension" in error


def test_apply_runs_under_an_application_modal_dialog_and_shows_the_map(gui510, model_file):
    gui = gui510
    volume = ready(gui, model_file)
    gui.widget.onApplyButton()
    assert not gui.ui.applyButton.enabled  # the run is in flight: Apply waits for it
    gui.wait()
    estimate_dialog, map_dialog = gui.dialogs.progress  # the estimate (with the prediction), then the map
    assert map_dialog.windowModality == standins.Qt.ApplicationModal  # item 5
    assert not estimate_dialog.visible and not map_dialog.visible  # closed
    assert map_dialog.value == 100
    out = gui.pn.outputVolume
    assert out is not None and out.GetID() != volume.GetID()
    assert nodes.get_provenance(out)["method"] == "vanilla_gradient"
    assert not gui.dialogs.kinds("error")
    assert gui.ui.saveMapButton.enabled and gui.ui.applyButton.enabled
    assert gui.ui.predictionLabel.text.startswith("predicted")  # the model's decision, shown as napari's target menu shows it


@pytest.mark.parametrize("edit", ["remove input", "edit voxels", "change parameter",
                                  # Closing empties the parameter node under the live wrapper (see the item 9 test).
                                  pytest.param("close scene", marks=pytest.mark.qt_no_exception_capture)])
def test_inputs_edited_during_the_run_write_nothing(gui510, model_file, edit):
    """Item 5: events are processed between the engine's steps; an input that went or changed means no map."""
    gui = gui510
    volume = ready(gui, model_file, "occlusion")
    before = volume_nodes(gui.scene)
    done = []

    def interfere():
        if done:
            return
        done.append(edit)
        if edit == "remove input":
            gui.scene.RemoveNode(volume)
        elif edit == "edit voxels":
            array = slicer.util.arrayFromVolume(volume)
            array[0, 0, 0] += 100.0
            slicer.util.arrayFromVolumeModified(volume)
        elif edit == "change parameter":
            gui.pn.targetClass = "1"
        else:
            gui.scene.Clear(0)

    # The engine runs in a worker thread; the scene changes on the main thread meanwhile (a script, a timer).
    gui.widget.onApplyButton()
    interfere()
    gui.wait()
    assert done
    if edit == "close scene":  # closing cancels the run
        assert not gui.dialogs.kinds("error") and any("cancelled" in text for text in gui.dialogs.kinds("status"))
    else:
        (error,) = gui.dialogs.kinds("error")
        assert error.startswith("Failed to compute the saliency map.") and "Nothing was written" in error
    if edit != "close scene":
        after = volume_nodes(gui.scene)
        assert after == [v for v in before if edit != "remove input" or v != volume.GetID()]
        assert gui.widget._parameterNode.outputVolume is None
    else:
        assert gui.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0


def test_a_reused_output_is_renamed_and_described_by_the_run_that_wrote_it(gui510, model_file):
    """Item 6."""
    gui = gui510
    volume = ready(gui, model_file, "integrated_gradients")
    gui.widget.onApplyButton()
    gui.wait()
    out = gui.pn.outputVolume
    assert "Integrated Gradients" in out.GetName()
    gui.pn.method = gui.module.SaliencyMethod["occlusion"]
    gui.pn.methodParameters = '{"occlusion": {"window": 4, "stride": 4}}'
    gui.widget.onApplyButton()
    gui.wait()
    assert gui.pn.outputVolume is out
    assert "Occlusion" in out.GetName() and "Integrated Gradients" not in out.GetName()
    assert out.GetName().startswith(volume.GetName())
    assert nodes.get_provenance(out)["method"] == "occlusion"
    assert "Occlusion" in out.GetDescription() and "Integrated" not in out.GetDescription()
    assert "Occlusion" in out.GetAttribute(nodes.CAPTION_ATTRIBUTE)


def test_the_input_volume_is_refused_as_the_map_volume(gui, model_file):
    """Item 15: choosing the scan as the output would overwrite it."""
    volume = ready(gui, model_file)
    gui.ui.outputSelector.setCurrentNode(volume)
    assert gui.pn.outputVolume is volume
    assert not gui.ui.applyButton.enabled
    if gui.version >= (5, 10):
        assert "map volume is the input volume" in gui.ui.applyButton.toolTip
    voxels = slicer.util.arrayFromVolume(volume).copy()
    with pytest.raises(ImageError, match="overwrite the scan"):
        gui.widget.logic.process(volume, make_net(3), "vanilla_gradient", outputVolume=volume)
    with pytest.raises(ImageError, match="overwrite the scan"):
        nodes.create_map_volume(volume, voxels, "map", volume)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), voxels)


# --- Hide below and the region segment (items 12, 13) ---


def test_hide_below_acts_on_the_shown_map_as_the_slider_moves(gui, model_file):
    """Item 12."""
    volume = ready(gui, model_file)
    out, attribution = gui.widget.logic.process(volume, make_net(3), "vanilla_gradient", methodParameters={"absolute": True})
    assert attribution.sign == "non-negative"
    gui.pn.outputVolume = out
    display = out.GetDisplayNode()
    hi = display.GetWindowLevelMax()
    gui.ui.thresholdSliderWidget.value = 0.5
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.5 * hi)
    gui.ui.thresholdSliderWidget.value = 0.0
    assert not display.GetApplyThreshold()
    # A signed map is never thresholded.
    signed, _ = gui.widget.logic.process(volume, make_net(3), "vanilla_gradient", methodParameters={"absolute": False})
    gui.pn.outputVolume = signed
    gui.ui.thresholdSliderWidget.value = 0.7
    assert not signed.GetDisplayNode().GetApplyThreshold()


def test_segment_menu_and_node_stay_in_step_with_segment_edits(gui, model_file):
    """Item 13."""
    volume = ready(gui, model_file)
    labels = np.zeros((7, 9, 11), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[4:6, 4:7, 4:8] = 2
    segmentation = segmentation_from_labels(gui.scene, volume, labels)
    seg = segmentation.GetSegmentation()
    first, second = seg.GetNthSegmentID(0), seg.GetNthSegmentID(1)
    combo = gui.ui.regionSegmentComboBox
    gui.ui.regionSegmentationSelector.setCurrentNode(segmentation)
    assert gui.pn.regionSegmentation is segmentation
    assert combo.count == 3 and combo.enabled
    combo.currentIndex = combo.findData(second)
    assert gui.pn.regionSegmentId == second
    seg.GetSegment(second).SetName("lesion")
    seg.Modified()
    segmentation.InvokeEvent(slicer.vtkSegmentation.SegmentModified, second)
    assert combo.itemText(combo.currentIndex) == "lesion"
    seg.RemoveSegment(second)  # the node forwards vtkSegmentation's SegmentRemoved
    assert combo.count == 2 and combo.currentIndex == 0
    assert gui.pn.regionSegmentId == ""  # the node follows the menu
    seg.AddEmptySegment("new", "new")
    assert combo.count == 3 and combo.findData("new") >= 0
    combo.currentIndex = combo.findData(first)
    assert gui.pn.regionSegmentId == first
    other = segmentation_from_labels(gui.scene, volume, (labels == 2).astype(np.uint8) * 3)
    gui.ui.regionSegmentationSelector.setCurrentNode(other)
    assert gui.pn.regionSegmentId == "" and combo.currentIndex == 0
    gui.widget.exit()
    seg.AddEmptySegment("while_away", "while_away")  # not observed while the module is not shown
    gui.widget.enter()
    assert combo.count == 2


# --- the self-test on machines without torch (item 8) ---


@pytest.mark.parametrize("interactive_answer", [None, False])
def test_self_test_skips_with_a_clear_message_without_torch(gui510, monkeypatch, interactive_answer):
    import unittest

    gui = gui510
    monkeypatch.setattr(dependencies, "missing_imports", lambda find_spec=None: ["torch", "scipy"])
    gui.app.testing = interactive_answer is None  # ctest runs Slicer with --testing
    gui.dialogs.confirm = bool(interactive_answer)
    suite = unittest.TestLoader().loadTestsFromTestCase(gui.module.SaliencyMapsTest)
    result = unittest.TextTestRunner(stream=open("/dev/null", "w")).run(suite)
    assert result.wasSuccessful() and len(result.skipped) == 2 and result.testsRun == 2
    reason = result.skipped[0][1]
    assert "torch, scipy not installed" in reason and "build machines" in reason
    assert bool(gui.dialogs.kinds("confirm")) == (interactive_answer is not None)
