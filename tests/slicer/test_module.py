"""The module file (SaliencyMaps.py) imported with only qt, ctk, slicer.ScriptedLoadableModule and
slicer.parameterNodeWrapper stood in: its wiring, defaults, Logic, and the in-application self-test's path.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pytest
import slicer
import slicer.util
import torch

from napari_xai.engine import Cancelled, TargetError, XAIError, list_methods
from SaliencyMapsLib import nodes
from tests.conftest import OBLIQUE, make_net, oblique_sitk
from tests.slicer import standins
from tests.slicer.conftest import MODULE_DIR, MODULE_FILE, SLICER_VERSIONS, UI_FILE, import_module_file


def oblique_volume(scene, shape=(7, 9, 11), name="scan"):
    """An input volume node on the oblique, anisotropic geometry (IJKToRAS from SimpleITK's matrix, flipped)."""
    image = oblique_sitk(shape)
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ d @ np.diag(image.GetSpacing())
    m[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.GetOrigin())
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(m))
    import SimpleITK as sitk

    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    return node


def node_ids(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def test_import_installs_nothing_and_needs_no_gui(monkeypatch, scene):
    """Importing the module file runs no pip, no subprocess, no Qt (the qt/ctk stand-ins fail on any use)."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"something tried to install or run a process at import: {args}")

    monkeypatch.setattr(slicer.util, "pip_install", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "check_call", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    module = import_module_file(monkeypatch)
    assert {"SaliencyMaps", "SaliencyMapsParameterNode", "SaliencyMapsWidget", "SaliencyMapsLogic", "SaliencyMapsTest"} <= set(dir(module))
    assert module.SaliencyMaps.__mro__[1] is sys.modules["slicer.ScriptedLoadableModule"].ScriptedLoadableModule
    # The plain-Python node code imports no GUI layer.
    for lib in ("nodes", "params", "dependencies", "views", "trust"):
        text = (MODULE_DIR / "SaliencyMapsLib" / f"{lib}.py").read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+(qt|ctk|slicer\.ScriptedLoadableModule)\b", text, re.M), lib


def test_module_description(module):
    parent = SimpleNamespace()
    module.SaliencyMaps(parent)
    assert parent.title == "Saliency Maps"
    assert parent.categories and parent.contributors
    assert "Apply" in parent.helpText and "foreground" in parent.helpText
    assert "Borys" in parent.acknowledgementText and "Saliency-based XAI approaches" in parent.acknowledgementText


def test_method_enum_comes_from_the_registry(module):
    names = [spec.name for spec in list_methods()]
    assert list(module.SaliencyMethod.__members__) == names
    for spec in list_methods():
        member = module.SaliencyMethod[spec.name]
        assert member.value == spec.name
        assert spec.title in module.SaliencyMethod.label(member)
        assert module.SaliencyMapsLogic.methodSpec(member) is spec


def test_parameter_defaults(module):
    pn = module.SaliencyMapsLogic().getParameterNode()
    assert pn.inputVolume is None and pn.outputVolume is None and pn.regionSegmentation is None
    assert pn.method is module.SaliencyMethod["integrated_gradients"]
    assert pn.modelPath == ""  # an empty box, not "." (item 10)
    assert pn.targetClass == "" and pn.regionSegmentId == ""
    assert pn.regionReduce == "sum"
    assert pn.methodParameters == "{}"
    assert pn.memoryBudgetMB == 2048
    assert pn.thresholdFraction == pytest.approx(0.1)
    # Stored in the module's scripted module node, and validated.
    node = slicer.mrmlScene.GetSingletonNode("SaliencyMaps", "vtkMRMLScriptedModuleNode")
    assert node.GetParameter("method") == "integrated_gradients"
    with pytest.raises(ValueError):
        pn.regionReduce = "max"
    with pytest.raises(ValueError):
        pn.thresholdFraction = 1.5


@pytest.mark.parametrize("version", SLICER_VERSIONS)
def test_ui_binds_every_widget_to_a_parameter(module, version):
    """Each SlicerParameterName names a parameter, on a widget Slicer's GUI connectors accept for its type.

    The connectors are the stand-ins of parameterNodeWrapper/guiConnectors.py (exact widget types, Choice
    needed for a str combo box, bounds needed for a slider), made for widgets of the .ui's classes.
    """
    tree = ET.parse(UI_FILE)
    bound = {}
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    infos = module.SaliencyMapsParameterNode.allParameters
    assert set(bound) <= set(infos)
    for name, widget_class in bound.items():
        connector = standins.createGuiConnector(standins.WIDGET_CLASSES[widget_class](), infos[name].unalteredType, version)
        assert connector is not None, (name, widget_class)
    assert {"inputVolume", "method", "targetClass", "regionSegmentation", "outputVolume", "thresholdFraction"} <= set(bound)
    # modelPath is a str bound by the widget itself (an empty Path would show "." in the box).
    assert "modelPath" not in bound and infos["modelPath"].unalteredType is str
    # Every self.ui.<name> the widget code uses exists in the .ui file.
    names = {w.get("name") for w in tree.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8"))) - {"__dict__"}
    assert used <= names, used - names
    # Node selectors get the scene.
    receivers = {c.find("receiver").text for c in tree.iter("connection")}
    assert {w.get("name") for w in tree.iter("widget") if w.get("class") == "qMRMLNodeComboBox"} <= receivers


def test_logic_process_end_to_end_aligned_and_displayed(module, scene):
    volume = oblique_volume(scene)
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    events = []
    out, attribution = module.SaliencyMapsLogic().process(
        volume, make_net(3), "vanilla_gradient", target=1, methodParameters={"absolute": False}, onProgress=events.append
    )
    assert events and attribution.method == "vanilla_gradient" and attribution.sign == "signed"
    np.testing.assert_array_equal(nodes.ijk_to_ras(out), nodes.ijk_to_ras(volume))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(out), attribution.values)
    # The engine saw the scan's true geometry (LPS), not an identity grid.
    np.testing.assert_allclose(attribution.geometry.origin, OBLIQUE.origin, atol=1e-9)
    np.testing.assert_allclose(attribution.geometry.direction, OBLIQUE.direction, atol=1e-9)
    assert composite.GetForegroundVolumeID() == out.GetID() and composite.GetBackgroundVolumeID() == volume.GetID()
    assert composite.GetForegroundOpacity() == pytest.approx(0.6)
    assert out.GetDisplayNode().GetColorNode().GetAttribute(nodes.COLORMAP_ATTRIBUTE) == "bwr"
    assert nodes.get_provenance(out)["params"] == {"absolute": False}
    assert "Vanilla Gradient" in out.GetName()


def test_logic_delegates_to_node_code_and_engine(module, scene, monkeypatch):
    calls = []
    real_scan, real_create = nodes.scan_from_volume_node, nodes.create_map_volume
    monkeypatch.setattr(nodes, "scan_from_volume_node", lambda v: calls.append("scan") or real_scan(v))
    monkeypatch.setattr(nodes, "create_map_volume", lambda *a, **k: calls.append("create") or real_create(*a, **k))
    from napari_xai.session import jobs  # the shared job layer runs the engine for both hosts

    real_explain_iter = jobs.explain_iter
    monkeypatch.setattr(jobs, "explain_iter", lambda *a, **k: calls.append(("explain", a[2], a[3], k.get("memory_budget_mb"))) or real_explain_iter(*a, **k))
    volume = oblique_volume(scene)
    module.SaliencyMapsLogic().process(volume, make_net(3), "vanilla_gradient", target=2, memoryBudgetMB=256, showResult=False)
    assert calls == ["scan", ("explain", "vanilla_gradient", 2, 256), "create"]


def test_cancel_and_errors_leave_the_scene_unchanged(module, scene):
    volume = oblique_volume(scene)
    logic = module.SaliencyMapsLogic()
    before = node_ids(scene)
    with pytest.raises(Cancelled):
        logic.process(volume, make_net(3), "occlusion", methodParameters={"window": 4, "stride": 4}, shouldCancel=lambda: True)
    assert node_ids(scene) == before
    with pytest.raises(TargetError):
        logic.process(volume, make_net(3), "vanilla_gradient", target=9)
    with pytest.raises(XAIError, match="model file"):
        logic.process(volume, scene and "/nonexistent/model.pt", "vanilla_gradient")
    with pytest.raises(XAIError, match="input volume"):
        logic.process(None, make_net(3), "vanilla_gradient")
    assert node_ids(scene) == before


def segmentation_from_labels(scene, volume, labels):
    """A segmentation node with one segment per label value, imported from a labelmap on ``volume``'s grid."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    labelmap.CopyOrientation(volume)
    slicer.util.updateVolumeFromArray(labelmap, labels)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    scene.RemoveNode(labelmap)
    return segmentation


def test_region_from_a_segment_for_a_segmentation_network(module, scene):
    volume = oblique_volume(scene)
    labels = np.zeros((7, 9, 11), np.uint8)
    labels[2:5, 3:6, 4:8] = 1
    segmentation = segmentation_from_labels(scene, volume, labels)
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    logic = module.SaliencyMapsLogic()
    assert logic.regionMask(None, "", volume) is None
    out, attribution = logic.process(
        volume, make_net(3, segmentation=True), "vanilla_gradient", target=1,
        regionSegmentation=segmentation, regionSegmentId=segment_id, reduce="mean",
    )
    assert attribution.target["task"] == "segmentation"
    assert attribution.target["reduce"] == "mean"
    assert attribution.target["region_voxels_model_space"] == int(labels.sum())  # model grid = scan grid here
    assert attribution.target["region_source"] != "predicted"
    assert slicer.util.arrayFromVolume(out).shape == (7, 9, 11)


def _occlusion_parameter_node(module, scene, tmp_path):
    """Logic and a parameter node: an oblique volume, a TorchScript model file, occlusion."""
    model_path = tmp_path / "tiny.pt"
    torch.jit.script(make_net(3)).save(str(model_path))
    logic = module.SaliencyMapsLogic()
    pn = logic.getParameterNode()
    pn.inputVolume = oblique_volume(scene)
    pn.modelPath = str(model_path)
    pn.method = module.SaliencyMethod["occlusion"]
    return logic, pn


def test_process_parameter_node_with_a_model_file(module, scene, tmp_path):
    logic, pn = _occlusion_parameter_node(module, scene, tmp_path)
    pn.targetClass = "2"
    from SaliencyMapsLib import params

    spec = logic.methodSpec(pn.method)
    pn.methodParameters = params.store_value(pn.methodParameters, "occlusion", "window", (4, 4, 4))
    pn.methodParameters = params.store_value(pn.methodParameters, "occlusion", "stride", 4)
    pn.methodParameters = params.store_value(pn.methodParameters, "vanilla_gradient", "absolute", False)  # another method's: ignored
    assert params.method_params(pn.methodParameters, spec) == {"window": (4, 4, 4), "stride": 4}
    out, attribution = logic.processParameterNode(pn)
    assert pn.outputVolume is out
    assert attribution.target["class_index"] == 2
    assert attribution.params["window"] == (4, 4, 4)
    # Apply again: the same output node is overwritten, none added.
    count = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    out2, _ = logic.processParameterNode(pn)
    assert out2 is out and scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count
    saved = logic.saveMap(out, tmp_path / "map.nii.gz")
    assert saved.is_file() and (tmp_path / "map.nii.gz.json").is_file()


def test_ensure_dependencies_prompts_before_installing(module, monkeypatch):
    from SaliencyMapsLib import dependencies

    monkeypatch.setattr(dependencies, "missing_imports", lambda find_spec=None: ["torch", "napari_xai"])
    installs = []
    ok = module.SaliencyMapsLogic.ensureDependencies(
        confirm=lambda text: False, pipInstall=installs.append, installTorch=lambda: installs.append("torch")
    )
    assert ok is False and installs == []  # declined: nothing installed


def test_in_application_self_test_runs_on_slicer_core(module, scene):
    """SaliencyMapsTest.runTest (the in-app self-test) on real MRML; only the screenshot needs the application."""
    scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    messages = []
    test = module.SaliencyMapsTest()
    test.delayDisplay = lambda message, *a, **k: messages.append(message)
    test.runTest()
    assert "Test passed: aligned map" in messages
    assert "Test passed: region, cancel, bad input" in messages
    # unittest discovery (as slicer.testing.runUnitTest does in Slicer) finds both tests.
    import unittest

    names = unittest.TestLoader().getTestCaseNames(module.SaliencyMapsTest)
    assert set(names) == {"test_SaliencyMaps_alignedMap", "test_SaliencyMaps_regionAndCancel"}


class _FakeWidget:
    """Records properties and connections like a PythonQt widget (for the widget's control factory)."""

    def __init__(self, *args):
        self.kind = type(self).__name__
        self.text = args[0] if args else ""
        self.connections = {}
        self.items = []
        self.styleSheet = ""

    def connect(self, signal, slot):
        self.connections[signal] = slot

    def setRange(self, lo, hi):
        self.range = (lo, hi)

    def addItem(self, text):
        self.items.append(text)


FakeQt = SimpleNamespace(**{name: type(name, (_FakeWidget,), {}) for name in ("QCheckBox", "QSpinBox", "QDoubleSpinBox", "QComboBox", "QLineEdit")})


def test_widget_makes_a_working_control_for_every_parameter_of_every_method(module):
    """The widget's factory turns each ParamSpec into a control whose edits land in methodParameters, valid for the engine."""
    from SaliencyMapsLib import params

    from SaliencyMapsLib import controls

    widget = object.__new__(module.SaliencyMapsWidget)  # no Qt: only the control factory and the store are used
    widget._parameterNode = module.SaliencyMapsLogic().getParameterNode()
    for spec in list_methods():
        widget._parameterNode.method = module.SaliencyMethod[spec.name]
        for control in params.control_specs(spec):
            made = controls.make_control(FakeQt, control, control.default, lambda v, name=control.name: widget._storeMethodParameter(name, v))
            assert made.objectName == f"methodParameter_{control.name}" and made.toolTip == control.help
            (signal, slot), = made.connections.items()
            if control.kind == "bool":
                assert made.kind == "QCheckBox"
                slot(not control.default)
                expected = not control.default
            elif control.kind == "int":
                assert made.kind == "QSpinBox" and made.range[0] <= control.default <= made.range[1]
                slot(control.default)
                expected = control.default
            elif control.kind == "float":
                assert made.kind == "QDoubleSpinBox"
                slot(control.default)
                expected = control.default
            elif control.kind == "choice":
                assert made.kind == "QComboBox" and made.items == list(control.choices)
                slot(control.choices[-1])
                expected = control.parse(control.choices[-1])
            elif control.kind == "per_axis":
                assert made.kind == "QLineEdit" and made.text == control.text(control.default)
                made.text = ", ".join([str(control.default)] * 3)
                slot()
                expected = (control.default,) * 3
                made.text = "not a number"
                slot()
                assert made.styleSheet  # flagged, nothing stored
            else:
                assert made.kind == "QLineEdit"
                slot(str(control.default))
                expected = str(control.default)
            stored = params.load_values(widget._parameterNode.methodParameters, spec.name)
            assert stored[control.name] == expected, (spec.name, control.name)
        # What the controls stored is accepted by the engine's own validation.
        spec.validate_params(params.method_params(widget._parameterNode.methodParameters, spec))


def test_method_menu_needs_neither_torch_nor_the_engine(monkeypatch, scene):
    """Item 7: the method list comes from the static catalogue, so importing the module file imports no torch.

    Without torch or the engine the full list is still there; only with no readable catalogue at all (a
    broken install) does the menu fall back to the default method.
    """
    from SaliencyMapsLib import params

    script = f"""
import sys, types
sys.path.insert(0, {str(MODULE_DIR)!r})
from SaliencyMapsLib import params
choices = params.method_choices()
assert len(choices) > 20, choices
assert not [m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("napari_xai.engine")]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]

    monkeypatch.setattr(params, "engine_available", lambda: False)
    module = import_module_file(monkeypatch)
    assert module.METHODS_FROM_CATALOGUE
    assert list(module.SaliencyMethod.__members__) == [spec.name for spec in list_methods()]

    # Not inside an install or checkout: the checkout's catalogue file is read without importing napari_xai.
    real_find_spec = params.importlib.util.find_spec
    monkeypatch.setattr(params.importlib.util, "find_spec", lambda name, *a: None if name == "napari_xai" else real_find_spec(name, *a))
    assert [n for n, _ in params.method_choices()] == [spec.name for spec in list_methods()]

    monkeypatch.setattr(params, "catalogue_entries", lambda: ())
    module = import_module_file(monkeypatch)
    assert not module.METHODS_FROM_CATALOGUE
    assert list(module.SaliencyMethod.__members__) == ["integrated_gradients"]
    assert module.SaliencyMapsLogic().getParameterNode().method.value == "integrated_gradients"


def test_estimate_parameter_node_before_a_run(module, scene, tmp_path):
    logic, pn = _occlusion_parameter_node(module, scene, tmp_path)
    from SaliencyMapsLib import params

    pn.methodParameters = params.store_value(pn.methodParameters, "occlusion", "window", 4)
    pn.methodParameters = params.store_value(pn.methodParameters, "occlusion", "stride", 2)
    nodes_before = scene.GetNumberOfNodes()
    cost = logic.estimateParameterNode(pn)
    # (7, 9, 11) with windows of 4 every 2 voxels: 3 x 4 x 5 windows, plus the pass that resolves the target
    assert (cost.forward_passes, cost.backward_passes, cost.unit) == (61, 0, "volume")
    assert cost.fits and cost.seconds > 0 and "61 forward" in cost.describe()
    assert scene.GetNumberOfNodes() == nodes_before  # an estimate adds nothing to the scene


def test_report_of_a_map_volume_matches_the_engine_attribution(module, scene, tmp_path):
    logic, pn = _occlusion_parameter_node(module, scene, tmp_path)
    volume = pn.inputVolume
    pn.method = module.SaliencyMethod["vanilla_gradient"]
    out, attribution = logic.processParameterNode(pn)
    from SaliencyMapsLib import nodes

    rebuilt = nodes.attribution_from_map_node(out)
    np.testing.assert_allclose(rebuilt.values, attribution.values)
    np.testing.assert_allclose(rebuilt.geometry.origin, attribution.geometry.origin, atol=1e-6)
    assert rebuilt.params == attribution.params and rebuilt.method == attribution.method
    written = logic.writeReport(volume, out, tmp_path / "report.pdf")
    assert written.pdf.stat().st_size > 20_000 and len(written.pages) >= 3
    with pytest.raises(Exception, match="not a saliency map"):
        logic.writeReport(volume, volume, tmp_path / "bad.pdf")
    assert not (tmp_path / "bad.pdf").exists()
