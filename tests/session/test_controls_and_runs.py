"""One control per ParamSpec for both hosts; the run state and the background run, without Qt."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_xai.engine import Cancelled, ParamSpec, Progress, ScanImage, list_methods
from napari_xai.session import background, controls, jobs, run_state
from tests.conftest import OBLIQUE, make_net


def test_every_parameter_of_every_method_has_a_control_whose_default_validates():
    kinds = set()
    for spec in list_methods():
        values = {}
        for p in spec.params:
            c = controls.control_for(p)
            kinds.add(c.kind)
            assert c.help.startswith(p.help) and c.name == p.name
            raw = c.text(c.default) if c.kind in ("per_axis", "text") else (str(c.default) if c.kind == "choice" else c.default)
            values[p.name] = c.parse(raw)
            if c.kind in ("int", "float"):
                assert c.minimum <= c.default <= c.maximum
        assert spec.validate_params(values) == spec.validate_params({}), spec.name
    assert {"bool", "int", "float", "choice", "per_axis"} <= kinds


def test_per_axis_text_has_one_rule():
    c = controls.control_for(ParamSpec("window", int, 8, "w", min=1, max=64, per_axis=True))
    assert c.parse("5") == 5 and c.parse("4, 6, 8") == (4, 6, 8) and c.parse("4;6 8") == (4, 6, 8) and c.parse("") == 8
    with pytest.raises(controls.ControlTextError, match="window"):
        c.parse("eight")
    assert controls.parse_per_axis("0.5 1", float) == (0.5, 1.0)
    assert controls.format_value((8, 4, 2)) == "8, 4, 2"


def test_float_step_and_bounds_rule():
    sigma = controls.control_for(ParamSpec("sigma", float, 0.15, "s", min=0.0, max=1.0))
    assert sigma.step == pytest.approx(0.01) and sigma.decimals >= 2 and (sigma.minimum, sigma.maximum) == (0.0, 1.0)
    free = controls.control_for(ParamSpec("scale", float, 0.0, "s"))
    assert (free.minimum, free.maximum) == controls.FLOAT_RANGE and free.step == pytest.approx(0.1)
    n = controls.control_for(ParamSpec("samples", int, 25, "n", min=1))
    assert n.kind == "int" and n.minimum == 1 and n.maximum == controls.INT_RANGE[1]
    choice = controls.control_for(ParamSpec("k", int, 2, "k", choices=(1, 2, 4)))
    assert choice.kind == "choice" and choice.parse("4") == 4


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


def _slow(n=50, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise ValueError("broken")
        time.sleep(0.01)
        yield Progress(i + 1, n, f"step {i}")
    return "result"


def test_background_run_works_off_the_calling_thread_and_reports_progress_result_error_cancel():
    main = threading.get_ident()
    seen = []

    def make():
        seen.append(threading.get_ident())
        return _slow(5)

    run = background.BackgroundRun(make).start()
    assert run.wait(10)
    update = run.poll()
    assert update.finished and update.result == "result" and update.error is None and not update.cancelled
    assert [e.done for e in update.events] == [1, 2, 3, 4, 5] and update.latest.done == 5
    assert seen and seen[0] != main and run.thread_id == seen[0]

    failing = background.BackgroundRun(lambda: _slow(5, fail_at=2)).start()
    assert failing.wait(10)
    assert isinstance(failing.poll().error, ValueError)

    closed = []

    def tracked():
        try:
            yield from _slow(1000)
        finally:
            closed.append(threading.get_ident())

    long = background.BackgroundRun(tracked).start()
    while not long.poll().events:
        time.sleep(0.01)
    long.cancel()
    assert long.wait(10)
    update = long.poll()
    assert update.cancelled and update.result is None and closed and closed[0] == long.thread_id

    def raises_cancel():
        raise Cancelled("stop")
        yield  # pragma: no cover

    assert background.BackgroundRun(raises_cancel).start().wait(10)
