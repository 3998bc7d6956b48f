"""The host-neutral job layer: sample models, the model cache, jobs and their run, 2D slices, checks as text."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from napari_xai.engine import Attribution, ImageError, ModelError, ScanImage, explain
from napari_xai.session import checks, jobs, models, slices
from napari_xai.session.methods import methods_by_family
from tests.conftest import OBLIQUE, make_net


def test_methods_grouped_by_family_in_catalogue_order():
    from napari_xai.engine import list_methods

    groups = methods_by_family()
    fams = [f for f, _ in groups]
    assert fams == sorted(fams, key=lambda f: ("perturbation", "backpropagation", "class activation", "activation maximisation").index(f))
    assert sum(len(s) for _, s in groups) == len(list_methods())


def test_sample_models_come_from_the_folder(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"x")
    (tmp_path / "a.json").write_text(json.dumps({"name": "model A", "weights": "a.safetensors"}))
    (tmp_path / "b.json").write_text(json.dumps({"name": "model B", "weights": "missing.safetensors"}))
    (tmp_path / "c.json").write_text(json.dumps({"name": "not a model"}))
    (tmp_path / "d.json").write_text("{broken")
    assert models.sample_models(tmp_path) == {"model A": tmp_path / "a.json"}
    from napari_xai.samples import SAMPLES_DIR

    for path in models.sample_models().values():
        assert path.parent == SAMPLES_DIR


def test_model_cache_loads_a_file_once_for_two_threads_and_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "net.pt"
    torch.jit.script(make_net(3)).save(str(path))
    cache = models.ModelCache()
    loads = []
    real = models.load_model

    def counted(p):
        loads.append(p)
        return real(p)

    monkeypatch.setattr(models, "load_model", counted)
    got = []
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        got.append(cache.get(path))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and got[0] is got[1]
    import os

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert cache.get(path) is not got[0] and len(loads) == 2
    with pytest.raises(ModelError, match="No model file"):
        cache.get(tmp_path / "missing.pt")


def test_run_jobs_is_a_generator_with_overall_progress_and_cancel():
    scan = ScanImage(np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32), OBLIQUE)
    net = make_net(3)
    todo = [jobs.Job(net, scan, "vanilla_gradient"), jobs.Job(net, scan, "integrated_gradients", params={"steps": 4})]
    gen = jobs.run_jobs(todo)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            results = stop.value
            break
    assert [a.method for a in results] == ["vanilla_gradient", "integrated_gradients"]
    assert all(isinstance(a, Attribution) and a.geometry == OBLIQUE for a in results)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(e.message.startswith("[2/2]") for e in events)
    np.testing.assert_allclose(results[0].values, explain(net, scan, "vanilla_gradient").values, rtol=1e-5, atol=1e-7)
    gen = jobs.run_jobs(todo)
    next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


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


def test_format_checks_generic_and_known():
    lines = checks.format_checks(
        {"completeness": {"attribution_sum": 1.0, "score_difference": 1.01, "relative_delta": 0.0099}, "model_grid_is_scan_grid": True, "layer": "features.3", "deletion_auc": 0.1234567}
    )
    assert lines[0].startswith("completeness") and "ok" in lines[0]
    assert "layer: features.3" in lines and "deletion auc: 0.1235" in lines
    assert not any("model grid" in line for line in lines)
