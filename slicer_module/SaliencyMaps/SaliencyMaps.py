"""SaliencyMaps: attribution (saliency) maps of PyTorch models on CT/MRI volumes in 3D Slicer.

The module has the shape of Slicer's scripted-module template: the module
description (:class:`SaliencyMaps`), a parameter node
(:class:`SaliencyMapsParameterNode`), a widget bound to ``Resources/UI/SaliencyMaps.ui``
(:class:`SaliencyMapsWidget`), the logic (:class:`SaliencyMapsLogic`) and a
self-test (:class:`SaliencyMapsTest`). The computation is napari-xai's engine
(``napari_xai.engine``, shipped inside the extension); the MRML node code is in
``SaliencyMapsLib`` (plain Python, tested against slicer-core outside the application).

Requires 3D Slicer 5.10 or later (the engine needs Python 3.10+; Slicer 5.8
embeds Python 3.9). On an older Slicer the module still loads and says so;
nothing is installed.

Importing this file installs nothing and imports neither torch nor the engine:
the method menu comes from the engine's static catalogue
(``napari_xai/method_catalogue.json``), and missing packages are installed,
after a prompt, when Apply is pressed (:meth:`SaliencyMapsLogic.ensureDependencies`).
"""

import dataclasses
import enum
import logging
import os
import pathlib
import sys
import unittest
from typing import Annotated

import vtk

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    Choice,
    WithinRange,
    parameterNodeWrapper,
)

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

try:  # Slicer >= 5.4 marks text for translation; older builds (and slicer-core) have no i18n
    from slicer.i18n import tr as _
except ImportError:  # pragma: no cover - depends on the Slicer build

    def _(text):
        return text


from SaliencyMapsLib import controls, dependencies, nodes, params

#
# SaliencyMaps
#

REVIEW_CITATION = (
    "K. Borys, Y. A. Schmitt, M. Nauta, C. Seifert, N. Kr\u00e4mer, C. M. Friedrich, F. Nensa. "
    "Explainable AI in medical imaging: An overview for clinical practitioners \u2013 Saliency-based XAI approaches. "
    "European Journal of Radiology 162 (2023) 110787, doi:10.1016/j.ejrad.2023.110787"
)

#: The module's documentation: ``Documentation`` in the repository's pyproject.toml [project.urls].
DOCUMENTATION_URL = "https://github.com/napari-xai/napari-xai/tree/main/slicer_module"


