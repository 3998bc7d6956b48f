"""A run in a Python thread that a host's main thread polls: progress, result, error, cancel.

For hosts without a thread worker of their own (3D Slicer): the host starts
a :class:`BackgroundRun` and polls it from a timer on its main thread, so
that nothing of the host (MRML, Qt) is touched from the worker thread. The
work is an engine generator (``Progress`` events, a return value), made in
the worker thread by a callable given to the run; cancel closes it at its
next event (the engine yields at least once a second).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from napari_xai.engine import Cancelled, Progress


@dataclass
class RunUpdate:
    """What happened in a :class:`BackgroundRun` since the last poll.

    Parameters
    ----------
    events : list of Progress
        Progress events since the last poll, oldest first.
    finished : bool
        The worker thread is done (result, error or cancel).
    result : Any
        The generator's return value (when finished without error or cancel).
    error : BaseException or None
        What the work raised.
    cancelled : bool
        The run stopped because :meth:`BackgroundRun.cancel` was called.
    """

    events: list[Progress] = field(default_factory=list)
    finished: bool = False
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def latest(self) -> Progress | None:
        """The newest progress event of this update, if any."""
        return self.events[-1] if self.events else None


class BackgroundRun:
    """Drive a generator of progress events to its return value in a daemon thread.

    Parameters
    ----------
    make : callable
        Called in the worker thread; returns the generator (e.g.
        ``lambda: run_jobs(jobs)``), so that loading a model happens off
        the host's main thread too.
    name : str
        The thread's name.
    """

    def __init__(self, make: Callable[[], Generator[Progress, None, Any]], name: str = "napari-xai run") -> None:
        self._make = make
        self._lock = threading.Lock()
        self._events: list[Progress] = []
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self.thread_id: int | None = None

    def start(self) -> "BackgroundRun":
        """Start the worker thread; returns the run."""
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop at its next progress event (nothing is returned then)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def finished(self) -> bool:
        """The worker thread has stopped."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the work has stopped (for scripts and tests); True when it has."""
        return self._done.wait(timeout)

    def poll(self) -> RunUpdate:
        """The events since the last poll and, once finished, the outcome (call from the host's main thread)."""
        with self._lock:
            events, self._events = self._events, []
        if not self._done.is_set():
            return RunUpdate(events)
        return RunUpdate(events, True, self._result, self._error, self._cancelled)

    def _work(self) -> None:
        self.thread_id = threading.get_ident()
        gen = None
        try:
            gen = self._make()
            while True:
                if self._cancel.is_set():
                    self._cancelled = True
                    return
                try:
                    event = next(gen)
                except StopIteration as stop:
                    self._result = stop.value
                    return
                with self._lock:
                    self._events.append(event)
        except Cancelled:
            self._cancelled = True
        except BaseException as exc:  # handed to the host's main thread, which shows it
            self._error = exc
        finally:
            if gen is not None:
                gen.close()  # the engine's hooks and buffers are released in this thread
            self._done.set()
