"""The saliency dock: every method from the manifest's widget, targets, regions, replace, cancel, errors,
off-main-thread work, compare, export, reports, 2D models on a slice, model folders, a user's method,
and what a first look shows (status, help, progress and checks, the compare list, the first view)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import qtpy
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QTimer

from napari_xai._napari import _logic
from napari_xai._napari._layers import PROVENANCE_KEY, is_result_layer, napari_colormap
from napari_xai._napari._qt import XAIWidget, _dock_widget
from napari_xai.engine import get_method, list_methods, napari_layer_kwargs
from napari_xai.engine.display import display_sign
from napari_xai.engine.models import LoadedModel
from napari_xai.samples.synthetic_ct import synthetic_ct
from napari_xai.session.methods import method_help, methods_by_family

from tests.conftest import make_net
from tests.engine.methods.test_extension_api import user_method  # noqa: F401  (fixture: registers it, then removes it)
from tests.napari.conftest import WIDGET, wait_until_done
from tests.real_format_fixtures import NNUNET_SPACING, write_monai_bundle, write_nnunet_results


FIRST_OF_FAMILY = [specs[0].name for _, specs in methods_by_family()]


def _results(viewer):
    return [layer for layer in viewer.layers if is_result_layer(layer)]


def test_dock_widget_through_manifest(viewer, scan_layer):
    dock, widget = viewer.window.add_plugin_dock_widget("napari-xai", WIDGET)
    assert isinstance(widget, XAIWidget)
    assert widget.image_combo.value.name == scan_layer.name
    listed = {widget.method_combo.itemData(i) for i in range(widget.method_combo.count())} - {None}
    assert listed == {spec.name for spec in list_methods()}  # every registered method, no hand-written list
    # family headers are present and not selectable
    headers = [widget.method_combo.itemText(i) for i in range(widget.method_combo.count()) if widget.method_combo.itemData(i) is None]
    assert len(headers) == len(methods_by_family())


@pytest.mark.parametrize("method", FIRST_OF_FAMILY)
def test_run_one_method_per_family(viewer, scan_layer, widget, qtbot, method):
    widget.set_model(make_net(3), "tiny 3D net")
    widget.set_method(method)
    spec = get_method(method)
    assert set(widget._param_widgets) == {p.name for p in spec.params}
    widget.run()
    wait_until_done(qtbot, widget)
    results = _results(viewer)
    assert len(results) == 1, widget.status.text()
    layer = results[0]
    assert layer.name.startswith(spec.title)
    np.testing.assert_array_equal(layer.data.shape, scan_layer.data.shape)
    # aligned: the same voxel -> world map as the source, at corners and inside
    for idx in [(0, 0, 0), (7, 9, 11), (3, 4, 5), (7, 0, 11)]:
        np.testing.assert_allclose(layer.data_to_world(idx), scan_layer.data_to_world(idx), atol=1e-9)
    np.testing.assert_allclose(layer._data_to_world.affine_matrix, scan_layer._data_to_world.affine_matrix, atol=1e-12)
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    prov = layer.metadata[PROVENANCE_KEY]
    assert prov["method"] == method and prov["model"]["name"]
    lo, hi = layer.contrast_limits
    if display_sign(layer.data, prov["sign"]) == "signed":
        assert layer.colormap.name == "bwr_transparent_zero" and lo == pytest.approx(-hi)
        alpha = layer.colormap.map(np.array([0.0, 0.5, 1.0]))[:, 3]
        assert alpha[1] == pytest.approx(0.0) and alpha[0] > 0.9 and alpha[2] > 0.9  # zero does not veil the scan
    else:
        assert layer.colormap.name == "inferno" and lo == 0 and layer.blending == "additive"
    assert "Done" in widget.status.text()
    assert layer.colorbar.visible


def test_prediction_fills_targets_and_class_choice_is_used(viewer, scan_layer, widget, qtbot):
    widget.set_model(make_net(3), "tiny 3D net")
    qtbot.waitUntil(lambda: widget.prediction is not None, timeout=20000)
    texts = [widget.target_combo.itemText(i) for i in range(widget.target_combo.count())]
    assert texts[0].startswith("predicted: class") and "p = " in texts[0]
    assert len(texts) == 1 + 3
    other = (widget.prediction.class_index + 1) % 3
    widget.target_combo.setCurrentIndex(1 + other)
    widget.set_method("vanilla_gradient")
    widget.run()
    wait_until_done(qtbot, widget)
    (layer,) = _results(viewer)
    assert layer.metadata[PROVENANCE_KEY]["target"]["class_index"] == other


def test_replace_previous_result(viewer, scan_layer, widget, qtbot):
    widget.set_model(make_net(3))
    widget.set_method("vanilla_gradient")
    widget.run()
    wait_until_done(qtbot, widget)
    widget.replace_check.setChecked(True)
    widget.set_method("integrated_gradients")
    widget.set_param("steps", 8)
    widget.run()
    wait_until_done(qtbot, widget)
    results = _results(viewer)
    assert len(results) == 1
    assert results[0].metadata[PROVENANCE_KEY]["method"] == "integrated_gradients"
    assert results[0].metadata[PROVENANCE_KEY]["params"]["steps"] == 8
    widget.replace_check.setChecked(False)
    widget.run()
    wait_until_done(qtbot, widget)
    assert len(_results(viewer)) == 2


def test_segmentation_region_from_labels(viewer, scan_layer, widget, qtbot):
    region = np.zeros(scan_layer.data.shape, dtype=np.uint8)
    region[2:5, 3:7, 4:9] = 1
    viewer.add_labels(region, name="roi", scale=scan_layer.scale, translate=scan_layer.translate, rotate=scan_layer.rotate)
    widget.set_model(make_net(3, segmentation=True), "tiny seg net")
    widget.region_combo.value = widget.region_combo.choices[-1]
    assert widget.region_combo.value.name == "roi"
    widget.set_method("vanilla_gradient")
    widget.run()
    wait_until_done(qtbot, widget)
    (layer,) = _results(viewer)
    target = layer.metadata[PROVENANCE_KEY]["target"]
    assert target["task"] == "segmentation" and target["region_source"] == "given"
    assert "(region)" in layer.name


def _slow_setup(widget):
    """A run of several seconds on the tiny net: occlusion of every single voxel."""
    widget.set_model(make_net(3))
    widget.set_method("occlusion")
    widget.set_param("window", "1")
    widget.set_param("stride", "1")


def test_cancel_during_long_run_leaves_no_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32), name="big")
    _, widget = viewer.window.add_plugin_dock_widget("napari-xai", WIDGET)
    _slow_setup(widget)
    names_before = [layer.name for layer in viewer.layers]
    widget.run()
    assert widget.is_running
    qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=30000)
    t0 = time.perf_counter()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=5000)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"cancel took {elapsed:.2f} s"
    qtbot.wait(200)  # any late 'returned' would land now
    assert [layer.name for layer in viewer.layers] == names_before
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    wait_until_done(qtbot, widget)


def test_error_becomes_notification_and_changes_nothing(viewer, scan_layer, widget, qtbot):
    widget.set_model(make_net(2), "2D net")  # a 2D model on a 3D scan: the engine refuses
    widget.set_method("vanilla_gradient")
    wait_until_done(qtbot, widget)  # the prediction's own error first (the run's estimate refuses at once)
    before = [(layer.name, layer.data.copy()) for layer in viewer.layers]
    n0 = len(notification_manager.records)
    widget.run()
    wait_until_done(qtbot, widget)
    new = notification_manager.records[n0:]
    assert new, "no notification was shown"
    assert any("model failed on an input of shape (1, 1, 8, 10, 12)" in str(n.message) for n in new), [str(n.message) for n in new]
    assert "Error" in widget.status.text() and "Fix:" in widget.status.text()
    after = [(layer.name, layer.data) for layer in viewer.layers]
    assert [n for n, _ in after] == [n for n, _ in before]
    for (_, a), (_, b) in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert widget.run_button.isEnabled()


def test_error_before_the_run_empty_region(viewer, scan_layer, widget, qtbot):
    viewer.add_labels(np.zeros(scan_layer.data.shape, dtype=np.uint8), name="empty roi")
    widget.region_combo.value = widget.region_combo.choices[-1]
    widget.set_model(make_net(3, segmentation=True))
    n0 = len(notification_manager.records)
    n_layers = len(viewer.layers)
    widget.run()
    assert not widget.is_running
    assert any("no painted voxel" in str(n.message) for n in notification_manager.records[n0:])
    assert len(viewer.layers) == n_layers


def test_the_work_runs_off_the_main_thread_while_the_event_loop_turns(make_napari_viewer, qtbot, monkeypatch):
    """The engine's steps run in a worker thread, and the main thread keeps serving events meanwhile.

    The first step waits for an event that only a main-thread timer sets: the
    run can finish only if the event loop turns while the engine works (a
    main-thread run would wait out the timeout and fail). How long the loop
    stalls is measured by ``benchmarks/bench_event_loop.py``, not here.
    """
    import threading

    main = threading.get_ident()
    engine_threads: list[int] = []
    loop_turned = threading.Event()
    from napari_xai.session import jobs as session_jobs

    real_explain_iter = session_jobs.explain_iter

    def watched(*args, **kwargs):
        gen = real_explain_iter(*args, **kwargs)
        engine_threads.append(threading.get_ident())
        assert loop_turned.wait(30), "the main thread's timer never fired while the engine ran"
        result = yield from gen
        engine_threads.append(threading.get_ident())
        return result

    monkeypatch.setattr(session_jobs, "explain_iter", watched)
    # the result's contrast limits (a sort of every voxel) are computed in the worker too
    from napari_xai._napari import _layers

    display_threads: list[int] = []
    real_display_settings = _layers.display_settings

    def watched_display(*args, **kwargs):
        display_threads.append(threading.get_ident())
        return real_display_settings(*args, **kwargs)

    monkeypatch.setattr(_layers, "display_settings", watched_display)
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(12, 12, 12)).astype(np.float32), name="vol")
    _, widget = viewer.window.add_plugin_dock_widget("napari-xai", WIDGET)
    widget.set_model(make_net(3))
    widget.set_method("integrated_gradients")
    widget.set_param("steps", 8)
    QTimer.singleShot(50, loop_turned.set)
    widget.run()
    wait_until_done(qtbot, widget)
    assert len(_results(viewer)) == 1, widget.status.text()
    assert engine_threads and all(t != main for t in engine_threads), "the engine ran on the main thread"
    assert display_threads and all(t != main for t in display_threads), "the display settings were computed on the main thread"
    assert widget.progress.value() == widget.progress.maximum()  # a finished run reads 100 %


def test_no_threads_switch_runs_on_main_thread(viewer, scan_layer, widget, monkeypatch):
    monkeypatch.setenv(_logic.NO_THREADS_ENV, "1")
    widget.set_model(make_net(3))
    widget.set_method("vanilla_gradient")
    widget.run()  # returns when done: no worker, no waiting
    assert widget.worker is None and not widget.is_running
    assert len(_results(viewer)) == 1


def test_compare_side_by_side_with_checks(viewer, scan_layer, widget, qtbot):
    widget.set_model(make_net(3))
    widget.set_checked_compare_methods(["vanilla_gradient", "integrated_gradients"])
    widget.run_compare()
    wait_until_done(qtbot, widget)
    results = _results(viewer)
    assert [r.metadata[PROVENANCE_KEY]["method"] for r in results] == ["vanilla_gradient", "integrated_gradients"]
    grid = _logic.viewer_grid(viewer)
    assert grid.enabled and grid.stride == -2
    visible = [layer for layer in viewer.layers if layer.visible]
    assert len(visible) == 4 and not scan_layer.visible  # two (scan, map) pairs, nothing else
    assert grid.actual_shape(list(viewer.layers)) in ((1, 2), (2, 1))
    # contrast per layer
    assert results[0].contrast_limits != results[1].contrast_limits
    assert "completeness" in widget.checks_label.text()
    _logic.end_comparison(viewer)
    assert not grid.enabled and scan_layer.visible


def test_export_figure(viewer, scan_layer, widget, qtbot, tmp_path):
    import matplotlib.image as mpimg

    widget.set_model(make_net(3))
    widget.set_method("vanilla_gradient")
    widget.run()
    wait_until_done(qtbot, widget)
    for layout in _logic.EXPORT_LAYOUTS:
        path = widget.export(tmp_path / f"figure_{layout.replace(' ', '_')}.png", layout)
        assert path.is_file() and path.stat().st_size > 10_000, layout
        img = mpimg.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 400, layout
        assert img[..., :3].std() > 0.05, layout  # not a blank figure


def test_export_without_result_is_an_error(viewer, scan_layer, widget, tmp_path):
    with pytest.raises(Exception, match="no saliency layer"):
        widget.export(tmp_path / "x.png")


def test_viewer_goes_to_the_maps_peak(viewer, scan_layer, widget, qtbot):
    widget.set_model(make_net(3))
    widget.set_method("vanilla_gradient")
    widget.run()
    wait_until_done(qtbot, widget)
    (layer,) = _results(viewer)
    peak = np.unravel_index(int(np.argmax(layer.data)), layer.data.shape)
    # the sliders snap to the world grid: the shown point lies within a voxel of the peak
    shown = np.asarray(layer.world_to_data(viewer.dims.point[-3:]))
    assert np.abs(shown - np.asarray(peak)).max() <= 1.0, (shown, peak)
    assert widget.peak_check.isChecked()


def test_2d_model_on_a_volume_explains_the_current_slice(viewer, scan_layer, widget, qtbot):
    from napari_xai.engine.models.loading import as_loaded_model

    model2d = as_loaded_model(make_net(2), spec={"spatial_dims": 2, "labels": ["a", "b", "c"]})
    k = 5
    viewer.dims.set_point(0, scan_layer.data_to_world((k, 4, 6))[0])
    assert _logic.current_slice(viewer, scan_layer) == k
    widget.set_model(model2d, "2D net")
    widget.set_method("vanilla_gradient")
    widget.run()
    wait_until_done(qtbot, widget)
    (layer,) = _results(viewer)
    nonzero = np.flatnonzero(np.abs(layer.data).reshape(layer.data.shape[0], -1).sum(axis=1))
    assert nonzero.tolist() == [k]
    assert layer.metadata[PROVENANCE_KEY]["target"]["slice"] == k
    np.testing.assert_allclose(layer._data_to_world.affine_matrix, scan_layer._data_to_world.affine_matrix)


def test_estimate_is_shown_and_a_long_run_asks_first(viewer, scan_layer, widget, qtbot, monkeypatch):
    widget.set_model(make_net(3), "tiny 3D net")
    widget.set_method("occlusion")
    monkeypatch.setenv("NAPARI_XAI_CONFIRM_SECONDS", "0")  # every run counts as long
    asked = []
    widget.confirm_long_run = lambda summary: asked.append(summary) or False
    widget.run()
    wait_until_done(qtbot, widget)  # the estimate runs in a worker; the question comes when it returns
    assert len(asked) == 1 and "forward" in asked[0] and "peak memory" in asked[0]
    assert not widget.is_running and not _results(viewer)
    assert widget.run_button.isEnabled()
    assert widget.status.text().startswith("Not started")
    assert widget.last_estimates[0].method == "occlusion"
    widget.confirm_long_run = lambda summary: asked.append(summary) or True
    formats = []
    original = widget._on_progress
    widget._on_progress = lambda event: (original(event), formats.append(widget.progress.format()))
    widget.run()
    wait_until_done(qtbot, widget)
    assert len(asked) == 2 and len(_results(viewer)) == 1
    assert any("left" in f for f in formats), formats  # the progress bar shows the time left


def test_report_button_writes_the_scans_maps_into_one_pdf(viewer, scan_layer, widget, qtbot, tmp_path, monkeypatch):
    assert widget.report_button.parent() is widget.export_button.parent()
    widget.set_model(make_net(3))
    for method in ("vanilla_gradient", "integrated_gradients"):
        widget.set_method(method)
        widget.run()
        wait_until_done(qtbot, widget)
    pdf = widget.export_report(tmp_path / "report.pdf")
    pages = sorted(tmp_path.glob("report_page*.png"))
    assert pdf.stat().st_size > 20_000 and len(pages) >= 4  # title, two maps, appendix
    import matplotlib.image as mpimg

    assert mpimg.imread(pages[1])[..., :3].std() > 0.05
    widget.grab().save(str(tmp_path / "widget.png"))
    # the button's dialog path: the chosen file is written and named in the status line
    from napari_xai._napari._qt import _dock_widget

    monkeypatch.setattr(_dock_widget.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(tmp_path / "chosen.pdf"), "")))
    widget.report_button.click()
    assert (tmp_path / "chosen.pdf").is_file() and "chosen.pdf" in widget.status.text()


def test_napari_runs_on_pyqt6():
    assert qtpy.API_NAME == "PyQt6"


def test_status_says_ready_when_image_and_model_are_chosen(widget, qtbot):
    wait_until_done(qtbot, widget)
    text = widget.status.text()
    assert text.startswith("Ready: press Run") and "oblique scan" in text, text
    assert "Choose an image" not in text


def test_method_help_cites_the_paper_in_the_theme_colours(widget):
    widget.set_method("integrated_gradients")
    text = widget.method_help.text()
    assert "Sundararajan M, Taly A, Yan Q. Axiomatic Attribution for Deep Networks. ICML 2017." in text
    assert "review ref" not in text and "[" not in text
    assert widget.method_help.styleSheet() == ""  # napari's theme colour and size
    for spec in methods_by_family():
        for s in spec[1]:
            assert "review ref" not in method_help(s)


def test_progress_and_checks_after_a_run(widget, qtbot):
    widget.set_model(make_net(3))
    widget.set_method("integrated_gradients")
    widget.set_param("steps", 8)
    widget.run()
    wait_until_done(qtbot, widget)
    assert widget.progress.value() == widget.progress.maximum()
    status, checks = widget.status.text(), widget.checks_label.text()
    assert status.startswith("Done") and "completeness" not in status
    assert checks.count("completeness") == 1
    assert "raw score" in status


def test_compare_list_shows_whole_rows(widget):
    lst = widget.compare_list
    row = lst.sizeHintForRow(0)
    inner = lst.height() - 2 * lst.frameWidth()
    assert row > 0 and inner % row == 0 and inner // row >= 6


def test_diverging_colormap_name_fits_the_layer_controls():
    assert len(napari_colormap("bwr").name) > 0
    assert len(str(napari_colormap("bwr")._display_name)) <= 13


def test_first_view_fits_the_scan_into_the_canvas(make_napari_viewer, qtbot):
    from napari_xai.__main__ import _fit_when_shown

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("napari-xai", "sample_brain")
    viewer.window.add_plugin_dock_widget("napari-xai", WIDGET)
    _fit_when_shown(viewer)
    layer = viewer.layers[0]
    extent = np.asarray(layer.extent.world[1] - layer.extent.world[0])[-2:]  # (y, x) in mm
    on_screen = extent * viewer.camera.zoom
    canvas = np.asarray(viewer.canvas.size)  # (height, width)
    assert (on_screen <= canvas).all(), f"the scan ({on_screen} px) does not fit the canvas ({canvas} px)"
    assert (on_screen >= 0.8 * canvas).any()  # and fills it along one side
    assert get_method("grad_cam")  # the registry is intact after the viewer work


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


def test_a_user_registered_method_is_in_the_dock_and_runs(viewer, scan_layer, qtbot, user_method):  # noqa: F811
    _, widget = viewer.window.add_plugin_dock_widget("napari-xai", WIDGET)
    try:
        names = [widget.method_combo.itemData(i) for i in range(widget.method_combo.count())]
        assert user_method.name in names
        widget.set_model(make_net(3))
        widget.set_method(user_method.name)
        assert set(widget._param_widgets) == {"power"}  # its control, from its ParamSpec
        widget.set_param("power", 4)
        widget.run()
        wait_until_done(qtbot, widget)
        (layer,) = [layer for layer in viewer.layers if is_result_layer(layer)]
        prov = layer.metadata[PROVENANCE_KEY]
        assert prov["method"] == user_method.name and prov["params"] == {"power": 4}
        assert (layer.data >= 0).all() and layer.data.any()
    finally:
        qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
