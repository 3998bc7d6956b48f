"""The dock widget: choose image, model, method, target and parameters; run, cancel, compare, export.

Thin by design: what every host does alike is in :mod:`napari_xai.session`
(jobs, their run and its state, the model cache, controls, checks), what is
napari's own in :mod:`napari_xai._napari._logic`; this module builds controls
and wires signals. Work runs in a napari thread worker driving the session's
generator (``NAPARI_XAI_NO_THREADS=1`` drives it on the main thread instead,
for debugging), through :func:`._workers.run_generator`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from magicgui.widgets import ComboBox, Container, create_widget
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QStandardItemModel
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_xai.engine import Prediction, XAIError, get_method
from napari_xai.session import checks, jobs, methods, models
from napari_xai.session.controls import control_for

from .. import _logic
from ._docks import RunDock, alive, connect_viewer, same_model, select_model
from ._workers import LIVE_WORKERS, WorkerGuard, start_call
from .._layers import PROVENANCE_KEY, is_result_layer, scan_from_layer

#: Model menu entry that opens a file dialog.
_OPEN_FILE = "Open model file…"
_OPEN_FOLDER = "Open model folder (MONAI bundle, nnU-Net)…"


#: Delay between the steps of :meth:`XAIWidget._in_turns`. Not 0: Qt 6 queues a zero-delay
#: single shot as a posted event, and two posted in a row ran back to back before the
#: window's timers and repaints (measured: the longest stall was two steps long).
_TURN_DELAY_MS = 1


class XAIWidget(RunDock, QWidget):
    """Saliency maps for the selected image layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer the widget is docked in.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:  # noqa: F821
        super().__init__(napari_viewer)
        self.prediction: Prediction | None = None
        self.last_results: list[Any] = []
        self._last_result_layer: Any = None
        self._param_widgets: dict[str, Any] = {}
        self._predict_worker: Any = None
        self._staged = 0  # main-thread steps of showing a result still queued (see _in_turns)
        self._worker_guard = WorkerGuard(self, self._after_workers_stopped)

        outer = QVBoxLayout(self)
        form = QFormLayout()
        outer.addLayout(form)

        self.image_combo = ComboBox(choices=self._image_choices, nullable=True)
        form.addRow("image", self.image_combo.native)

        self.model_combo = QComboBox()
        self.model_combo.setToolTip(
            "A bundled sample model, a model file (.pt2, TorchScript, weights + JSON spec), or a MONAI bundle / nnU-Net results folder."
        )
        samples = models.sample_models()
        for name, path in samples.items():
            self.model_combo.addItem(f"sample: {name}", str(path))
        self.model_combo.addItem(_OPEN_FILE, None)
        self.model_combo.addItem(_OPEN_FOLDER, None)
        default = models.default_sample_model(samples)
        if default is not None:
            self.model_combo.setCurrentIndex(self.model_combo.findData(str(default)))
        form.addRow("model", self.model_combo)

        self.method_combo = QComboBox()
        self._fill_methods()
        form.addRow("method", self.method_combo)
        self.method_help = QLabel()
        self.method_help.setWordWrap(True)
        # no style sheet of its own: it takes the napari theme's text colour and size
        self.method_help.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addRow(self.method_help)

        self.target_combo = QComboBox()
        self.target_combo.setToolTip("The class explained; the first entry is the model's prediction on this image.")
        form.addRow("target", self.target_combo)
        self.region_combo = ComboBox(choices=self._labels_choices, nullable=True)
        self.region_combo.tooltip = "Segmentation models: explain the class over this Labels layer's painted voxels (none: the predicted mask)."
        self.reduce_combo = ComboBox(choices=["sum", "mean"], value="sum")
        self.reduce_combo.tooltip = "How the class's logits are reduced over the region."
        region_row = QHBoxLayout()
        region_row.addWidget(self.region_combo.native, 3)
        region_row.addWidget(self.reduce_combo.native, 1)
        form.addRow("region", region_row)

        self.params_box = QGroupBox("parameters")
        self.params_layout = QVBoxLayout(self.params_box)
        self.params_container: Container | None = None
        outer.addWidget(self.params_box)

        self.replace_check = QCheckBox("replace the previous result (else add a new layer)")
        outer.addWidget(self.replace_check)
        self.peak_check = QCheckBox("go to the map's peak when done")
        self.peak_check.setChecked(True)
        outer.addWidget(self.peak_check)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        outer.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        outer.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        outer.addWidget(self.status)

        compare_box = QGroupBox("compare methods (side by side)")
        compare_layout = QVBoxLayout(compare_box)
        self.compare_list = QListWidget()
        self._fill_compare_list()
        self._fit_compare_list(rows=8)
        compare_layout.addWidget(self.compare_list)
        compare_buttons = QHBoxLayout()
        self.compare_button = QPushButton("Compare")
        self.end_compare_button = QPushButton("Exit grid")
        compare_buttons.addWidget(self.compare_button)
        compare_buttons.addWidget(self.end_compare_button)
        compare_layout.addLayout(compare_buttons)
        self.checks_label = QLabel("")
        self.checks_label.setWordWrap(True)
        self.checks_label.setToolTip("Checks each map carries (e.g. completeness of integrated gradients).")
        compare_layout.addWidget(self.checks_label)
        outer.addWidget(compare_box)

        export_box = QGroupBox("export figure")
        export_layout = QHBoxLayout(export_box)
        self.export_layout_combo = QComboBox()
        self.export_layout_combo.addItems(list(_logic.EXPORT_LAYOUTS))
        self.export_button = QPushButton("Export PNG…")
        export_layout.addWidget(self.export_layout_combo)
        export_layout.addWidget(self.export_button)
        self.report_button = QPushButton("Report PDF…")
        self.report_button.setToolTip("A PDF report (and PNG pages) of the scan with all its visible maps: views, parameters, trust table, provenance.")
        export_layout.addWidget(self.report_button)
        outer.addWidget(export_box)
        outer.addStretch(1)

        # wiring (viewer events are disconnected when the widget is deleted, see _docks.connect_viewer)
        self._viewer_connections = connect_viewer(self, [
            (self.viewer.layers.events.inserted, self._reset_layer_choices),
            (self.viewer.layers.events.removed, self._reset_layer_choices),
            (self.viewer.layers.selection.events.active, self._on_active_layer),
        ])
        self.image_combo.changed.connect(self.refresh_prediction)
        self.model_combo.activated.connect(self._on_model_activated)
        self.model_combo.currentIndexChanged.connect(lambda *_: self.refresh_prediction())
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.compare_button.clicked.connect(self.run_compare)
        self.end_compare_button.clicked.connect(lambda: self._in_turns(*_logic.end_comparison_steps(self.viewer)))
        self.export_button.clicked.connect(self._export_dialog)
        self.report_button.clicked.connect(self._report_dialog)

        self._on_method_changed()
        self._reset_layer_choices()
        self._show_ready()

    # ------------------------------------------------------------------ choices

    def _image_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image) and not is_result_layer(layer) and not layer.metadata.get(_logic.COMPARE_KEY)]

    def _labels_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Labels)]

    def _reset_layer_choices(self, *_: Any) -> None:
        if not alive(self.status):
            return
        before = self.image_combo.value
        self.image_combo.reset_choices()
        self.region_combo.reset_choices()
        if self.image_combo.value is None:
            choices = self._image_choices()
            if choices:
                self.image_combo.value = choices[0][1]
        if self.image_combo.value is not before:
            self.refresh_prediction()

    def _fill_methods(self) -> None:
        model = QStandardItemModel()
        self.method_combo.setModel(model)
        for family, specs in methods.methods_by_family():
            self.method_combo.addItem(f"— {family} —", None)
            header = model.item(model.rowCount() - 1)
            header.setEnabled(False)
            for spec in specs:
                self.method_combo.addItem(f"   {spec.title}", spec.name)
                self.method_combo.setItemData(self.method_combo.count() - 1, methods.method_help(spec), Qt.ToolTipRole)
        names = [self.method_combo.itemData(i) for i in range(self.method_combo.count())]
        default = methods.DEFAULT_METHOD if methods.DEFAULT_METHOD in names else next((n for n in names if n), None)
        if default is not None:
            self.method_combo.setCurrentIndex(names.index(default))

    def _fit_compare_list(self, rows: int) -> None:
        """Show exactly ``rows`` whole rows (the rest scrolls), never a row cut in half."""
        row = self.compare_list.sizeHintForRow(0)
        if row > 0:
            self.compare_list.setFixedHeight(row * min(rows, self.compare_list.count()) + 2 * self.compare_list.frameWidth())

    def _fill_compare_list(self) -> None:
        seen_family: set[str] = set()
        for family, specs in methods.methods_by_family():
            for spec in specs:
                item = QListWidgetItem(f"{spec.title} ({family})")
                item.setData(Qt.UserRole, spec.name)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Checked if family not in seen_family else Qt.Unchecked)
                seen_family.add(family)
                self.compare_list.addItem(item)

    # ------------------------------------------------------------------ public state

    @property
    def method(self) -> str | None:
        """Registry name of the selected method."""
        return self.method_combo.currentData()

    def set_method(self, name: str) -> None:
        """Select a method by registry name."""
        for i in range(self.method_combo.count()):
            if self.method_combo.itemData(i) == name:
                self.method_combo.setCurrentIndex(i)
                return
        raise KeyError(name)

    @property
    def model(self) -> Any:
        """The selected model (a path, or an in-process model added with :meth:`set_model`)."""
        return self.model_combo.currentData()

    def set_model(self, model: Any, label: str | None = None) -> None:
        """Add a model (path, ``nn.Module`` or ``LoadedModel``) to the menu and select it."""
        select_model(self.model_combo, model, label, at=self.model_combo.findText(_OPEN_FILE))  # new models go above the two "Open…" entries

    def open_model_folder(self, path: str | os.PathLike, label: str | None = None) -> bool:
        """Load a MONAI bundle or nnU-Net folder and select it; ``label`` picks the fold / configuration, else the user does.

        The choices and what each loads come from the engine (``engine/models/folders.py``);
        errors go to the status line. Returns whether a model was loaded.
        """
        from napari_xai.engine.models.folders import choice_by_label, folder_choices

        try:
            choices = folder_choices(path)
            if label is None and len(choices) > 1:
                picked, ok = QInputDialog.getItem(self, "Model folder", f"{Path(path).name}: load", [c.label for c in choices], 0, False)
                if not ok:
                    return False
                label = picked
            choice = choice_by_label(path, label or "")
            loaded = choice.load()
        except XAIError as exc:
            self._fail(exc)
            return False
        self.set_model(loaded, f"{Path(path).name}: {choice.label}" if len(choices) > 1 else Path(path).name)
        self.model_combo.setItemData(self.model_combo.currentIndex(), choice.description, Qt.ToolTipRole)
        self.status.setText(f"Loaded {choice.description}.")
        return True

    def set_checked_compare_methods(self, names: list[str]) -> None:
        """Tick exactly these methods in the compare list."""
        for i in range(self.compare_list.count()):
            item = self.compare_list.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in names else Qt.Unchecked)

    def param_values(self) -> dict[str, Any]:
        """The parameter form's values, as the method takes them."""
        spec = get_method(self.method)
        return {p.name: control_for(p).parse(self._param_widgets[p.name].value) for p in spec.params if p.name in self._param_widgets}

    def set_param(self, name: str, value: Any) -> None:
        """Set one parameter control (tests, scripts)."""
        self._param_widgets[name].value = value

    # ------------------------------------------------------------------ reactions

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) is None and self.model_combo.itemText(index) == _OPEN_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Model file", "", "Models (*.pt2 *.pt *.pth *.ts *.safetensors *.json);;All files (*)")
            if path:
                self.set_model(path)
            elif self.model_combo.count() > 2:
                self.model_combo.setCurrentIndex(0)
        elif self.model_combo.itemData(index) is None and self.model_combo.itemText(index) == _OPEN_FOLDER:
            path = QFileDialog.getExistingDirectory(self, "Model folder (MONAI bundle, nnU-Net results)")
            if not (path and self.open_model_folder(path)) and self.model_combo.count() > 2:
                self.model_combo.setCurrentIndex(0)

    def _on_method_changed(self, *_: Any) -> None:
        name = self.method
        if not name:
            return
        spec = get_method(name)
        self.method_help.setText(methods.method_help(spec))
        self._show_ready()
        if self.params_container is not None:
            self.params_layout.removeWidget(self.params_container.native)
            self.params_container.native.deleteLater()
        self._param_widgets = {p.name: create_widget(**_logic.param_widget_options(p)) for p in spec.params}
        self.params_container = Container(widgets=list(self._param_widgets.values()))
        self.params_container.native.layout().setContentsMargins(0, 0, 0, 0)
        self.params_layout.addWidget(self.params_container.native)
        self.params_box.setVisible(bool(spec.params))

    def _show_ready(self) -> None:
        """The idle status line: what is missing, or what Run will do."""
        if not self.is_running and alive(self.status):
            layer = self.image_combo.value
            self.status.setText(_logic.ready_message(layer.name if layer is not None else None, self.model, self.method, self.prediction))

    def _on_active_layer(self, event: Any = None) -> None:
        if not alive(self.checks_label):
            return
        layer = self.viewer.layers.selection.active
        if layer is not None and is_result_layer(layer):
            lines = checks.format_checks(layer.metadata[PROVENANCE_KEY].get("checks", {}))
            self.checks_label.setText(f"{layer.name}: " + ("; ".join(lines) if lines else "no checks recorded"))

    def refresh_prediction(self, *_: Any) -> None:
        """Predict on the selected image with the selected model, to fill the target menu."""
        self.prediction = None
        self._fill_targets(None)
        self._show_ready()
        layer, model = self.image_combo.value, self.model
        if layer is None or model is None:
            return

        k = _logic.current_slice(self.viewer, layer) if layer.ndim == 3 and models.takes_2d(model) else None

        def work():
            return jobs.model_prediction(model, scan_from_layer(layer), k)

        def done(prediction):
            if not alive(self.status):
                return
            if layer == self.image_combo.value and same_model(model, self.model):
                self.prediction = prediction
                self._fill_targets(prediction)
                self._show_ready()

        def failed(exc):
            if not alive(self.status) or self.is_running:
                return
            self.status.setText(f"Error: the model cannot run on {layer.name!r}: {exc}")

        if _logic.threads_disabled():
            try:
                done(work())
            except Exception as exc:  # shown in the status line only; Run shows it as a notification
                failed(exc)
            return
        self._predict_worker = start_call(work, returned=done, failed=failed, guard=self._worker_guard)

    def _fill_targets(self, prediction: Any) -> None:
        self.target_combo.clear()
        labels = models.model_labels(self.model)  # the spec alone: no weights are loaded on the main thread
        for text, value in jobs.target_choices(prediction, labels):
            self.target_combo.addItem(text, value)

    # ------------------------------------------------------------------ runs

    def _jobs(self, names: list[str]) -> list[jobs.Job]:
        layer = self.image_combo.value
        if layer is None:
            raise XAIError("No image layer is selected.", "Open a scan (File > Open, or File > Open Sample > napari-xai) and pick it under 'image'.")
        if self.model is None:
            raise XAIError("No model is selected.", "Pick a sample model or open a model file.")
        scan = scan_from_layer(layer)
        k = _logic.current_slice(self.viewer, layer) if scan.array.ndim == 3 and models.takes_2d(self.model) else None
        region_layer = self.region_combo.value
        region = _logic.region_from_labels(region_layer) if region_layer is not None else None
        target = self.target_combo.currentData()
        out = []
        for name in names:
            params = self.param_values() if name == self.method else {}
            out.append(jobs.Job(self.model, scan, name, target, region, self.reduce_combo.value, params, slice_index=k))
        return out

    def run(self) -> None:
        """Explain the selected image with the selected method (Run button)."""
        self._start([self.method], compare=False)

    def run_compare(self) -> None:
        """Run every ticked method and show the maps side by side (Compare button)."""
        names = [self.compare_list.item(i).data(Qt.UserRole) for i in range(self.compare_list.count()) if self.compare_list.item(i).checkState() == Qt.Checked]
        if not names:
            self._fail(XAIError("No method is ticked in the compare list.", "Tick two or more methods."))
            return
        self._start(names, compare=True)

    def _start(self, names: list[str], compare: bool) -> None:
        if self.is_running:
            return
        try:
            todo = self._jobs(names)
        except Exception as exc:
            self._fail(exc)
            return
        self.state.begin_estimate(names=names, compare=compare, source=self.image_combo.value)
        self.status.setText(f"Estimating {', '.join(names)}…")
        if _logic.threads_disabled():
            try:
                estimates = jobs.estimate_jobs(todo)
            except Exception as exc:
                self.state.finish()
                self._fail(exc)
                return
            self._confirm_and_start(todo, estimates)
            return
        # the estimate's probe pass runs off the main thread, like the run itself
        self._set_running(True)
        start_call(jobs.estimate_jobs, todo, returned=lambda estimates: self._confirm_and_start(todo, estimates), failed=self._fail,
                   finished=self._on_estimated, guard=self._worker_guard)

    def _on_estimated(self) -> None:
        if self._gen is None:  # not started (refused, declined, cancelled or failed)
            self.state.finish()
            self._set_running(False)

    @property
    def last_estimates(self) -> list[Any]:
        """The estimates of the last run started (one per method)."""
        return self.state.estimates

    def _confirm_and_start(self, todo: list[Any], estimates: list[Any]) -> None:
        """Show the estimate, ask before a long run, then start it."""
        state = self.state
        if state.cancel_requested:
            state.finish()
            self.status.setText("Cancelled: nothing was added.")
            return
        summary = state.estimated(estimates)
        self.status.setText(summary)
        if state.needs_confirmation and not self.confirm_long_run(summary):
            state.finish()
            self.status.setText("Not started. " + summary)
            return
        state.begin_run()
        self._gen = _logic.run_and_prepare(todo)
        self.progress.setValue(0)
        self._set_running(True)
        self.status.setText(f"Running {', '.join(state.context['names'])}… {summary}")
        self._start_run(self._gen, self._on_returned, guard=self._worker_guard)

    @property
    def busy(self) -> bool:
        """True while a run or a prediction is in flight."""
        return self.is_running or self._staged > 0 or any(w.is_running for w in list(LIVE_WORKERS))

    @property
    def is_running(self) -> bool:
        """True while a run (or the estimate before it) is in flight."""
        return self._gen is not None or self.state.busy

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.compare_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setFormat("%p%")  # the value stays: a finished run reads 100 %

    def confirm_long_run(self, summary: str) -> bool:
        """Ask before a run estimated over the threshold (Yes starts it); tests replace this."""
        answer = QMessageBox.question(self, "Long run", f"{summary}\n\nStart it?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def _on_returned(self, prepared: list[Any]) -> None:
        """Show the worker's results (:class:`PreparedResult`: contrast, colour map and peak already computed)."""
        if self.state.cancel_requested:
            return
        prepared = [_logic.prepare_result(p) for p in prepared]
        results = [p.attribution for p in prepared]
        self.progress.setValue(self.progress.maximum())  # a finished run reads 100 %, not 0 % again
        source = self.state.context["source"]
        if source not in self.viewer.layers:
            self._fail(XAIError(f"The scan {source.name!r} was closed during the run.", "Open it again and press Run."))
            return
        self.last_results = list(results)
        if self.state.context.get("compare"):
            added: list[Any] = []
            steps = _logic.comparison_steps(self.viewer, source, prepared, added)
            go_to_peak = self.peak_check.isChecked()

            def finish_compare() -> None:
                self.checks_label.setText("\n".join(checks.summary_line(a) for a in results))
                self.status.setText(f"Done: {len(results)} maps side by side (napari's grid); 'Exit grid' restores the view.")

            self._in_turns(
                *steps,
                (lambda: _logic.go_to_peak(self.viewer, added[1], prepared[0].peak)) if go_to_peak else None,
                finish_compare,
            )
        else:
            replace = self._last_result_layer if self.replace_check.isChecked() else None
            layer = self._last_result_layer = _logic.show_attribution(self.viewer, prepared[0], source, replace=replace, colorbar=False)
            go_to_peak = self.peak_check.isChecked()

            def finish() -> None:
                self.checks_label.setText("\n".join(checks.format_checks(results[0].checks)))
                # the checks have their own line (checks_label): the status says what was explained
                self.status.setText("Done: " + checks.summary_line(results[0], checks=False))

            self._in_turns(
                lambda: _logic.show_colorbar(self.viewer, layer),
                (lambda: _logic.go_to_peak(self.viewer, layer, prepared[0].peak)) if go_to_peak else None,
                finish,
            )

    def _in_turns(self, *steps: Any) -> None:
        """Run each step in its own turn of the event loop, so that the window repaints between them.

        Adding a layer, building its colour bar and re-slicing at the peak
        each cost napari main-thread time; one after the other in one turn
        they froze the window for a few hundred milliseconds.
        """
        todo = [step for step in steps if step is not None]
        if _logic.threads_disabled():
            for step in todo:
                step()
            return
        self._staged += 1

        def run_next() -> None:
            try:
                if todo and alive(self.status):
                    todo.pop(0)()
            except Exception as exc:  # the layer is there; report what failed after it
                todo.clear()
                self._fail(exc)
            if todo and alive(self.status):
                QTimer.singleShot(_TURN_DELAY_MS, run_next)
            else:
                self._staged -= 1

        QTimer.singleShot(_TURN_DELAY_MS, run_next)

    def _on_aborted(self) -> None:
        self.progress.setValue(0)
        self.status.setText("Cancelled: nothing was added.")

    def close_workers(self) -> None:
        """Stop the run and the prediction and wait for their threads (done by itself when the viewer closes)."""
        self._worker_guard.shutdown()

    def _after_workers_stopped(self, workers: list[Any]) -> None:
        LIVE_WORKERS.difference_update(workers)
        self._predict_worker = None
        self._release_run()  # the worker has returned: release the engine's hooks and buffers

    # ------------------------------------------------------------------ export

    def export(self, path: str | os.PathLike, layout: str | None = None, layer: Any = None) -> Path:
        """Write the figure of ``layer`` (default: the selected result layer, else the last one).

        The region Labels layer, when one is chosen, is drawn as an outline.
        """
        layer = layer or self._export_layer()
        region_layer = self.region_combo.value
        mask = _logic.region_from_labels(region_layer) if region_layer is not None and np.asarray(region_layer.data).any() else None
        label = f"Labels layer {region_layer.name!r}" if mask is not None else "region"
        return _logic.export_figure(self.viewer, layer, path, layout or self.export_layout_combo.currentText(), mask=mask, mask_label=label)

    def _export_layer(self) -> Any:
        active = self.viewer.layers.selection.active
        if active is not None and is_result_layer(active):
            return active
        for layer in reversed(list(self.viewer.layers)):
            if is_result_layer(layer) and layer.visible:
                return layer
        raise XAIError("There is no saliency layer to export.", "Press Run first, or select a saliency layer.")

    def export_report(self, path: str | os.PathLike, layer: Any = None) -> Path:
        """Write the report of the scan of ``layer`` (default: as for :meth:`export`) with all its visible maps; returns the PDF."""
        return _logic.export_report(self.viewer, layer or self._export_layer(), path).pdf

    def _report_dialog(self) -> None:
        self._save_dialog("Write report", lambda layer: "saliency_report.pdf", "PDF (*.pdf)", "Report", self.export_report)

    def _export_dialog(self) -> None:
        self._save_dialog(
            "Export figure", lambda layer: f"{layer.name.replace(':', '').replace(' ', '_')}.png", "PNG (*.png);;PDF (*.pdf)", "Figure", self.export
        )

    def _save_dialog(self, title: str, default_name: Callable[[Any], str], filters: str, what: str, write: Callable[..., Path]) -> None:
        """Ask for a path and write the selected result there; errors go to the status line, never up to napari."""
        try:
            layer = self._export_layer()
        except XAIError as exc:
            self._fail(exc)
            return
        path, _ = QFileDialog.getSaveFileName(self, title, default_name(layer), filters)
        if not path:
            return
        try:
            written = write(path, layer=layer)
        except Exception as exc:
            self._fail(exc)
            return
        show_info(f"{what} written to {written}")
        self.status.setText(f"{what} written to {written}")
