"""Every registered method finds planted evidence, in 2D and 3D, for a class and for a region target."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai.engine import explain, list_methods

from tests.planted import planted_case, positive_mass_in_box

#: Small settings so every method runs in well under a second on these inputs.
FAST = {
    "occlusion": {"window": 3, "stride": 2},
    "integrated_gradients": {"steps": 16},
    "lime": {"n_samples": 300},
    "kernel_shap": {"n_samples": 300},
    "rise": {"n_masks": 500},
    "hipe": {"min_cell": 2},
    "meaningful_perturbation": {"iterations": 60, "mask_stride": 2},
    "extremal_perturbation": {"iterations": 150, "mask_stride": 2, "sigma_cells": 0.5},
    "smoothgrad": {"n_samples": 8},
    "smoothgrad_sq": {"n_samples": 8},
    "vargrad": {"n_samples": 8},
    "deeplift_shap": {"n_baselines": 3},
}

MAP_METHODS = [m.name for m in list_methods() if m.family != "activation maximisation"]


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("segmentation", [False, True], ids=["class", "region"])
@pytest.mark.parametrize("method", MAP_METHODS)
def test_method_puts_most_positive_mass_on_planted_evidence(method, dim, segmentation):
    net, image, box, region = planted_case(dim, segmentation)
    kwargs = {"region": region} if segmentation else {}
    a = explain(net, image, method, target=1, **kwargs, **FAST.get(method, {}))
    assert a.values.shape == image.shape and a.values.dtype == np.float32
    assert np.isfinite(a.values).all() and np.abs(a.values).max() > 0
    share = positive_mass_in_box(a.values, box)
    assert share > 0.5, f"{method}: only {share:.0%} of the positive attribution is on the planted evidence"