class SaliencyMaps(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Saliency Maps")
        self.parent.categories = [_("Explainable AI")]
        self.parent.dependencies = []  # PyTorchUtils (SlicerPyTorch extension) is used when installed, not required to load
        self.parent.contributors = ["napari-xai developers"]
        self.parent.helpText = _(
            """
Attribution (saliency) maps of a PyTorch model's decision on a CT/MRI volume: which voxels drove the output
for a class, or for a class over a region (a segment) of a segmentation network.
Requires 3D Slicer 5.10 or later and the PyTorch extension.
Pick an input volume and a model file (TorchScript, torch.export archive, or weights with a JSON spec),
choose a method and its parameters, press Apply. The map is a new volume on the input's grid, shown as the
foreground layer over the scan: sequential colours for non-negative maps, diverging and symmetric for signed ones.
Save it as NRRD/NIfTI (with its provenance) or take a screenshot of the views for a report.
"""
        ) + f'See <a href="{DOCUMENTATION_URL}">the module documentation</a>.'
        self.parent.acknowledgementText = _(
            """
Built on the napari-xai engine. The method catalogue follows the review:
"""
            + REVIEW_CITATION
            + "."
        )


#
# SaliencyMapsParameterNode
#


def _makeMethodEnum(choices):
    """The method Enum from the engine's catalogue (member name = registry name, label = title and family)."""
    methodEnum = enum.Enum("SaliencyMethod", [(name, name) for name, _label in choices], module=__name__)
    labels = dict(choices)
    # parameterNodeWrapper's combo-box connector shows label(member) when the Enum has one.
    methodEnum.label = staticmethod(lambda member: labels.get(member.value, member.value))
    return methodEnum


_METHOD_CHOICES = params.method_choices()
#: False when no catalogue was readable at load time (only the fallback method is listed until reload).
METHODS_FROM_CATALOGUE = _METHOD_CHOICES is not params.FALLBACK_METHODS
SaliencyMethod = _makeMethodEnum(_METHOD_CHOICES)
DEFAULT_METHOD = (
    SaliencyMethod[params.DEFAULT_METHOD] if params.DEFAULT_METHOD in SaliencyMethod.__members__ else next(iter(SaliencyMethod))
)


@parameterNodeWrapper
class SaliencyMapsParameterNode:
    """
    The parameters needed by module.

    inputVolume - The scan to explain.
    modelPath - Model file: TorchScript, torch.export archive (.pt2), or weights / JSON spec; or a model folder
        (MONAI bundle, nnU-Net results); "" when none.
    modelChoice - For a model folder: which of its models (an nnU-Net fold or the average of folds, per configuration).
    method - Attribution method (from the engine's catalogue).
    targetClass - Class index or label name; empty: the model's predicted class.
    regionSegmentation - Optional segmentation holding the region (segmentation networks).
    regionSegmentId - Segment of regionSegmentation used as the region.
    regionReduce - How the class's logits are reduced over the region.
    methodParameters - JSON {method: {parameter: value}}; controls are built from the method's spec.
    memoryBudgetMB - Working memory for one batch of the method.
    thresholdFraction - Non-negative maps: voxels below this fraction of the display maximum are transparent.
    sliceIndex - For a model taking 2D images: the slice (K index) of the input explained; -1: the one the Red view shows.
    outputVolume - The map volume (created on Apply when empty; never the input volume).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    # A str, not a pathlib.Path: Path("") is "." (the Path serializer and the
    # ctkPathLineEdit connector would show "." in an empty box). The path box is
    # bound by the widget (_onModelPathChanged / _syncModelPath).
    modelPath: str = ""
    modelChoice: str = ""
    method: SaliencyMethod = DEFAULT_METHOD
    targetClass: str = ""
    regionSegmentation: vtkMRMLSegmentationNode
    regionSegmentId: str = ""
    regionReduce: Annotated[str, Choice(["sum", "mean"])] = "sum"
    methodParameters: str = "{}"
    memoryBudgetMB: Annotated[int, WithinRange(64, 262144)] = 2048
    thresholdFraction: Annotated[float, WithinRange(0.0, 1.0)] = 0.1
    sliceIndex: Annotated[int, WithinRange(-1, 100000)] = -1
    outputVolume: vtkMRMLScalarVolumeNode


def modelPathText(value) -> str:
    """The model path as the box shows it: ``""`` for none (also for the ``"."`` older scenes saved)."""
    text = str(value or "").strip()
    return "" if text in ("", ".") else text


#
# SaliencyMapsWidget
#


class SaliencyMapsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    One parameter-node wrapper per parameter node (the Logic keeps it), bound to
    the GUI once: ``connectParametersToGui`` returns the tag for
    ``disconnectGui`` on Slicer 5.8 and 5.10 alike (``connectGui`` returns None
    on 5.8), and every connection adds an observer to the node that is never
    removed (``Base/Python/slicer/parameterNodeWrapper/wrapper.py``), so the
    binding is not redone on every ``enter()``.
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._controlsForMethod = None
        self._observedSegmentation = None
        self._listedSegments = None
        self._thresholdShown = None
        self._hostProblem = ""
        self._running = False
        self._sceneClosing = False
        self._run = None  # the PolledRun in flight (SaliencyMapsLib.runs): the engine off the main thread

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        import qt

        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SaliencyMaps.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SaliencyMapsLogic()
        self._hostProblem = self.logic.hostProblem()

        # Method parameter controls are made from the engine's spec when the method changes.
        self._methodParametersLayout = qt.QFormLayout(self.ui.methodParametersFrame)
        self._methodParametersLayout.setContentsMargins(0, 0, 0, 0)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.saveMapButton.connect("clicked(bool)", self.onSaveMapButton)
        self.ui.screenshotButton.connect("clicked(bool)", self.onScreenshotButton)
        self.ui.reportButton.connect("clicked(bool)", self.onReportButton)
        self.ui.regionSegmentComboBox.connect("currentIndexChanged(int)", self.onRegionSegmentChanged)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self._onModelPathChanged)
        self.ui.modelFolderButton.connect("clicked(bool)", self.onModelFolderButton)
        self.ui.modelChoiceComboBox.connect("currentTextChanged(QString)", self._onModelChoiceChanged)
        self._setupTrustSection()

        self.initializeParameterNode()

    def _setupTrustSection(self) -> None:
        """The "Trust metrics" section: Evaluate the current map, and the table of its metrics."""
        import ctk
        import qt

        box = ctk.ctkCollapsibleButton()
        box.text = _("Trust metrics")
        self.layout.addWidget(box)
        form = qt.QFormLayout(box)
        self.trustEvaluateButton = qt.QPushButton()
        self.trustEvaluateButton.text = _("Evaluate map")
        self.trustEvaluateButton.toolTip = _(
            "How far the output map can be trusted: deletion/insertion against a random order, the model-randomisation "
            "sanity check, completeness, mass in the region segment, and how much lies outside the anatomy (shortcut check)."
        )
        form.addRow(self.trustEvaluateButton)
        self.trustTableLabel = qt.QLabel()
        self.trustTableLabel.wordWrap = True
        self.trustTableLabel.textFormat = 1  # Qt.RichText
        form.addRow(self.trustTableLabel)
        self.trustTableNode = None
        self.trustEvaluateButton.connect("clicked(bool)", self.onEvaluateButton)

    def onEvaluateButton(self) -> None:
        """Evaluate the output map off the main thread, with a progress dialog whose Cancel stops it."""
        pn = self._parameterNode
        if self._running or not self.logic.ensureDependencies() or pn is None or pn.outputVolume is None:
            if not self._running:
                slicer.util.infoDisplay(_("Compute a map with Apply first, then evaluate it."))
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to evaluate the map."), waitCursor=True):
                pending = self.logic.prepareEvaluation(
                    pn.inputVolume, self.logic.parameterNodeModel(pn), [pn.outputVolume],
                    maskSegmentation=pn.regionSegmentation, maskSegmentId=pn.regionSegmentId,
                    settings={"sanity_steps": 1}, memoryBudgetMB=pn.memoryBudgetMB,
                )
        except Exception:  # shown by tryWithErrorDisplay; nothing started
            return

        def done(value):
            from SaliencyMapsLib import trust

            results, ranking = value
            try:
                self.trustTableNode = self.logic.finishEvaluation(pending, results, ranking, self.trustTableNode)
            except Exception as err:
                self._showError(_("Failed to evaluate the map."), err)
                return
            self.trustTableLabel.text = trust.table_html(results, ranking)
            self.trustTableLabel.toolTip = trust.definitions_text()

        self._startInBackground(pending.work, _("Trust metrics"), done, _("Failed to evaluate the map."),
                                _("Evaluation cancelled; the scene is unchanged."))

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed: a run in flight is cancelled."""
        if self._run is not None:
            self._run.cancel()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module.

        The GUI stays bound to the parameter node (one binding per node, see the
        class docstring); only this widget's own observers are removed.
        """
        if self._parameterNode:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._observeSegmentation(None)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: a run in progress is cancelled (its inputs are going)."""
        self._sceneClosing = True
        if self._run is not None:
            self._run.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        self._sceneClosing = False
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed; tell the user what was repaired in a saved one."""
        self.setParameterNode(self.logic.getParameterNode())
        warnings = self.logic.takeParameterNodeWarnings()
        if warnings:
            slicer.util.warningDisplay("\n\n".join(warnings), windowTitle=_("Saliency Maps"))
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.GetAttribute(nodes.PROVENANCE_ATTRIBUTE):
                self._parameterNode.inputVolume = firstVolumeNode

    def _guiMapping(self) -> dict:
        """``{parameter name: widget}`` for every widget of the .ui with a ``SlicerParameterName`` (as ``connectGui`` finds them)."""
        mapping = {}
        for widget in self.ui.__dict__.values():
            name = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
            if name:
                mapping[name] = widget
        return mapping

    def setParameterNode(self, inputParameterNode) -> None:
        """Set and observe parameter node; the GUI follows it (widgets carry the SlicerParameterName property)."""
        if inputParameterNode is not None and inputParameterNode is self._parameterNode:
            # The same wrapper (enter() after exit()): already bound to the GUI.
            if not self.hasObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified):
                self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()
            return
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._observeSegmentation(None)
        self._parameterNode = inputParameterNode
        self._controlsForMethod = None
        self._listedSegments = None
        self._thresholdShown = None
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self._guiMapping())
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        pn = self._parameterNode
        if not pn:
            return
        self._syncModelPath()
        if self._controlsForMethod != pn.method:
            self._buildMethodParameterControls()
        self._observeSegmentation(pn.regionSegmentation)
        self._updateRegionSegments()
        self._updateThreshold()
        self._checkCanApply()

    def _applyProblem(self) -> str:
        """Why Apply cannot run now (a tooltip), or ``""``."""
        pn = self._parameterNode
        if self._hostProblem:
            return self._hostProblem
        if not pn or not pn.inputVolume:
            return _("Select an input volume.")
        modelPath = modelPathText(pn.modelPath)
        if not modelPath or not (pathlib.Path(modelPath).is_file() or self.ui.modelChoiceComboBox.count):
            return _("Select a model file or folder.")
        if pn.outputVolume is not None and pn.outputVolume.GetID() == pn.inputVolume.GetID():
            return _("The map volume is the input volume: choose another map volume, or 'None' to create one.")
        return ""

    def _checkCanApply(self) -> None:
        pn = self._parameterNode
        problem = self._applyProblem()
        self.ui.applyButton.enabled = not problem and not self._running
        self.ui.applyButton.toolTip = problem or _("Compute the map")
        hasMap = bool(pn and pn.outputVolume and pn.outputVolume.GetImageData())
        self.ui.saveMapButton.enabled = hasMap
        self.ui.screenshotButton.enabled = hasMap
        self.ui.reportButton.enabled = hasMap

    # Model path (bound here, not by the wrapper: see SaliencyMapsParameterNode.modelPath)

    def _onModelPathChanged(self, path) -> None:
        pn = self._parameterNode
        if pn is not None and modelPathText(pn.modelPath) != modelPathText(path):
            pn.modelPath = modelPathText(path)

    def _syncModelPath(self) -> None:
        box = self.ui.modelPathLineEdit
        text = modelPathText(self._parameterNode.modelPath)
        if box.currentPath != text:
            wasBlocked = box.blockSignals(True)
            box.currentPath = text
            box.blockSignals(wasBlocked)
        self._syncModelChoices(text)

    def onModelFolderButton(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Model folder (MONAI bundle, nnU-Net results)"))
        if folder and self._parameterNode is not None:
            self._parameterNode.modelPath = str(folder)

    def _syncModelChoices(self, path: str) -> None:
        """The folder's models (``engine/models/folders.py``) in the "Load" menu; hidden for a model file."""
        from napari_xai.engine import XAIError
        from napari_xai.engine.models.folders import folder_choices

        combo = self.ui.modelChoiceComboBox
        choices, problem = [], ""
        if path and pathlib.Path(path).is_dir():
            try:
                choices = folder_choices(path)
            except XAIError as exc:
                problem = str(exc)
        labels = [c.label for c in choices]
        if [combo.itemText(i) for i in range(combo.count)] != labels:
            wasBlocked = combo.blockSignals(True)
            combo.clear()
            for label in labels:
                combo.addItem(label)
            combo.blockSignals(wasBlocked)
        chosen = self._parameterNode.modelChoice
        if labels and chosen not in labels:
            chosen = labels[0]
        if labels and combo.currentText != chosen:
            wasBlocked = combo.blockSignals(True)
            combo.currentIndex = labels.index(chosen)
            combo.blockSignals(wasBlocked)
        described = {c.label: c.description for c in choices}
        combo.toolTip = described.get(chosen, problem)
        combo.visible = self.ui.modelChoiceLabel.visible = bool(labels)
        self.ui.modelPathLineEdit.toolTip = problem or described.get(chosen, self.ui.modelPathLineEdit.toolTip)

    def _onModelChoiceChanged(self, text) -> None:
        if self._parameterNode is not None and text and self._parameterNode.modelChoice != text:
            self._parameterNode.modelChoice = str(text)

    # Method parameters, built from the engine's registry spec

    def _buildMethodParameterControls(self) -> None:
        import qt

        layout = self._methodParametersLayout
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        pn = self._parameterNode
        self._controlsForMethod = pn.method
        if self._hostProblem:
            self.ui.methodDescriptionLabel.text = self._hostProblem
            return
        if not params.engine_available():
            self.ui.methodDescriptionLabel.text = _("Press Apply to install what the engine needs; this method's parameters appear then.")
            return
        try:
            spec = self.logic.methodSpec(pn.method)
        except Exception as err:  # a broken install: say so, keep the module usable
            logging.warning(f"SaliencyMaps: method parameters unavailable: {err}")
            self.ui.methodDescriptionLabel.text = _("The engine could not be imported: ") + str(err)
            return
        self.ui.methodDescriptionLabel.text = f"{spec.summary}\n{spec.reference}"
        self.ui.methodDescriptionLabel.toolTip = spec.reference
        stored = params.load_values(pn.methodParameters, spec.name)
        for control in params.control_specs(spec):
            value = stored.get(control.name, control.default)
            widget = controls.make_control(qt, control, value, lambda v, name=control.name: self._storeMethodParameter(name, v))
            layout.addRow(controls.form_label(control), widget)

    def _storeMethodParameter(self, name, value) -> None:
        pn = self._parameterNode
        if pn:
            pn.methodParameters = params.store_value(pn.methodParameters, pn.method.value, name, value)

    # Region segment: the menu and the parameter node are kept in step with the segmentation's segments

    _SEGMENT_EVENTS = ("SegmentAdded", "SegmentRemoved", "SegmentModified")

    def _observeSegmentation(self, segmentationNode) -> None:
        """Follow segment edits (added, removed, renamed) of the region segmentation."""
        if segmentationNode is self._observedSegmentation:
            return
        for eventName in self._SEGMENT_EVENTS:
            event = getattr(slicer.vtkSegmentation, eventName)
            if self._observedSegmentation is not None:
                self.removeObserver(self._observedSegmentation, event, self._onSegmentsModified)
            if segmentationNode is not None:
                self.addObserver(segmentationNode, event, self._onSegmentsModified)
        self._observedSegmentation = segmentationNode

    def _onSegmentsModified(self, caller=None, event=None) -> None:
        self._updateRegionSegments()
        self._checkCanApply()

    def _updateRegionSegments(self) -> None:
        pn = self._parameterNode
        combo = self.ui.regionSegmentComboBox
        segmentation = pn.regionSegmentation if pn else None
        segments = nodes.segment_ids(segmentation) if segmentation else []
        wasBlocked = combo.blockSignals(True)
        if segments != self._listedSegments:
            self._listedSegments = segments
            combo.clear()
            combo.addItem(_("(none: the predicted mask)"), "")
            for segmentId, name in segments:
                combo.addItem(name, segmentId)
        index = combo.findData(pn.regionSegmentId) if pn and pn.regionSegmentId else 0
        combo.currentIndex = max(0, index)
        combo.enabled = bool(segments)
        combo.blockSignals(wasBlocked)
        if pn and pn.regionSegmentId and index < 0:
            # The segment is gone (deleted, or another segmentation chosen): the node follows the menu.
            pn.regionSegmentId = ""

    def onRegionSegmentChanged(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.regionSegmentId = self.ui.regionSegmentComboBox.itemData(index) or ""

    # Hide below: applied to the shown map as the slider moves

    def _updateThreshold(self) -> None:
        pn = self._parameterNode
        out = pn.outputVolume if pn else None
        if out is None or not out.GetAttribute(nodes.SIGN_ATTRIBUTE) or out.GetDisplayNode() is None:
            return
        shown = (out.GetID(), float(pn.thresholdFraction))
        if shown != self._thresholdShown:
            self._thresholdShown = shown
            nodes.set_threshold_fraction(out, pn.thresholdFraction)

    # Actions

    def onApplyButton(self) -> None:
        """Check and install the dependencies, then compute the map off the main thread.

        Apply is disabled from the first moment (an install runs for minutes and
        processes events) until the run has ended; install failures are shown
        in a dialog (``slicer.util.tryWithErrorDisplay``). The scene is read
        here, on the main thread; the estimate (with the model's prediction)
        and then the map are computed in a worker thread
        (``napari_xai.session``), under an application-modal progress dialog
        with Cancel, polled by a ``qt.QTimer``; the map is written back here.
        """
        if self._running:
            return
        self._running = True
        self._checkCanApply()
        started = False
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to install what SaliencyMaps needs."), waitCursor=False):
                if not self.logic.ensureDependencies():
                    return
            if not METHODS_FROM_CATALOGUE and params.method_choices() is not params.FALLBACK_METHODS:
                # The method list was made before the engine was installed: reload to list every method.
                slicer.util.reloadScriptedModule(self.moduleName)
                slicer.util.infoDisplay(_("The engine is installed. Choose the method and its parameters, then press Apply again."))
                return
            try:
                with slicer.util.tryWithErrorDisplay(_("Failed to compute the saliency map."), waitCursor=True):
                    pending = self.logic.prepareParameterNode(self._parameterNode)
            except Exception:  # shown to the user by tryWithErrorDisplay; nothing was started
                return
            started = self._startEstimate(pending)
        finally:
            if not started:
                self._running = False
                if self._parameterNode:
                    self._checkCanApply()

    def _startEstimate(self, pending) -> bool:
        """The model's prediction and the cost estimate, in the worker; then ask (a long run) and start the map."""
        from napari_xai.engine import Progress
        from napari_xai.session.jobs import model_prediction

        job = pending.job

        def work():
            yield Progress(0, 0, _("Estimating..."))
            prediction = model_prediction(job.model, job.scan, job.slice_index)
            return prediction, job.estimate()

        def estimated(value):
            from napari_xai.session.run_state import RunState

            prediction, cost = value
            self.ui.predictionLabel.text = prediction.describe() + (f" (slice K={job.slice_index})" if job.slice_index is not None else "")
            state = RunState()
            state.estimated([cost])
            slicer.util.showStatusMessage(cost.describe(), 10000)
            if state.needs_confirmation and not slicer.util.confirmOkCancelDisplay(
                _("This run is estimated to take long:") + "\n" + cost.describe() + "\n\n" + _("Start it?"), windowTitle=_("Saliency map")
            ):
                self._endRun()
                return
            self._startMap(pending)

        return self._startInBackground(work, _("Saliency map"), estimated, _("Failed to estimate the run."),
                                       _("Saliency map cancelled; the scene is unchanged."), endRun=False)

    def _startMap(self, pending) -> None:
        from napari_xai.session import checks
        from napari_xai.session.jobs import run_jobs

        def done(results):
            (attribution,) = results
            try:
                self.logic.finishMap(pending, attribution)
            except Exception as err:  # the inputs changed, or writing failed: nothing (more) is written
                self._showError(_("Failed to compute the saliency map."), err)
                return
            self.ui.checksLabel.text = "\n".join(checks.format_checks(attribution.checks)) or _("(none recorded)")
            slicer.util.showStatusMessage(checks.summary_line(attribution, checks=False), 10000)
            self._thresholdShown = None
            if self._parameterNode:
                self._updateThreshold()

        self._startInBackground(lambda: run_jobs([pending.job]), _("Saliency map"), done, _("Failed to compute the saliency map."),
                                _("Saliency map cancelled; the scene is unchanged."))

    def _startInBackground(self, make, title, onDone, failure, cancelled, endRun=True) -> bool:
        """Run ``make()`` (an engine generator) in a worker thread under an application-modal progress dialog.

        A ``qt.QTimer`` on the main thread polls it (``SaliencyMapsLib.runs``):
        progress and time left go to the dialog, Cancel (or the scene closing)
        stops the work at its next step, and ``onDone(result)``, the error
        dialog or the cancel message follow on the main thread. Modal: the
        scene, the inputs and the parameters cannot be edited meanwhile (a
        script or a scene close still can; the map is then not written).
        """
        import qt

        from napari_xai.engine.estimate import RemainingTime
        from SaliencyMapsLib.runs import PolledRun

        self._running = True
        self._checkCanApply()
        dialog = slicer.util.createProgressDialog(
            parent=slicer.util.mainWindow(), value=0, maximum=100, labelText=_("Preparing..."), windowTitle=title,
            windowModality=qt.Qt.ApplicationModal,
        )
        dialog.setCancelButtonText(_("Cancel"))
        clock = RemainingTime()

        def onProgress(event):
            dialog.setValue(int(round(100 * event.fraction)))
            left = clock.text(event.fraction)
            dialog.labelText = (event.message or _("Working...")) + (f" ({left})" if left else "")

        def finished(after):
            def handler(*args):
                dialog.close()
                self._run = None
                try:
                    after(*args)
                finally:
                    if endRun or self._run is None:
                        self._endRun()
            return handler

        self._run = PolledRun(
            qt, make, onProgress,
            onDone=finished(onDone),
            onError=finished(lambda err: self._showError(failure, err)),
            onCancelled=finished(lambda: slicer.util.showStatusMessage(cancelled, 5000)),
            shouldCancel=lambda: dialog.wasCanceled or self._sceneClosing,
        ).start()
        return True

    def _endRun(self) -> None:
        self._running = False
        if self._parameterNode:
            self._checkCanApply()

    @staticmethod
    def _showError(message, err) -> None:
        """An error of a run, in a dialog as ``tryWithErrorDisplay`` shows it (the run ended on a timer: nothing to re-raise to)."""
        logging.error(f"{message} {err}")
        slicer.util.errorDisplay(f"{message}\n\n{err}")

    def onSaveMapButton(self) -> None:
        import qt

        node = self._parameterNode.outputVolume
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _("Save saliency map"), (node.GetName() or "map") + ".nrrd", "Volumes (*.nrrd *.nii.gz *.nii *.mha)"
        )
        if path:
            with slicer.util.tryWithErrorDisplay(_("Failed to save the map."), waitCursor=True):
                self.logic.saveMap(node, path)
                slicer.util.showStatusMessage(_("Saved ") + path, 5000)

    def onScreenshotButton(self) -> None:
        import qt

        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save screenshot"), "saliency_map.png", "Images (*.png *.jpg)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("Failed to save the screenshot."), waitCursor=True):
                self.logic.captureScreenshot(path)
                slicer.util.showStatusMessage(_("Saved ") + path, 5000)

    def onReportButton(self) -> None:
        import qt

        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Write report"), "saliency_report.pdf", "PDF (*.pdf)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("Failed to write the report."), waitCursor=True):
                written = self.logic.writeReport(self._parameterNode.inputVolume, self._parameterNode.outputVolume, path)
                slicer.util.showStatusMessage(_("Saved ") + str(written.pdf), 5000)


