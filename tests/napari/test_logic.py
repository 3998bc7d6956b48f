"""The plugin's napari logic: parameter forms as magicgui widgets, result layers from what the worker prepared, the compare grid (the host-neutral part is tested in tests/session)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai._napari import _layers, _logic
from napari_xai._napari._layers import napari_colormap, prepare_result
from napari_xai.engine import ParamSpec, list_methods
from napari_xai.session.controls import control_for

from tests.napari.conftest import signed_copy


def test_every_method_gets_a_form_from_its_spec(qtbot):
    """One rule builds every method's controls, and their defaults validate in the engine."""
    from magicgui.widgets import create_widget

    assert list_methods(), "no methods registered"
    for spec in list_methods():
        values = {}
        for p in spec.params:
            w = create_widget(**_logic.param_widget_options(p))
            assert w.tooltip, (spec.name, p.name)
            values[p.name] = control_for(p).parse(w.value)
        assert spec.validate_params(values) == spec.validate_params({}), spec.name


def test_magicgui_options_render_the_shared_control():
    q = ParamSpec("sigma", float, 0.15, "s", min=0.0, max=1.0)
    opts = _logic.param_widget_options(q)
    assert opts["widget_type"] == "FloatSpinBox" and opts["options"]["max"] == 1.0 and opts["options"]["step"] == control_for(q).step
    c = ParamSpec("baseline", str, "zeros", "b", choices=("zeros", "mean"))
    assert _logic.param_widget_options(c)["options"]["choices"] == ["zeros", "mean"]
    w = ParamSpec("window", int, 8, "w", min=1, max=64, per_axis=True)
    assert _logic.param_widget_options(w)["widget_type"] == "LineEdit" and "z, y, x" in _logic.param_widget_options(w)["options"]["tooltip"]


def test_layer_gets_the_prepared_contrast_without_recomputing_it(viewer, scan_layer, attribution, monkeypatch):
    prepared = prepare_result(signed_copy(attribution))

    def no_recompute(*_args, **_kwargs):
        raise AssertionError("the contrast limits were computed again on the main thread")

    monkeypatch.setattr(_layers, "display_settings", no_recompute)
    layer = _logic.show_attribution(viewer, prepared, scan_layer)
    assert tuple(layer.contrast_limits) == pytest.approx(prepared.display.contrast_limits)
    assert layer.colormap.name == napari_colormap(prepared.display.colormap).name
    assert layer.data is prepared.attribution.values  # no copy
    assert _logic.go_to_peak(viewer, layer, prepared.peak) == prepared.peak


def test_replacing_a_result_sets_only_what_changed_and_slices_once(viewer, scan_layer, attribution):
    first = prepare_result(signed_copy(attribution, 1))
    layer = _logic.show_attribution(viewer, first, scan_layer)
    emitted: dict[str, int] = {}
    for name in ("scale", "translate", "rotate", "shear", "affine", "units", "colormap", "opacity", "blending", "set_data", "contrast_limits"):
        getattr(layer.events, name).connect(lambda _e, name=name: emitted.__setitem__(name, emitted.get(name, 0) + 1))
    second = prepare_result(signed_copy(attribution, 2))
    assert second.display.colormap == first.display.colormap and second.display.contrast_limits != first.display.contrast_limits
    same = _logic.show_attribution(viewer, second, scan_layer, replace=layer)
    assert same is layer and layer.data is second.attribution.values
    assert tuple(layer.contrast_limits) == pytest.approx(second.display.contrast_limits)
    assert emitted.get("set_data") == 1  # one re-slice, for the new data
    assert not {"scale", "translate", "rotate", "shear", "affine", "units", "colormap", "opacity", "blending"} & set(emitted), emitted
    # a changed transform is set
    moved = scan_layer.translate + 1.0
    scan_layer.translate = moved
    _logic.show_attribution(viewer, second, scan_layer, replace=layer)
    np.testing.assert_allclose(layer.translate, moved)


def test_comparison_steps_add_nothing_until_run_and_match_show_comparison(viewer, scan_layer, attribution):
    maps = [prepare_result(signed_copy(attribution, k)) for k in range(2)]
    n_layers = len(viewer.layers)
    added: list = []
    steps = _logic.comparison_steps(viewer, scan_layer, maps, added)
    assert len(viewer.layers) == n_layers and not added
    assert len(steps) == 4 + 3 * len(maps)  # visibility, two layers per map, hiding, grid, view, a colour bar per map
    for step in steps:
        step()
    assert len(added) == 4 and len(viewer.layers) == n_layers + 4
    assert [tuple(layer.contrast_limits) for layer in added[1::2]] == [pytest.approx(m.display.contrast_limits) for m in maps]
    assert all(layer.colorbar.visible for layer in added[1::2])
    assert _logic.viewer_grid(viewer).enabled and not scan_layer.visible
