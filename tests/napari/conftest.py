"""Fixtures for the napari plugin tests: a docked widget on an oblique, anisotropic scan layer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_xai._napari._layers import scan_from_layer
from napari_xai.engine import explain, napari_layer_kwargs
from tests.conftest import OBLIQUE, make_net

WIDGET = "Saliency maps (XAI)"
SHAPE = (8, 10, 12)


def wait_until_done(qtbot, widget, timeout_ms: int = 60000) -> None:
    """Wait for the widget's run (and prediction) to finish (workers finished and cleaned up)."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout_ms)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def scan_layer(viewer):
    arr = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
    return viewer.add_image(arr, name="oblique scan", **napari_layer_kwargs(OBLIQUE))


@pytest.fixture
def widget(viewer, scan_layer, qtbot):
    _, w = viewer.window.add_plugin_dock_widget("napari-xai", WIDGET)
    yield w
    qtbot.waitUntil(lambda: not w.busy, timeout=30000)  # no worker outlives its test


@pytest.fixture
def attribution(scan_layer):
    """A vanilla-gradient map of the scan layer."""
    return explain(make_net(3), scan_from_layer(scan_layer), "vanilla_gradient")


def signed_copy(attribution, seed=0):
    """The attribution with random signed values (seeded)."""
    values = np.random.default_rng(seed).normal(size=attribution.values.shape).astype(np.float32)
    return dataclasses.replace(attribution, values=values, sign="signed")