#
# SaliencyMapsLogic
#


class SaliencyMapsLogic(ScriptedLoadableModuleLogic):
    """This class implements all the actual computation done by the module.

    It can be used without the widget (Python console, batch scripts)::

        logic = slicer.util.getModuleLogic("SaliencyMaps")
        mapNode, attribution = logic.process(volumeNode, "/path/model.pt", "integrated_gradients", target=1)

    Geometry, colours and the region mask are handled by ``SaliencyMapsLib.nodes``;
    the attribution is computed by ``napari_xai.engine``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._parameterNodeWrapper = None
        self._parameterNodeWarnings = []

    def getParameterNode(self):
        """The module's parameter node, wrapped; the same wrapper for the same node (one GUI binding per node).

        A saved scene whose values this version cannot use is repaired first
        (see :meth:`takeParameterNodeWarnings`).
        """
        node = super().getParameterNode()
        wrapper = self._parameterNodeWrapper
        # Closing the scene resets the singleton node in place (its parameters are emptied): wrap it anew,
        # which writes the defaults back.
        if wrapper is None or wrapper.parameterNode is not node or not all(node.HasParameter(n) for n in wrapper.allParameters):
            self._parameterNodeWarnings += self._repairParameterNode(node)
            wrapper = self._parameterNodeWrapper = SaliencyMapsParameterNode(node)
        return wrapper

    @staticmethod
    def _repairParameterNode(node) -> list:
        """Fix stored values the wrapper would refuse; returns what was changed, for the user.

        A method name no longer in the catalogue makes the Enum serializer raise
        ValueError on every read, which breaks ``connectGui`` in ``enter()``
        (``parameterNodeWrapper/serializers.py``, ``EnumSerializer.read``): it
        falls back to the default method. Older scenes stored an empty model
        path as ``"."``: it is emptied.
        """
        warnings = []
        stored = node.GetParameter("method") if node.HasParameter("method") else ""
        if stored and stored not in SaliencyMethod.__members__:
            node.SetParameter("method", DEFAULT_METHOD.name)
            message = _("The scene asks for the method '{stored}', which this version of SaliencyMaps does not have: "
                        "'{default}' is selected instead.").format(stored=stored, default=SaliencyMethod.label(DEFAULT_METHOD))
            logging.warning(message)
            warnings.append(message)
        if node.HasParameter("modelPath") and node.GetParameter("modelPath") == ".":
            node.SetParameter("modelPath", "")
        return warnings

    def takeParameterNodeWarnings(self) -> list:
        """Messages about repaired parameter values since the last call (the widget shows them)."""
        warnings, self._parameterNodeWarnings = self._parameterNodeWarnings, []
        return warnings

    # Dependencies

    @staticmethod
    def slicerVersion():
        """``(major, minor)`` of the running Slicer, or None outside the application."""
        app = getattr(slicer, "app", None)
        if app is None or not hasattr(app, "majorVersion"):
            return None
        return (int(app.majorVersion), int(app.minorVersion))

    def hostProblem(self) -> str:
        """Why this Slicer cannot run the engine (too old: the module needs Slicer 5.10+), or ``""``."""
        return dependencies.host_problem(self.slicerVersion(), sys.version_info[:2])

    @staticmethod
    def dependenciesMissing():
        """Import names napari-xai needs that are not installed in this Python (nothing is imported)."""
        return dependencies.missing_imports()

    @staticmethod
    def ensureDependencies(confirm=None, pipInstall=None, installTorch=None) -> bool:
        """Check the Slicer version, then install missing packages after asking; True when the engine can be imported.

        The version check comes first, so that nothing (not even torch) is
        installed into a Slicer that cannot run the engine. torch comes from
        the PyTorch extension (PyTorchUtils); the engine ships with the
        extension; its other requirements install under constraints that keep
        Slicer's own SimpleITK and numpy.

        Raises
        ------
        SaliencyMapsLib.dependencies.InstallError
            Slicer too old, or packages still missing after installing.
        subprocess.CalledProcessError
            pip failed.
        """

        def defaultInstallTorch():
            try:
                import PyTorchUtils
            except ImportError:
                raise dependencies.InstallError(
                    _("SaliencyMaps needs PyTorch, and the PyTorch extension is not installed."),
                    _("Install the PyTorch extension (Extensions Manager: PyTorch), restart Slicer and press Apply again."),
                ) from None
            return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)

        return dependencies.ensure_dependencies(
            confirm=confirm or (lambda text: slicer.util.confirmOkCancelDisplay(text, windowTitle=_("Install dependencies"))),
            pip_install=pipInstall or slicer.util.pip_install,
            install_torch=installTorch or defaultInstallTorch,
            slicer_version=SaliencyMapsLogic.slicerVersion(),
            python_version=sys.version_info[:2],
        )

    # Engine

    @staticmethod
    def methodSpec(method):
        """The engine's spec of ``method`` (a :data:`SaliencyMethod` member or a registry name)."""
        from napari_xai.engine import get_method

        return get_method(method.value if isinstance(method, enum.Enum) else str(method))

    @staticmethod
    def parameterNodeModel(pn):
        """The parameter node's model: its file's path (loaded when used), or its folder's chosen model, loaded."""
        modelPath = modelPathText(pn.modelPath)
        if modelPath and pathlib.Path(modelPath).is_dir():
            return SaliencyMapsLogic.loadModel(modelPath, pn.modelChoice)
        return modelPath

    @staticmethod
    def loadModel(modelPath, modelChoice=""):
        """Load a model file safely (no arbitrary unpickling), through the engine's shared, lock-guarded model cache.

        The cache (``napari_xai.session.models.MODELS``) is keyed by the file's
        path and modification time, so an edited file loads again; the worker
        thread of a run and the main thread share it. A folder (MONAI bundle,
        nnU-Net results) loads its model labelled ``modelChoice`` (default its first).
        """
        from napari_xai.session.models import MODELS

        return MODELS.get(modelPath or "", modelChoice)

    @staticmethod
    def regionMask(segmentationNode, segmentId, inputVolume):
        """The segment as a boolean mask on the input volume's grid, or None when no segment is chosen."""
        if segmentationNode is None or not segmentId:
            return None
        return nodes.segment_to_mask(segmentationNode, segmentId, inputVolume)

    @staticmethod
    def sliceShown(inputVolume):
        """The K index of ``inputVolume``'s slice through the centre of the Red slice view (the first slice view, else the middle slice).

        A slice view's centre is the translation of its ``SliceToRAS``; the
        index is SimpleITK's rounded continuous index of that point
        (``napari_xai.session.slices.slice_of_point``), clipped to the volume.
        """
        from napari_xai.session.slices import slice_of_point

        depth = slicer.util.arrayFromVolume(inputVolume).shape[0]
        scene = inputVolume.GetScene()
        sliceNode = scene.GetNodeByID("vtkMRMLSliceNodeRed") if scene is not None else None
        if sliceNode is None and scene is not None:
            sliceNode = scene.GetFirstNodeByClass("vtkMRMLSliceNode")
        if sliceNode is None:
            return depth // 2
        ras = [sliceNode.GetSliceToRAS().GetElement(r, 3) for r in range(3)]
        return slice_of_point(nodes.geometry_from_volume_node(inputVolume), (-ras[0], -ras[1], ras[2]), depth)

    def makeJob(self, inputVolume, model, method, target=None, region=None, reduce="sum", methodParameters=None,
                memoryBudgetMB=None, sliceIndex=None):
        """What to compute, read from the scene now (main thread): a ``napari_xai.session.jobs.Job``.

        A model taking 2D images explains one slice of a volume: ``sliceIndex``,
        or (None or -1) the slice the Red view shows; its map lands on that
        slice of the input's grid.

        :param model: a model file path (loaded by the job, in the thread that runs it), a ``LoadedModel`` or an ``nn.Module``.
        """
        from napari_xai.session.jobs import Job
        from napari_xai.session.models import takes_2d

        methodName = method.value if isinstance(method, enum.Enum) else str(method)
        scan = nodes.scan_from_volume_node(inputVolume)
        k = None
        if len(scan.spatial_shape) == 3 and takes_2d(model):
            k = self.sliceShown(inputVolume) if sliceIndex is None or int(sliceIndex) < 0 else int(sliceIndex)
        return Job(model, scan, methodName, target, region, reduce, dict(methodParameters or {}), slice_index=k,
                   memory_budget_mb=memoryBudgetMB)

    def run(self, inputVolume, model, method, target=None, region=None, reduce="sum", methodParameters=None,
            memoryBudgetMB=None, onProgress=None, shouldCancel=None, sliceIndex=None):
        """Compute the attribution; the scene is not touched.

        :param model: a model file path, a ``LoadedModel`` or an ``nn.Module``.
        :param method: registry name or :data:`SaliencyMethod` member.
        :param region: boolean mask ``(k, j, i)`` on the input's grid, or None.
        :returns: ``napari_xai.engine.Attribution`` on the input's grid.
        :raises napari_xai.engine.XAIError: bad input, with a message naming the fix.
        :raises napari_xai.engine.Cancelled: ``shouldCancel()`` returned True.
        """
        from napari_xai.engine.progress import run_to_end

        job = self.makeJob(inputVolume, model, method, target, region, reduce, methodParameters, memoryBudgetMB, sliceIndex)
        return run_to_end(job.explain_iter(), onProgress, shouldCancel, "the saliency map")

    def estimate(self, inputVolume, model, method, target=None, region=None, reduce="sum", methodParameters=None,
                 memoryBudgetMB=None, sliceIndex=None):
        """The engine's cost estimate of :meth:`run` with these choices (a timed probe; the scene is not touched).

        :returns: ``napari_xai.engine.Estimate`` (passes, seconds, peak memory; ``describe()`` for a message).
        """
        return self.makeJob(inputVolume, model, method, target, region, reduce, methodParameters, memoryBudgetMB, sliceIndex).estimate()

    def estimateParameterNode(self, parameterNode):
        """:meth:`estimate` with the choices stored in a :class:`SaliencyMapsParameterNode`."""
        pn = parameterNode
        if pn.inputVolume is None:
            from napari_xai.engine import ImageError

            raise ImageError("No input volume is selected.", "Select the scan to explain as the input volume.")
        return self.estimate(
            pn.inputVolume,
            self.parameterNodeModel(pn),
            pn.method,
            target=params.parse_target(pn.targetClass),
            region=self.regionMask(pn.regionSegmentation, pn.regionSegmentId, pn.inputVolume),
            methodParameters=params.method_params(pn.methodParameters, self.methodSpec(pn.method)),
            memoryBudgetMB=pn.memoryBudgetMB,
            sliceIndex=pn.sliceIndex,
        )

    def showMap(self, inputVolume, attribution, outputVolume=None, thresholdFraction=0.1, showResult=True):
        """Put an attribution into a volume node aligned with the input, coloured, and (optionally) shown over it.

        The node is named, described and given its provenance from this
        attribution every time, so a reused output volume never keeps the name
        of the run before.
        """
        name = f"{inputVolume.GetName()} {attribution.name}"
        outputNode = nodes.create_map_volume(inputVolume, attribution.values, name, outputVolume)
        try:
            nodes.describe_map(outputNode, attribution.provenance(), attribution.sign, attribution.caption())
            settings = nodes.apply_display(outputNode, attribution.values, attribution.sign, thresholdFraction)
        except Exception:
            if outputVolume is None:  # leave the scene as it was
                outputNode.GetScene().RemoveNode(outputNode)
            raise
        if showResult:
            nodes.show_as_foreground(outputNode.GetScene(), inputVolume, outputNode, settings.opacity)
            from SaliencyMapsLib import views

            if views.app_available():
                views.fit_slice_views()
        return outputNode

    def _checkInputsUnchanged(self, inputVolume, volumeBefore, regionSegmentation, regionSegmentId, region, outputVolume):
        """Refuse to write a map whose inputs were removed or edited while it was computed.

        Events are processed between the engine's steps; the progress dialog is
        application-modal, but a script, a timer or a scene close can still
        change the scene.

        Raises
        ------
        napari_xai.engine.XAIError
            What changed; nothing has been written.
        """
        from napari_xai.engine import XAIError

        changed = []
        if nodes.volume_state(inputVolume) != volumeBefore:
            changed.append(_("the input volume was removed or its voxels or geometry changed"))
        if regionSegmentation is not None and regionSegmentId:
            if not nodes.in_scene(regionSegmentation) or not nodes.in_scene(inputVolume):
                changed.append(_("the region segmentation was removed"))
            else:
                try:
                    now = self.regionMask(regionSegmentation, regionSegmentId, inputVolume)
                except XAIError:
                    now = None
                if now is None or region is None or not (now.shape == region.shape and (now == region).all()):
                    changed.append(_("the region segment changed"))
        if outputVolume is not None and not nodes.in_scene(outputVolume):
            changed.append(_("the map volume was removed"))
        if changed:
            raise XAIError(
                _("The inputs changed while the map was computed: ") + "; ".join(changed) + ".",
                _("Nothing was written. Press Apply again to compute the map of what is in the scene now."),
            )

    def prepareMap(self, inputVolume, model, method, target=None, regionSegmentation=None, regionSegmentId="",
                   reduce="sum", methodParameters=None, outputVolume=None, memoryBudgetMB=None, thresholdFraction=0.1,
                   showResult=True, beforeWrite=None, sliceIndex=None):
        """Read what a map run needs from the scene (main thread): a :class:`PendingMap` whose job a worker thread may run.

        :param beforeWrite: called by :meth:`finishMap` after the engine, before the scene is written; raises to abort.
        """
        if inputVolume is None:
            from napari_xai.engine import ImageError

            raise ImageError("No input volume is selected.", "Select the scan to explain as the input volume.")
        nodes.check_output_volume(inputVolume, outputVolume)
        volumeBefore = nodes.volume_state(inputVolume)
        region = self.regionMask(regionSegmentation, regionSegmentId, inputVolume)
        job = self.makeJob(inputVolume, model, method, target, region, reduce, methodParameters, memoryBudgetMB, sliceIndex)
        return PendingMap(job, inputVolume, volumeBefore, regionSegmentation, regionSegmentId, region, outputVolume,
                          thresholdFraction, showResult, beforeWrite)

    def finishMap(self, pending, attribution):
        """Write a computed map into the scene (main thread), if its inputs are still as :meth:`prepareMap` read them.

        :returns: the map volume node.
        :raises napari_xai.engine.XAIError: an input changed or went meanwhile; nothing is written.
        """
        self._checkInputsUnchanged(pending.inputVolume, pending.volumeBefore, pending.regionSegmentation, pending.regionSegmentId,
                                   pending.region, pending.outputVolume)
        if pending.beforeWrite is not None:
            pending.beforeWrite()
        outputNode = self.showMap(pending.inputVolume, attribution, pending.outputVolume, pending.thresholdFraction, pending.showResult)
        if pending.parameterNode is not None:
            pending.parameterNode.outputVolume = outputNode
        logging.info(f"Saliency map completed: {attribution.caption()}")
        return outputNode

    def process(self, inputVolume, model, method, target=None, regionSegmentation=None, regionSegmentId="",
                reduce="sum", methodParameters=None, outputVolume=None, memoryBudgetMB=None, thresholdFraction=0.1,
                showResult=True, onProgress=None, shouldCancel=None, beforeWrite=None, sliceIndex=None):
        """Run the whole path here: region mask, engine, output volume, display (the widget runs the engine off the main thread).

        Nothing is added to or changed in the scene unless the engine succeeds
        and the inputs are as they were when it started (errors, Cancel and
        inputs edited mid-run leave it as it was).

        :param beforeWrite: called after the engine, before the scene is written; raises to abort.
        :returns: ``(outputVolumeNode, attribution)``.
        """
        from napari_xai.engine.progress import run_to_end

        pending = self.prepareMap(inputVolume, model, method, target, regionSegmentation, regionSegmentId, reduce, methodParameters,
                                  outputVolume, memoryBudgetMB, thresholdFraction, showResult, beforeWrite, sliceIndex)
        attribution = run_to_end(pending.job.explain_iter(), onProgress, shouldCancel, "the saliency map")
        return self.finishMap(pending, attribution), attribution

    @staticmethod
    def parameterState(parameterNode) -> dict:
        """Every parameter's value, comparable (nodes by ID), to tell whether the user changed one."""
        state = {}
        for name in parameterNode.allParameters:
            value = getattr(parameterNode, name)
            state[name] = value.GetID() if hasattr(value, "GetID") else str(value)
        return state

    def prepareParameterNode(self, parameterNode):
        """:meth:`prepareMap` with the choices stored in a :class:`SaliencyMapsParameterNode`.

        The map is written (and the node's outputVolume set) only if the
        parameters are still those it was computed with (the map on screen
        always matches the choices shown).
        """
        from napari_xai.engine import ModelError, XAIError

        pn = parameterNode
        modelPath = modelPathText(pn.modelPath)
        if not modelPath:
            raise ModelError("No model file is selected.", "Choose a TorchScript file, a torch.export archive (.pt2), or a weights file with its JSON spec.")
        spec = self.methodSpec(pn.method)
        before = self.parameterState(pn)

        def parametersUnchanged():
            if pn.parameterNode.GetScene() is None or self.parameterState(pn) != before:
                raise XAIError(
                    _("The module's parameters changed while the map was computed."),
                    _("Nothing was written. Press Apply again to compute the map for the parameters shown now."),
                )

        pending = self.prepareMap(
            pn.inputVolume,
            self.parameterNodeModel(pn),
            pn.method,
            target=params.parse_target(pn.targetClass),
            regionSegmentation=pn.regionSegmentation,
            regionSegmentId=pn.regionSegmentId,
            reduce=pn.regionReduce,
            methodParameters=params.method_params(pn.methodParameters, spec),
            outputVolume=pn.outputVolume,
            memoryBudgetMB=pn.memoryBudgetMB,
            thresholdFraction=pn.thresholdFraction,
            beforeWrite=parametersUnchanged,
            sliceIndex=pn.sliceIndex,
        )
        pending.parameterNode = pn
        return pending

    def processParameterNode(self, parameterNode, onProgress=None, shouldCancel=None):
        """:meth:`process` with the choices stored in a :class:`SaliencyMapsParameterNode`; sets its outputVolume."""
        from napari_xai.engine.progress import run_to_end

        pending = self.prepareParameterNode(parameterNode)
        attribution = run_to_end(pending.job.explain_iter(), onProgress, shouldCancel, "the saliency map")
        return self.finishMap(pending, attribution), attribution

    # Trust metrics

    def prepareEvaluation(self, inputVolume, model, mapVolumes, maskSegmentation=None, maskSegmentId="", anatomySegmentation=None,
                          anatomySegmentId="", settings=None, memoryBudgetMB=None):
        """Read the scan, the maps and the masks (main thread): a :class:`PendingEvaluation` whose ``work()`` a worker thread may run.

        Maps of a 2D model (one slice of the volume) are evaluated on that slice.
        """
        from napari_xai.engine import ImageError
        from napari_xai.engine.metrics import evaluate_maps_iter
        from napari_xai.session.models import get_model
        from napari_xai.session.slices import evaluation_inputs

        if inputVolume is None:
            raise ImageError("No input volume is selected.", "Select the scan the maps were made on as the input volume.")
        scan = nodes.scan_from_volume_node(inputVolume)
        maps = {node.GetName(): nodes.attribution_from_map_node(node) for node in mapVolumes if node is not None}
        mask = self.regionMask(maskSegmentation, maskSegmentId, inputVolume)
        anatomy = self.regionMask(anatomySegmentation, anatomySegmentId, inputVolume)
        scan, maps, mask, anatomy = evaluation_inputs(scan, maps, mask, anatomy)
        options = dict(settings or {})
        metrics = options.pop("metrics", None)

        def work():
            return evaluate_maps_iter(get_model(model), scan, maps, mask=mask, anatomy=anatomy, metrics=metrics,
                                      memory_budget_mb=memoryBudgetMB, **options)

        return PendingEvaluation(work, [node for node in mapVolumes if node is not None], inputVolume.GetScene())

    @staticmethod
    def finishEvaluation(pending, results, ranking, tableNode=None):
        """Write the metrics into the maps' provenance and a ranked table node (main thread); returns the table node."""
        from SaliencyMapsLib import trust

        for node in pending.mapVolumes:
            if nodes.in_scene(node):
                trust.store_metrics(node, results[node.GetName()])
        return trust.metrics_table_node(pending.scene, results, ranking, tableNode)

    def evaluateMaps(self, inputVolume, model, mapVolumes, maskSegmentation=None, maskSegmentId="", anatomySegmentation=None,
                     anatomySegmentId="", settings=None, tableNode=None, memoryBudgetMB=None, onProgress=None, shouldCancel=None):
        """How far each map of one scan can be trusted (the engine's ``evaluate``, one shared setup for all maps), here.

        Writes a table node (one row per map, ranked; column tooltips hold the
        definitions) and adds the metrics to each map node's provenance. The
        scene is unchanged on error or Cancel. (The widget runs the same
        steps with the engine off the main thread.)

        :param mapVolumes: map volume nodes made by :meth:`process` on ``inputVolume``.
        :param maskSegmentation: optional segment where the evidence should lie (a lesion).
        :param anatomySegmentation: optional segment of the body; None: derived from the scan.
        :param settings: evaluation settings (``steps``, ``removal``, ``sanity_steps``, ... and ``metrics``).
        :returns: ``(tableNode, results, ranking)``.
        """
        from napari_xai.engine.progress import run_to_end

        pending = self.prepareEvaluation(inputVolume, model, mapVolumes, maskSegmentation, maskSegmentId, anatomySegmentation,
                                         anatomySegmentId, settings, memoryBudgetMB)
        results, ranking = run_to_end(pending.work(), onProgress, shouldCancel, "evaluate")
        return self.finishEvaluation(pending, results, ranking, tableNode), results, ranking

    # Export

    @staticmethod
    def saveMap(mapVolume, path):
        """Save a map (NRRD/NIfTI/MHA) with its geometry, and its provenance as ``<path>.json``."""
        return nodes.save_map(mapVolume, path)

    @staticmethod
    def writeReport(inputVolume, mapVolume, path):
        """PDF report (and PNG pages) of a map over its input volume: views, parameters, checks, provenance."""
        return nodes.write_report(inputVolume, mapVolume, path)

    @staticmethod
    def captureScreenshot(path):
        """Screenshot of the view layout (inside the application only)."""
        from SaliencyMapsLib import views

        return views.capture_slice_views(path)


