"""Run one long, indivisible call (a modified backward pass) step by step, so that its method can yield and cancel.

A backward pass runs inside autograd's engine: Python cannot ``yield`` from
inside it. A method whose map comes from one long backward pass (LRP on a 3D
network is about ten forward passes' work) would otherwise go seconds
without a progress event, and Cancel could not stop it. Here the call runs
in a worker thread and pauses at *checkpoints* (called from inside it, e.g.
after each layer's rule in the backward pass): at each one the generator
yields a :class:`Progress` event and the worker waits until the generator is
resumed. So the work advances only while the caller asks for the next event,
as with any method's generator, and closing the generator (Cancel) stops the
worker at the checkpoint it is waiting at: the pass is abandoned there and
nothing after it runs.

The worker's thread-local state is its own: it enters grad mode itself if it
needs it. Its result, or its exception, is handed back to the generator.
"""

from __future__ import annotations

import importlib
import queue
import sys
import threading
from typing import Any, Callable, Generator

from ...progress import Progress


class _Stopped(BaseException):
    """Raised inside the worker at a checkpoint when the generator was closed (not an error: the run was cancelled)."""


class Stepper:
    """Checkpoints for one call run by :meth:`run`; pass :meth:`checkpoint` to the code that runs inside the call."""

    def __init__(self) -> None:
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._resume: queue.Queue[bool] = queue.Queue()
        self._thread: threading.Thread | None = None

    def checkpoint(self, message: str) -> None:
        """Pause the call here until the caller has taken a progress event with ``message`` (a no-op outside the call).

        Raises
        ------
        _Stopped
            The generator was closed while the call waited here.
        """
        if threading.current_thread() is not self._thread:
            return
        self._events.put(("step", message))
        if not self._resume.get():
            raise _Stopped

    def run(self, call: Callable[[], Any], total: int, done: int = 0) -> Generator[Progress, None, Any]:
        """Run ``call()`` in a worker thread; yield one event per checkpoint it reaches; return its value.

        Parameters
        ----------
        call : callable
            The work; it calls :meth:`checkpoint` as it goes.
        total, done : int
            Units of the run for the events: the k-th checkpoint reports ``done + k`` of ``total``.

        Raises
        ------
        BaseException
            Whatever ``call`` raised, re-raised here.
        """

        def work() -> None:
            try:
                self._events.put(("done", call()))
            except _Stopped:
                self._events.put(("stopped", None))
            except BaseException as err:  # handed to the generator, which re-raises it in the caller's thread
                self._events.put(("error", err))

        self._thread = threading.Thread(target=work, name="napari-xai-stepped", daemon=True)
        self._thread.start()
        waiting = False
        try:
            k = done
            while True:
                kind, value = self._events.get()
                if kind == "done":
                    return value
                if kind == "error":
                    raise value
                k += 1
                waiting = True
                yield Progress(min(k, total), total, value)
                waiting = False
                self._resume.put(True)
        finally:
            if waiting:  # closed (cancelled) while the worker waits at a checkpoint: stop it there
                self._resume.put(False)
            self._thread.join()
            self._thread = None


#: Seconds between the events :func:`background_import` yields while the import runs.
IMPORT_HEARTBEAT_S = 0.25


def background_import(module: str, message: str) -> Generator[Progress, None, None]:
    """Import ``module`` in a thread, yielding an event every :data:`IMPORT_HEARTBEAT_S` until it is imported.

    For a heavy import that torch does lazily on first use inside a run:
    ``torch.optim``'s optimisers import ``torch._dynamo`` when the first one
    is made (seconds on a loaded 2-core machine, once per process). An
    import cannot be stopped, so closing the generator returns at once and
    the import finishes in the background; the next run finds it done.
    """
    if module in sys.modules:
        return
    worker = threading.Thread(target=importlib.import_module, args=(module,), name="napari-xai-import", daemon=True)
    worker.start()
    while True:
        worker.join(IMPORT_HEARTBEAT_S)
        if not worker.is_alive():
            return
        yield Progress(0, 0, message)
