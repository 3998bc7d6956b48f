"""A run in a Python thread that the host's main thread polls: progress, result, error, cancel."""

from __future__ import annotations

import threading
import time

from napari_xai.engine import Cancelled, Progress
from napari_xai.session import background


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
