"""The trust dock: how far each saliency map can be trusted, beside the layers.

A table of the engine's metrics (faithfulness, the model-randomisation
sanity check, completeness, localisation, the anatomy / shortcut check) for
the selected map or every map of its scan, the deletion and insertion curves
of the selected row drawn in the viewer's theme (matplotlib's Qt canvas),
and the anatomy mask as a layer on request. Definitions are the column
headers' tooltips and one click away under "Definitions". Thin by design:
the metrics are :mod:`napari_xai.engine.metrics`, the layer handling
:mod:`napari_xai._napari._trust`; work runs in a napari thread worker with
progress and cancel (``NAPARI_XAI_NO_THREADS=1`` drives it on the main thread).
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Labels
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from napari_xai.engine import XAIError
from napari_xai.engine.metrics import METRICS, TABLE_KEYS, column_doc, definitions_html, format_cell, row_warnings, table_row
from napari_xai.engine.metrics.evaluation import PARAMS

from napari_xai.session.models import sample_models

from .. import _logic, _trust
from ._docks import RunDock, alive, connect_viewer, select_model

#: Model menu entry: the model named in the map's provenance.
_FROM_MAP = "the map's model (from its provenance)"
#: Rows of the table that fail a check are tinted (sanity: red; shortcut: amber).
_FAIL_COLOUR = QColor(153, 18, 31, 110)
_WARN_COLOUR = QColor(227, 182, 23, 90)


class TrustWidget(RunDock, QWidget):
    """Trust metrics for the saliency maps in the viewer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer the widget is docked in.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:  # noqa: F821
        super().__init__(napari_viewer)
        self._job: _trust.TrustJob | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self.ranking: list[str] = []

        outer = QVBoxLayout(self)
        form = QFormLayout()
        outer.addLayout(form)
        self.map_combo = ComboBox(choices=self._map_choices, nullable=True)
        self.map_combo.tooltip = "The saliency map to evaluate (a layer made by the 'Saliency maps (XAI)' dock)."
        form.addRow("map", self.map_combo.native)
        self.model_combo = QComboBox()
        self.model_combo.addItem(_FROM_MAP, None)
        for name, path in sample_models().items():
            self.model_combo.addItem(f"sample: {name}", str(path))
        self.model_combo.setToolTip("The model the map explains; the metrics run it on perturbed and randomised copies (the model itself is never changed).")
        form.addRow("model", self.model_combo)
        self.mask_combo = ComboBox(choices=self._labels_choices, nullable=True)
        self.mask_combo.tooltip = "Optional: where the evidence should be (a lesion); gives mass in mask, pointing game, relevance rank."
        form.addRow("mask", self.mask_combo.native)
        self.anatomy_combo = ComboBox(choices=self._labels_choices, nullable=True)
        self.anatomy_combo.tooltip = "The body; none: derived from the scan (threshold, largest component, holes filled)."
        form.addRow("anatomy", self.anatomy_combo.native)

        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(2, 200)
        self.steps_spin.setValue(_param("steps").default)
        self.steps_spin.setToolTip(_param("steps").help)
        self.removal_combo = QComboBox()
        self.removal_combo.addItems(list(_param("removal").choices))
        self.removal_combo.setToolTip(_param("removal").help)
        settings_row = QHBoxLayout()
        settings_row.addWidget(QLabel("steps"))
        settings_row.addWidget(self.steps_spin)
        settings_row.addWidget(QLabel("removal"))
        settings_row.addWidget(self.removal_combo)
        form.addRow("curves", settings_row)
        self.sanity_check = QCheckBox("randomisation check")
        self.sanity_check.setChecked(True)
        self.sanity_check.setToolTip(METRICS["sanity_similarity"].tooltip())
        self.sanity_spin = QSpinBox()
        self.sanity_spin.setRange(1, 16)
        self.sanity_spin.setValue(1)
        self.sanity_spin.setToolTip(_param("sanity_steps").help + " Each reruns the method once.")
        sanity_row = QHBoxLayout()
        sanity_row.addWidget(self.sanity_check)
        sanity_row.addWidget(QLabel("checkpoints"))
        sanity_row.addWidget(self.sanity_spin)
        form.addRow("sanity", sanity_row)

        buttons = QHBoxLayout()
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Evaluate the selected map.")
        self.evaluate_all_button = QPushButton("Evaluate all maps")
        self.evaluate_all_button.setToolTip("Evaluate every map of the selected map's scan (one forward pass, anatomy and random curves shared) and rank them.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        for b in (self.evaluate_button, self.evaluate_all_button, self.cancel_button):
            buttons.addWidget(b)
        outer.addLayout(buttons)
        extra = QHBoxLayout()
        self.anatomy_button = QPushButton("Show anatomy")
        self.anatomy_button.setToolTip("Add the anatomy mask the metrics use as a Labels layer on the scan.")
        self.definitions_button = QPushButton("Definitions")
        self.definitions_button.setToolTip("What every number means, with its published reference.")
        extra.addWidget(self.anatomy_button)
        extra.addWidget(self.definitions_button)
        outer.addLayout(extra)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        outer.addWidget(self.progress)
        self.status = QLabel("Pick a saliency map, then press Evaluate.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        outer.addWidget(self.status)

        self.table = QTableWidget(0, len(TABLE_KEYS) + 1)
        self.table.setHorizontalHeaderLabels(["map"] + [column_doc(k).title for k in TABLE_KEYS])
        for col, key in enumerate(TABLE_KEYS, start=1):
            self.table.horizontalHeaderItem(col).setToolTip(column_doc(key).tooltip() + "\n(Click the heading for every definition.)")
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.setMinimumHeight(120)
        outer.addWidget(self.table)
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        outer.addWidget(self.warnings)

        self.figure = Figure(figsize=(4.2, 2.4), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        outer.addWidget(self.canvas)
        self._plot(None)

        self._viewer_connections = connect_viewer(self, [
            (self.viewer.layers.events.inserted, self._reset_choices),
            (self.viewer.layers.events.removed, self._reset_choices),
            (self.viewer.events.theme, self._on_theme),
        ])
        self.evaluate_button.clicked.connect(lambda: self.evaluate(all_maps=False))
        self.evaluate_all_button.clicked.connect(lambda: self.evaluate(all_maps=True))
        self.cancel_button.clicked.connect(self.cancel)
        self.anatomy_button.clicked.connect(self.show_anatomy)
        self.definitions_button.clicked.connect(self.show_definitions)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.table.horizontalHeader().sectionClicked.connect(self._on_header_clicked)
        self._reset_choices()

    # ------------------------------------------------------------------ choices

    def _map_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in _trust.map_layers(self.viewer)]

    def _labels_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Labels) and not layer.metadata.get(_trust.ANATOMY_KEY)]

    def _reset_choices(self, *_: Any) -> None:
        if not alive(self.status):
            return
        self.map_combo.reset_choices()
        self.mask_combo.reset_choices()
        self.anatomy_combo.reset_choices()
        if self.map_combo.value is None:
            choices = self._map_choices()
            if choices:
                self.map_combo.value = choices[-1][1]

    def set_model(self, model: Any, label: str | None = None) -> None:
        """Add a model (path, ``nn.Module`` or ``LoadedModel``) to the menu and select it."""
        select_model(self.model_combo, model, label)

    def settings(self) -> dict[str, Any]:
        """The evaluation settings the controls give."""
        out: dict[str, Any] = {"steps": self.steps_spin.value(), "removal": self.removal_combo.currentText(), "sanity_steps": self.sanity_spin.value()}
        if not self.sanity_check.isChecked():
            out["metrics"] = [g for g in ("localisation", "anatomy", "completeness", "faithfulness")]
        return out

    # ------------------------------------------------------------------ runs

    @property
    def busy(self) -> bool:
        """True while an evaluation is in flight."""
        return self._gen is not None

    def evaluate(self, all_maps: bool = False) -> None:
        """Evaluate the selected map (or every map of its scan) off the main thread."""
        if self.busy:
            return
        try:
            layer = self.map_combo.value
            layers = _trust.sibling_maps(self.viewer, layer) if (all_maps and layer is not None) else ([layer] if layer is not None else [])
            job = _trust.make_job(self.viewer, layers, self.model_combo.currentData(), self.mask_combo.value, self.anatomy_combo.value, self.settings())
        except Exception as exc:
            self._fail(exc)
            return
        self._job = job
        self.state.begin_estimate()
        self.state.begin_run()  # evaluations have no estimate step
        self._gen = _trust.run_job(job)
        self._set_running(True)
        self.status.setText(f"Evaluating {', '.join(job.maps)}…")
        self._start_run(self._gen, self._on_returned)

    def _set_running(self, running: bool) -> None:
        self.evaluate_button.setEnabled(not running)
        self.evaluate_all_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setValue(0)

    def _on_returned(self, value: Any) -> None:
        if self.state.cancel_requested or not alive(self.status):
            return
        results, ranking = value
        _trust.store_results(self._job, results)
        self.results.update(results)
        self.ranking = ranking
        earlier = [name for name in self.results if name not in ranking]  # maps evaluated before (another model, say) stay listed below
        self._fill_table(self.results, ranking + earlier)
        self.status.setText("Done: " + "; ".join(f"{name}: {_verdict(results[name])}" for name in ranking))

    def _on_aborted(self) -> None:
        if alive(self.status):
            self.status.setText("Cancelled: nothing was written.")

    # ------------------------------------------------------------------ table and plot

    def _fill_table(self, results: dict[str, dict[str, Any]], ranking: list[str]) -> None:
        self.table.setRowCount(len(ranking))
        for r, name in enumerate(ranking):
            row = table_row(results[name].get("method"), results[name])
            warnings = row_warnings(row)
            label = QTableWidgetItem(("✗ " if row["sanity_passed"] is False else "⚠ " if row["shortcut_flag"] else "") + name)
            label.setData(Qt.UserRole, name)
            label.setToolTip("\n".join(warnings) or "no warnings")
            self.table.setItem(r, 0, label)
            for c, key in enumerate(TABLE_KEYS, start=1):
                item = QTableWidgetItem(format_cell(row[key]))
                item.setToolTip(column_doc(key).tooltip())
                self.table.setItem(r, c, item)
            colour = _FAIL_COLOUR if row["sanity_passed"] is False else _WARN_COLOUR if row["shortcut_flag"] else None
            if colour is not None:
                for c in range(self.table.columnCount()):
                    self.table.item(r, c).setBackground(QBrush(colour))
        self.table.resizeColumnsToContents()
        if ranking:
            self.table.selectRow(0)
            self._on_row_selected()  # the selection may not have changed: redraw the curves anyway

    def row_names(self) -> list[str]:
        """Map names in table order."""
        return [self.table.item(r, 0).data(Qt.UserRole) for r in range(self.table.rowCount())]

    def _on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        name = self.table.item(rows[0].row(), 0).data(Qt.UserRole)
        result = self.results.get(name)
        self._plot(name, result)
        if result is not None:
            warnings = row_warnings(table_row(result.get("method"), result))
            self.warnings.setText("\n".join(f"⚠ {w}" for w in warnings))

    def _on_theme(self, *_: Any) -> None:
        if alive(self.canvas):
            rows = self.table.selectionModel().selectedRows()
            name = self.table.item(rows[0].row(), 0).data(Qt.UserRole) if rows else None
            self._plot(name, self.results.get(name) if name else None)

    def _plot(self, name: str | None, result: dict[str, Any] | None = None) -> None:
        """Deletion and insertion curves of one map against the random order, in the viewer's theme."""
        from napari.utils.theme import get_theme

        theme = get_theme(self.viewer.theme)
        bg, fg = theme.background.as_hex(), theme.text.as_hex()
        self.figure.clear()
        self.figure.set_facecolor(bg)
        axes = self.figure.subplots(1, 2, sharey=True)
        for ax, kind in zip(axes, ("deletion", "insertion")):
            ax.set_facecolor(bg)
            for spine in ax.spines.values():
                spine.set_color(fg)
            ax.tick_params(colors=fg, labelsize=7)
            ax.set_xlabel(f"fraction {'removed' if kind == 'deletion' else 'inserted'}", color=fg, fontsize=8)
            curve = (result or {}).get(f"{kind}_curve")
            if curve is None:
                ax.set_title(f"{kind}: not computed", color=fg, fontsize=8)
                continue
            rnd = result.get(f"random_{kind}_curve")
            ax.plot(curve["fraction"], curve["score"], color="#ff7f0e", lw=1.6, label=f"map (AUC {result[f'{kind}_auc']:.3g})")
            if rnd is not None:
                ax.plot(rnd["fraction"], rnd["score"], color=fg, lw=1.0, ls="--", label=f"random (AUC {result[f'random_{kind}_auc']:.3g})")
            ax.set_title(kind, color=fg, fontsize=8)
            legend = ax.legend(fontsize=6, facecolor=bg, edgecolor=fg, labelcolor=fg)
            legend.get_frame().set_alpha(0.8)
        axes[0].set_ylabel(((result or {}).get("score_kind") or "score"), color=fg, fontsize=8)
        if name:
            self.figure.suptitle(name, color=fg, fontsize=8)
        self.figure.tight_layout()
        self.canvas.draw_idle()

    # ------------------------------------------------------------------ anatomy and definitions

    def show_anatomy(self) -> Any:
        """Add the anatomy mask (the chosen Labels layer's, else derived) of the selected map's scan as a layer."""
        layer = self.map_combo.value
        try:
            if layer is None:
                raise XAIError("No saliency map is selected.", "Pick a map: its scan's anatomy is shown.")
            source = _logic.find_source_layer(self.viewer, layer)
            given = self.anatomy_combo.value
            return _trust.show_anatomy(self.viewer, source, None if given is None else given.data > 0)
        except Exception as exc:
            self._fail(exc)
            return None

    def definitions_html(self) -> str:
        """Every metric's definition and reference, as HTML (the engine's one list: the table's columns first)."""
        return definitions_html()

    def show_definitions(self, key: str | None = None) -> QDialog:
        """A window with every definition (non-modal), scrolled to ``key``'s when given."""
        dialog = QDialog(self)
        dialog.setWindowTitle("Trust metrics: definitions")
        layout = QVBoxLayout(dialog)
        browser = QTextBrowser()
        browser.setObjectName("definitions")
        browser.setHtml(self.definitions_html())
        layout.addWidget(browser)
        dialog.resize(640, 520)
        dialog.show()
        if key:
            browser.scrollToAnchor(key)
        return dialog

    def _on_header_clicked(self, section: int) -> None:
        """A click on a metric's column heading opens its definition."""
        if 1 <= section <= len(TABLE_KEYS):
            self.show_definitions(TABLE_KEYS[section - 1])


def _param(name: str) -> Any:
    return next(p for p in PARAMS if p.name == name)


def _verdict(result: dict[str, Any]) -> str:
    parts = []
    if result.get("sanity_passed") is not None:
        parts.append("passes the sanity check" if result["sanity_passed"] else "FAILS the sanity check")
    if result.get("shortcut_flag"):
        parts.append("SHORTCUT flagged")
    if result.get("outside_anatomy_share") is not None:
        parts.append(f"{result['outside_anatomy_share']:.0%} outside the anatomy")
    return ", ".join(parts) or "evaluated"
