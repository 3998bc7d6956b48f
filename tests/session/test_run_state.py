"""A host's run state without Qt: phases, the estimate's question, progress."""

from __future__ import annotations

import numpy as np

from napari_xai.engine import Progress, ScanImage
from napari_xai.session import jobs, run_state

from tests.conftest import OBLIQUE, make_net


def test_run_state_phases_estimate_question_and_progress(monkeypatch):
    monkeypatch.setenv("NAPARI_XAI_CONFIRM_SECONDS", "10")
    scan = ScanImage(np.zeros((6, 7, 8), np.float32), OBLIQUE)
    state = run_state.RunState()
    assert not state.busy
    state.begin_estimate(names=["vanilla_gradient"])
    assert state.busy and state.phase == "estimating"
    estimates = jobs.estimate_jobs([jobs.Job(make_net(3), scan, "vanilla_gradient")])
    assert state.estimated(estimates).startswith("Estimate:")
    assert not state.needs_confirmation
    state.estimates[0].seconds = 11.0
    assert state.needs_confirmation
    state.begin_run()
    view = state.progress(Progress(5, 10, "half"))
    assert view.value == 500 and view.message == "half"
    assert state.progress(Progress(0, 0, "preparing")).value is None
    state.cancel()
    assert state.progress(Progress(6, 10, "more")).message is None
    state.finish()
    assert not state.busy
