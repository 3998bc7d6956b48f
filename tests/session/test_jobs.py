"""Jobs and their run: one generator of overall progress, closed to cancel; the command lines' run, parameters split among methods."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai.engine import Attribution, ScanImage, explain
from napari_xai.session import jobs

from tests.conftest import OBLIQUE, make_net


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


def test_a_job_runs_to_its_map_in_the_calling_thread_with_progress_and_cancel():
    from napari_xai.engine import Cancelled

    scan = ScanImage(np.random.default_rng(1).normal(size=(6, 7, 8)).astype(np.float32), OBLIQUE)
    net = make_net(3)
    job = jobs.Job(net, scan, "integrated_gradients", params={"steps": 4})
    events = []
    a = job.run(on_progress=events.append)
    np.testing.assert_allclose(a.values, explain(net, scan, "integrated_gradients", steps=4).values, rtol=1e-5, atol=1e-7)
    assert events and events[-1].fraction == 1.0
    with pytest.raises(Cancelled):
        job.run(should_cancel=lambda: True)


def test_one_set_of_parameters_is_split_among_the_chosen_methods():
    from napari_xai.engine import MethodError

    split = jobs.method_params(["vanilla_gradient", "integrated_gradients", "occlusion"], {"steps": 8, "window": 4})
    assert split == {"vanilla_gradient": {}, "integrated_gradients": {"steps": 8}, "occlusion": {"window": 4}}
    with pytest.raises(MethodError, match="No chosen method takes the parameter"):
        jobs.method_params(["vanilla_gradient"], {"steps": 8})
    with pytest.raises(MethodError):
        jobs.method_params(["integrated_gradients"], {"steps": -1})  # the spec's bounds