@dataclasses.dataclass
class PendingMap:
    """A map run between :meth:`SaliencyMapsLogic.prepareMap` and :meth:`SaliencyMapsLogic.finishMap` (both on the main thread).

    ``job`` (a ``napari_xai.session.jobs.Job``) holds copies of the voxels and
    the region, so a worker thread can run it without touching the scene.
    """

    job: object
    inputVolume: object
    volumeBefore: object
    regionSegmentation: object
    regionSegmentId: str
    region: object
    outputVolume: object
    thresholdFraction: float
    showResult: bool
    beforeWrite: object
    parameterNode: object = None


@dataclasses.dataclass
class PendingEvaluation:
    """An evaluation between :meth:`SaliencyMapsLogic.prepareEvaluation` and :meth:`SaliencyMapsLogic.finishEvaluation`.

    ``work()`` returns the engine's generator (run it in any thread); the map
    nodes and the scene are only for the main thread.
    """

    work: object
    mapVolumes: list
    scene: object


#
# SaliencyMapsTest
#


class SaliencyMapsTest(ScriptedLoadableModuleTest):
    """The whole path on a synthetic oblique, anisotropic volume with a tiny network.

    Run inside Slicer (see slicer_module/README.md), from the repository root::

        Slicer --no-splash --testing --additional-module-paths slicer_module/SaliencyMaps \\
          --python-code "import slicer.testing; slicer.testing.runUnitTest(['slicer_module/SaliencyMaps'], 'SaliencyMaps')"

    or press "Reload and Test" in the module's Reload & Test section (developer mode).
    The tests also run outside the application (against slicer-core) from
    ``tests/slicer``; the screenshot step then is skipped.

    The tests need torch and the engine's requirements, which the extension
    build machines (where ``slicer_add_python_unittest`` registers this test)
    do not have: in testing mode (``--testing``, no one to ask) each test is
    skipped with a message naming what is missing; interactively ("Reload and
    Test") the module offers to install it first, and skips if declined.
    """

    def setUp(self):
        """Skip (with the reason) when the engine cannot run here; else reset the state: a cleared scene."""
        reason = self.missingRequirements()
        if reason:
            self.skipTest(reason)
        slicer.mrmlScene.Clear()

    @staticmethod
    def missingRequirements() -> str:
        """Why the self-test cannot run in this Slicer, or ``""``; offers the install when someone can answer."""
        problem = dependencies.host_problem(SaliencyMapsLogic.slicerVersion(), sys.version_info[:2])
        if problem:
            return "SaliencyMaps self-test skipped: " + problem
        missing = dependencies.missing_imports()
        if not missing:
            return ""
        app = getattr(slicer, "app", None)
        testing = app is None or not hasattr(app, "testingEnabled") or app.testingEnabled()
        if not testing:
            try:
                if SaliencyMapsLogic.ensureDependencies():
                    return ""
            except Exception as err:  # shown to the user as the skip reason
                return f"SaliencyMaps self-test skipped: installing {', '.join(missing)} failed: {err}"
        return (
            f"SaliencyMaps self-test skipped: {', '.join(missing)} not installed in this Slicer's Python "
            "(the extension build machines have no PyTorch). Install them from the module (press Apply) and run the test again."
        )

    def runTest(self):
        """Run as few or as many tests as needed here (as "Reload and Test" does)."""
        for test in (self.test_SaliencyMaps_alignedMap, self.test_SaliencyMaps_regionAndCancel):
            try:
                self.setUp()
            except unittest.SkipTest as skip:
                logging.warning(str(skip))
                self.delayDisplay(str(skip))
                return
            test()

    # helpers

    @staticmethod
    def _syntheticVolume(scene, name="synthetic"):
        """A 9x10x11 float volume with an oblique, anisotropic IJKToRAS and a bright blob."""
        import numpy as np

        angle = np.deg2rad(25.0)
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
        ijkToRas = np.eye(4)
        ijkToRas[:3, :3] = rotation @ np.diag([0.8, 1.2, 2.5])
        ijkToRas[:3, 3] = [10.0, -20.0, 5.0]
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijkToRas))
        array = np.random.default_rng(0).normal(size=(9, 10, 11)).astype(np.float32)
        array[3:6, 4:7, 4:8] += 4.0
        slicer.util.updateVolumeFromArray(volume, array)
        volume.CreateDefaultDisplayNodes()
        return volume, ijkToRas

    @staticmethod
    def _tinyModel(segmentation=False):
        import torch

        torch.manual_seed(0)
        conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        if segmentation:
            return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1)).eval()
        return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()

    # tests

    def test_SaliencyMaps_alignedMap(self):
        """Model file -> Apply -> a map volume with the input's IJKToRAS, coloured, in the foreground, saved."""
        import tempfile

        import numpy as np
        import torch

        self.delayDisplay("Starting the test: aligned map")
        scene = slicer.mrmlScene
        volume, ijkToRas = self._syntheticVolume(scene)
        composite = scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode") or scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")

        tmp = pathlib.Path(tempfile.mkdtemp(prefix="SaliencyMapsTest-"))
        modelPath = tmp / "tiny.pt"
        torch.jit.script(self._tinyModel()).save(str(modelPath))

        logic = SaliencyMapsLogic()
        pn = logic.getParameterNode()
        pn.inputVolume = volume
        pn.modelPath = str(modelPath)
        pn.method = SaliencyMethod["vanilla_gradient"] if "vanilla_gradient" in SaliencyMethod.__members__ else DEFAULT_METHOD
        pn.targetClass = "1"
        events = []
        mapNode, attribution = logic.processParameterNode(pn, onProgress=events.append)
        self.assertIs(pn.outputVolume, mapNode)
        self.assertTrue(events)
        np.testing.assert_allclose(nodes.ijk_to_ras(mapNode), ijkToRas, atol=1e-9)
        np.testing.assert_allclose(slicer.util.arrayFromVolume(mapNode), attribution.values)
        self.assertEqual(composite.GetForegroundVolumeID(), mapNode.GetID())
        self.assertEqual(composite.GetBackgroundVolumeID(), volume.GetID())
        self.assertGreater(composite.GetForegroundOpacity(), 0.0)
        self.assertIsNotNone(mapNode.GetDisplayNode().GetColorNode())

        saved = logic.saveMap(mapNode, tmp / "map.nrrd")
        self.assertTrue(saved.is_file() and pathlib.Path(str(saved) + ".json").is_file())
        reloaded = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "reloaded")
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(saved))
        self.assertTrue(storage.ReadData(reloaded))
        np.testing.assert_allclose(nodes.ijk_to_ras(reloaded), ijkToRas, atol=1e-5)

        from SaliencyMapsLib import views

        if views.app_available():
            shot = logic.captureScreenshot(tmp / "views.png")
            self.assertTrue(shot.is_file() and shot.stat().st_size > 0)
        self.delayDisplay("Test passed: aligned map")

    def test_SaliencyMaps_regionAndCancel(self):
        """A segment as the region of a segmentation network; Cancel and bad input leave the scene unchanged."""
        import numpy as np

        from napari_xai.engine import Cancelled, XAIError

        self.delayDisplay("Starting the test: region, cancel, bad input")
        scene = slicer.mrmlScene
        volume, _ijkToRas = self._syntheticVolume(scene)
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "region")
        labelmap.CopyOrientation(volume)
        labels = np.zeros((9, 10, 11), dtype=np.uint8)
        labels[3:6, 4:7, 4:8] = 1
        slicer.util.updateVolumeFromArray(labelmap, labels)
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "regions")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        self.assertTrue(slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation))
        scene.RemoveNode(labelmap)
        segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)

        logic = SaliencyMapsLogic()
        mask = logic.regionMask(segmentation, segmentId, volume)
        np.testing.assert_array_equal(mask, labels > 0)

        model = self._tinyModel(segmentation=True)
        before = scene.GetNumberOfNodes()
        with self.assertRaises(Cancelled):
            logic.process(volume, model, "occlusion", target=1, regionSegmentation=segmentation, regionSegmentId=segmentId,
                          methodParameters={"window": 4, "stride": 2}, shouldCancel=lambda: True)
        self.assertEqual(scene.GetNumberOfNodes(), before)
        with self.assertRaises(XAIError):
            logic.process(volume, model, "occlusion", target=7, regionSegmentation=segmentation, regionSegmentId=segmentId)
        self.assertEqual(scene.GetNumberOfNodes(), before)

        mapNode, attribution = logic.process(volume, model, "occlusion", target=1, regionSegmentation=segmentation,
                                             regionSegmentId=segmentId, methodParameters={"window": 4, "stride": 2})
        self.assertEqual(attribution.target.get("task"), "segmentation")
        self.assertEqual(slicer.util.arrayFromVolume(mapNode).shape, (9, 10, 11))
        self.delayDisplay("Test passed: region, cancel, bad input")
