"""The shortcut sample model is a shortcut model, and the trust metrics flag it (and not the clean classifier).

Both models see the same scan: the sample brain with the shortcut model's
marker burned in beside the head. Only the anatomy group of the metrics is
computed (the flag needs no perturbation passes); the methods run with
settings that keep them to seconds (integrated gradients with 8 steps,
occlusion with 48 mm windows every 24 mm, so that the 12 mm marker lies
whole in some window; a window that covers part of it cannot remove it).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai.engine import evaluate, explain
from napari_xai.samples import load_lesion_classifier, load_sample_scan, load_sample_scan_with_marker, load_shortcut_classifier
from napari_xai.samples.markers import MARKER_BOX, marker_mask

METHODS = {"vanilla_gradient": {}, "integrated_gradients": {"steps": 8}, "occlusion": {"window": 16, "stride": 8}}


@pytest.fixture(scope="module")
def marked_scan():
    return load_sample_scan_with_marker()


@pytest.fixture(scope="module")
def shortcut():
    return load_shortcut_classifier()


@pytest.fixture(scope="module")
def clean():
    return load_lesion_classifier()


def test_the_marker_lies_outside_the_derived_anatomy(marked_scan):
    from napari_xai.engine.metrics import derive_anatomy

    body = derive_anatomy(marked_scan)
    assert not body[MARKER_BOX].any()
    assert 0.2 < body.mean() < 0.6


def test_the_shortcut_model_reads_the_marker_not_the_lesions(shortcut, marked_scan):
    from napari_xai.engine import predict

    assert predict(shortcut, marked_scan).label == "lesion"
    assert predict(shortcut, load_sample_scan()).label == "no lesion"  # same lesions, no marker


@pytest.mark.parametrize("method", list(METHODS))
def test_shortcut_flagged_for_the_shortcut_model_and_not_the_clean_one(method, shortcut, clean, marked_scan):
    flags = {}
    for name, model in (("shortcut", shortcut), ("clean", clean)):
        a = explain(model, marked_scan, method, target="lesion", **METHODS[method])
        r = evaluate(model, marked_scan, a, metrics=["anatomy"])
        flags[name] = r
        if name == "shortcut":  # the map's strongest evidence is the marker itself
            peak = np.unravel_index(int(np.argmax(a.values)), a.values.shape)
            grown = np.zeros_like(marker_mask(a.values.shape))
            grown[tuple(slice(max(0, s.start - 8), s.stop + 8) for s in MARKER_BOX)] = True
            assert grown[peak], f"{method}: peak at {peak}, far from the marker"
    assert flags["shortcut"]["shortcut_flag"] is True, flags["shortcut"]
    assert flags["clean"]["shortcut_flag"] is False, flags["clean"]
