"""Adding a result layer: what the worker prepares (contrast, colour map, peak) is used as is on the main thread."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_xai._napari import _layers, _logic
from napari_xai._napari._layers import PreparedResult, napari_colormap, prepare_result, scan_from_layer
from napari_xai.engine import explain
from napari_xai.engine.display import display_settings
from tests.conftest import make_net


@pytest.fixture
def attribution(scan_layer):
    return explain(make_net(3), scan_from_layer(scan_layer), "vanilla_gradient")


def _signed(attribution, seed=0):
    values = np.random.default_rng(seed).normal(size=attribution.values.shape).astype(np.float32)
    return dataclasses.replace(attribution, values=values, sign="signed")


def test_prepared_result_carries_display_and_peak(attribution):
    prepared = prepare_result(attribution)
    assert isinstance(prepared, PreparedResult) and prepared.attribution is attribution
    assert prepared.display == display_settings(attribution.values, attribution.sign)
    assert prepared.peak == tuple(np.unravel_index(np.argmax(attribution.values), attribution.values.shape))
    assert prepare_result(prepared) is prepared  # never prepared twice
    # a signed map peaks at its largest positive value, an all-negative one at its largest |value|
    signed = _signed(attribution)
    values = signed.values.copy()
    values.flat[5] = -100.0
    values.flat[7] = 50.0
    assert _layers.peak_index(values, "signed") == np.unravel_index(7, values.shape)
    assert _layers.peak_index(-np.abs(values), "signed") == np.unravel_index(5, values.shape)


def test_layer_gets_the_prepared_contrast_without_recomputing_it(viewer, scan_layer, attribution, monkeypatch):
    prepared = prepare_result(_signed(attribution))

    def no_recompute(*_args, **_kwargs):
        raise AssertionError("the contrast limits were computed again on the main thread")

    monkeypatch.setattr(_layers, "display_settings", no_recompute)
    layer = _logic.show_attribution(viewer, prepared, scan_layer)
    assert tuple(layer.contrast_limits) == pytest.approx(prepared.display.contrast_limits)
    assert layer.colormap.name == napari_colormap(prepared.display.colormap).name
    assert layer.data is prepared.attribution.values  # no copy
    assert _logic.go_to_peak(viewer, layer, prepared.peak) == prepared.peak


def test_colour_map_is_built_once():
    assert napari_colormap("bwr") is napari_colormap("bwr")
    assert napari_colormap("inferno") == "inferno"


def test_replacing_a_result_sets_only_what_changed_and_slices_once(viewer, scan_layer, attribution):
    first = prepare_result(_signed(attribution, 1))
    layer = _logic.show_attribution(viewer, first, scan_layer)
    emitted: dict[str, int] = {}
    for name in ("scale", "translate", "rotate", "shear", "affine", "units", "colormap", "opacity", "blending", "set_data", "contrast_limits"):
        getattr(layer.events, name).connect(lambda _e, name=name: emitted.__setitem__(name, emitted.get(name, 0) + 1))
    second = prepare_result(_signed(attribution, 2))
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
    maps = [prepare_result(_signed(attribution, k)) for k in range(2)]
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
