"""What a new user sees in the dock widget: binding, status, help, progress, checks, lists, colour maps, the first view."""

from __future__ import annotations

import numpy as np
import qtpy

from napari_xai.session.methods import method_help, methods_by_family
from napari_xai._napari._layers import napari_colormap
from napari_xai.engine import get_method
from tests.conftest import make_net

from .conftest import WIDGET, wait_until_done


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
