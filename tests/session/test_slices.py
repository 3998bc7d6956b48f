"""2D models on a slice of a volume, and the slice of a physical point."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai.engine import ImageError, ScanImage, explain
from napari_xai.session import jobs, slices

from tests.conftest import OBLIQUE, make_net


def test_a_2d_model_on_a_slice_gives_a_map_on_that_slice_of_the_volume():
    scan = ScanImage(np.random.default_rng(1).normal(size=(5, 12, 12)).astype(np.float32), OBLIQUE)
    net = make_net(2)
    job = jobs.Job(net, scan, "vanilla_gradient", slice_index=3)
    (a,) = explain_all([job])
    assert a.values.shape == scan.spatial_shape and a.geometry == OBLIQUE
    assert not a.values[[0, 1, 2, 4]].any() and a.values[3].any()
    direct = explain(net, slices.slice_scan(scan, 3), "vanilla_gradient")
    np.testing.assert_allclose(a.values[3], direct.values, rtol=1e-5, atol=1e-7)
    assert a.target["slice"] == 3
    with pytest.raises(ImageError, match="outside"):
        jobs.Job(net, scan, "vanilla_gradient", slice_index=5).engine_input()
    # the prediction on the slice fills the target menu
    pred = jobs.model_prediction(net, scan, 3)
    assert jobs.target_choices(pred, None)[0][1] is None
    # evaluation inputs: the slice again, with the map's slice
    plane, maps, mask, _ = slices.evaluation_inputs(scan, {"m": a}, np.ones(scan.spatial_shape, bool))
    assert plane.spatial_shape == (12, 12) and maps["m"].values.shape == (12, 12) and mask.shape == (12, 12)
    np.testing.assert_array_equal(maps["m"].values, a.values[3])


def test_slice_of_a_point_is_simpleitk_index():
    import SimpleITK as sitk

    from tests.conftest import oblique_sitk

    image = oblique_sitk((7, 9, 11))
    from napari_xai.engine import as_scan

    scan = as_scan(image)
    for k in range(7):
        point = image.TransformContinuousIndexToPhysicalPoint((4.0, 3.2, k + 0.3))
        assert slices.slice_of_point(scan.geometry, point, 7) == k
        assert k == int(round(image.TransformPhysicalPointToContinuousIndex(point)[2]))
    assert slices.slice_of_point(scan.geometry, image.TransformContinuousIndexToPhysicalPoint((0, 0, 40.0)), 7) == 6
    assert sitk  # imported for the reference above


def explain_all(todo):
    gen = jobs.run_jobs(todo)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
