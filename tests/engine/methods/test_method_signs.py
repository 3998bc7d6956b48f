"""Every method's declared sign against its values on the sample models, and the display that follows the values.

One-pass methods run on the 3D sample lesion classifier; methods of many
passes on the 2D sample classifier of axial slices (the same anatomy and
lesions), which keeps the test to seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai.engine import explain, get_method, list_methods
from napari_xai.engine.display import display_settings, display_sign
from napari_xai.samples import load_lesion_classifier, load_lesion_classifier_2d, load_sample_scan, load_sample_scan_axial

#: Settings that keep each method to a few passes on the sample (the sign does not depend on the count).
QUICK = {
    "occlusion": {"window": 27, "stride": 27},
    "lime": {"segmentation": "grid", "cell": 18, "n_samples": 16},
    "kernel_shap": {"segmentation": "grid", "cell": 27, "n_samples": 16},
    "rise": {"n_masks": 16},
    "hipe": {"min_cell": 27},
    "meaningful_perturbation": {"iterations": 3},
    "extremal_perturbation": {"iterations": 3},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"n_samples": 2},
    "smoothgrad_sq": {"n_samples": 2},
    "vargrad": {"n_samples": 2},
    "deeplift_shap": {"n_baselines": 2},
    "score_cam": {},
}
MAP_METHODS = [s.name for s in list_methods() if s.output == "map"]


@pytest.fixture(scope="module")
def samples():
    return {3: (load_lesion_classifier(), load_sample_scan()), 2: (load_lesion_classifier_2d(), load_sample_scan_axial())}


@pytest.mark.parametrize("name", MAP_METHODS)
def test_declared_sign_holds_on_the_sample_and_the_display_follows_the_values(samples, name):
    spec = get_method(name)
    many_passes = name in QUICK or spec.family == "perturbation"
    model, scan = samples[2 if many_passes or name == "cam" else 3]  # CAM needs the 2D sample's average-pooling head
    a = explain(model, scan, name, **QUICK.get(name, {}))
    v = a.values
    assert np.isfinite(v).all() and np.abs(v).max() > 0, f"{name}: an empty map on the sample"
    if a.sign == "non-negative":
        assert v.min() >= -1e-6 * np.abs(v).max(), f"{name} is declared non-negative but its map reaches {v.min():.3g}"
    shown = display_sign(v, a.sign)
    settings = display_settings(v, a.sign)
    if a.sign == "non-negative" or v.min() >= 0:
        assert shown == "non-negative" and settings.colormap == "inferno" and settings.contrast_limits[0] == 0.0
    else:
        assert a.sign == "signed" and shown == "signed" and settings.colormap == "bwr"
        assert settings.contrast_limits[0] == -settings.contrast_limits[1]
