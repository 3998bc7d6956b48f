"""What the worker prepares for a result layer (contrast, colour map, peak), used as is on the main thread."""

from __future__ import annotations

import numpy as np

from napari_xai._napari import _layers
from napari_xai._napari._layers import PreparedResult, napari_colormap, prepare_result
from napari_xai.engine.display import display_settings

from tests.napari.conftest import signed_copy


def test_prepared_result_carries_display_and_peak(attribution):
    prepared = prepare_result(attribution)
    assert isinstance(prepared, PreparedResult) and prepared.attribution is attribution
    assert prepared.display == display_settings(attribution.values, attribution.sign)
    assert prepared.peak == tuple(np.unravel_index(np.argmax(attribution.values), attribution.values.shape))
    assert prepare_result(prepared) is prepared  # never prepared twice
    # a signed map peaks at its largest positive value, an all-negative one at its largest |value|
    signed = signed_copy(attribution)
    values = signed.values.copy()
    values.flat[5] = -100.0
    values.flat[7] = 50.0
    assert _layers.peak_index(values, "signed") == np.unravel_index(7, values.shape)
    assert _layers.peak_index(-np.abs(values), "signed") == np.unravel_index(5, values.shape)


def test_colour_map_is_built_once():
    assert napari_colormap("bwr") is napari_colormap("bwr")
    assert napari_colormap("inferno") == "inferno"
