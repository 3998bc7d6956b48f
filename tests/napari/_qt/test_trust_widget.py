"""The trust dock: evaluate maps off the main thread, table, curves, sanity marks, anatomy layer, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai._napari._layers import PROVENANCE_KEY
from napari_xai._napari._qt import TrustWidget
from napari_xai.engine import explain
from napari_xai.engine.metrics import METRICS, TABLE_KEYS
from tests.conftest import make_net

from tests.napari.conftest import wait_until_done

TRUST = "Trust metrics (XAI)"


@pytest.fixture
def two_maps(viewer, widget, scan_layer, qtbot):
    """Two maps of the oblique scan made through the main dock with a tiny 3D net."""
    net = make_net(3, seed=2)
    widget.set_model(net, "tiny 3D net")
    widget.set_checked_compare_methods(["vanilla_gradient", "guided_backprop"])
    for method in ("vanilla_gradient", "guided_backprop"):
        widget.set_method(method)
        widget.run()
        wait_until_done(qtbot, widget)
    return net


def test_trust_dock_evaluates_all_maps_in_a_worker_and_marks_sanity(viewer, two_maps, qtbot):
    _, trust = viewer.window.add_plugin_dock_widget("napari-xai", TRUST)
    assert isinstance(trust, TrustWidget)
    trust.set_model(two_maps, "tiny 3D net")
    trust.steps_spin.setValue(4)
    trust.evaluate(all_maps=True)
    assert trust.busy  # off the main thread
    qtbot.waitUntil(lambda: not trust.busy, timeout=120000)
    assert trust.table.rowCount() == 2, trust.status.text()
    names = trust.row_names()
    assert set(names) == set(trust.results)
    for name in names:
        result = trust.results[name]
        assert set(METRICS) <= set(result)
        layer = viewer.layers[name]
        assert layer.metadata[PROVENANCE_KEY]["metrics"]["deletion_auc"] == result["deletion_auc"]  # stored with the map
        row = names.index(name)
        label = trust.table.item(row, 0).text()
        assert label.startswith("✗") == (result["sanity_passed"] is False)
    # headers carry the definitions
    col = 1 + TABLE_KEYS.index("deletion_auc")
    assert "Petsiuk" in trust.table.horizontalHeaderItem(col).toolTip()
    # a real plot: two axes with the map's and the random order's curves
    axes = trust.figure.axes
    assert len(axes) == 2 and all(len(ax.lines) == 2 for ax in axes)
    assert "Adebayo" in trust.definitions_html()
    shot = trust.grab()
    assert shot.width() > 100 and shot.height() > 100


def test_trust_dock_cancel_writes_nothing(viewer, two_maps, qtbot):
    _, trust = viewer.window.add_plugin_dock_widget("napari-xai", TRUST)
    trust.set_model(two_maps, "tiny 3D net")
    trust.sanity_spin.setValue(4)
    trust.evaluate(all_maps=True)
    trust.cancel()
    qtbot.waitUntil(lambda: not trust.busy, timeout=60000)
    assert trust.table.rowCount() == 0
    assert not any("metrics" in layer.metadata.get(PROVENANCE_KEY, {}) for layer in viewer.layers)


def test_trust_dock_shows_the_anatomy_aligned_with_the_scan(viewer, scan_layer, qtbot):
    net = make_net(3, seed=2)
    from napari_xai._napari import _logic
    from napari_xai._napari._layers import scan_from_layer

    a = explain(net, scan_from_layer(scan_layer), "vanilla_gradient", target=0)
    _logic.show_attribution(viewer, a, scan_layer)
    _, trust = viewer.window.add_plugin_dock_widget("napari-xai", TRUST)
    labels = trust.show_anatomy()
    assert labels is not None and labels.data.shape == scan_layer.data.shape
    np.testing.assert_allclose(labels._data_to_world.affine_matrix, scan_layer._data_to_world.affine_matrix, atol=1e-12)
    trust.show_anatomy()
    assert [layer.name for layer in viewer.layers].count(labels.name) == 1  # updated, not duplicated


def test_trust_dock_without_a_map_says_what_to_do(viewer, scan_layer, qtbot):
    _, trust = viewer.window.add_plugin_dock_widget("napari-xai", TRUST)
    trust.evaluate()
    assert "No saliency map" in trust.status.text()


def test_every_column_definition_is_one_hover_or_one_click_away(viewer, qtbot):
    from qtpy.QtWidgets import QTextBrowser

    from napari_xai.engine.metrics import METRIC_COLUMNS

    _, trust = viewer.window.add_plugin_dock_widget("napari-xai", TRUST)
    header = [trust.table.horizontalHeaderItem(c).text() for c in range(trust.table.columnCount())]
    assert header == ["map"] + [doc.title for doc in METRIC_COLUMNS]  # the engine's one list, in its order
    for col, doc in enumerate(METRIC_COLUMNS, start=1):
        tip = trust.table.horizontalHeaderItem(col).toolTip()
        assert doc.definition in tip and doc.reference in tip, doc.key
    col = 1 + TABLE_KEYS.index("sanity_spearman")
    trust.table.horizontalHeader().sectionClicked.emit(col)  # a click on the heading opens the definitions
    browser = next(w for w in trust.findChildren(QTextBrowser) if w.objectName() == "definitions")
    text = browser.toPlainText()
    assert browser.isVisible()
    for doc in METRIC_COLUMNS:
        assert doc.title in text and doc.reference.split(".")[0] in text, doc.key
    assert text.index(METRIC_COLUMNS[0].title) < text.index(METRIC_COLUMNS[-1].title)
    assert "name='sanity_spearman'" in trust.definitions_html()
    browser.window().close()
