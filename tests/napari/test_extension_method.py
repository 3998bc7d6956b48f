"""A method registered from outside the package (tests/engine/methods/test_extension_api.py) appears in the dock and runs (issue 13 item 6)."""

from __future__ import annotations

from napari_xai._napari._layers import PROVENANCE_KEY, is_result_layer
from tests.napari.conftest import WIDGET, wait_until_done
from tests.engine.methods.test_extension_api import user_method  # noqa: F401  (fixture: registers it, then removes it)
from tests.conftest import make_net


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
