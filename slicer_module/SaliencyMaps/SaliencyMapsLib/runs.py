"""A run off Slicer's main thread: the shared background run, polled by a ``qt.QTimer`` on the main thread.

The work (model loading, the engine's estimate, the map, the trust metrics)
runs in a Python thread (``napari_xai.session.background.BackgroundRun``);
the timer, on the main thread, hands progress, the result, an error or the
cancel to the module's callbacks, so that every MRML and Qt call stays on
the main thread. The ``qt`` module is passed in (this package imports no Qt).
"""

from __future__ import annotations

from typing import Any, Callable

#: How often the main thread looks at the run (ms): often enough for a smooth progress bar.
POLL_MS = 50


class PolledRun:
    """Start ``make()`` (a generator of progress events) in a thread and report it on the main thread.

    Parameters
    ----------
    qt : module
        PythonQt's ``qt`` (for ``QTimer``).
    make : callable
        Returns the generator; called in the worker thread.
    onProgress : callable
        Called with each ``Progress`` event, on the main thread.
    onDone : callable
        Called with the generator's return value.
    onError : callable
        Called with the exception the work raised.
    onCancelled : callable
        Called when the run stopped because of :meth:`cancel` (or ``shouldCancel``).
    shouldCancel : callable, optional
        Polled at every tick (e.g. the progress dialog's Cancel, a scene closing).
    """

    def __init__(self, qt: Any, make: Callable[[], Any], onProgress: Callable[[Any], None], onDone: Callable[[Any], None],
                 onError: Callable[[BaseException], None], onCancelled: Callable[[], None], shouldCancel: Callable[[], bool] | None = None) -> None:
        from napari_xai.session.background import BackgroundRun

        self._run = BackgroundRun(make, name="SaliencyMaps")
        self._onProgress, self._onDone, self._onError, self._onCancelled = onProgress, onDone, onError, onCancelled
        self._shouldCancel = shouldCancel
        self.timer = qt.QTimer()
        self.timer.interval = POLL_MS
        self.timer.connect("timeout()", self._tick)

    def start(self) -> "PolledRun":
        self._run.start()
        self.timer.start()
        return self

    def cancel(self) -> None:
        """Stop at the work's next progress event."""
        self._run.cancel()

    @property
    def running(self) -> bool:
        return self.timer.isActive()

    @property
    def workerThread(self) -> int | None:
        """The worker thread's ident (once started)."""
        return self._run.thread_id

    def _tick(self) -> None:
        if self._shouldCancel is not None and self._shouldCancel():
            self._run.cancel()
        update = self._run.poll()
        for event in update.events:
            self._onProgress(event)
        if not update.finished:
            return
        self.timer.stop()
        if update.cancelled or self._run.cancel_requested:  # cancelled, even if the result came just before: nothing is added
            self._onCancelled()
        elif update.error is not None:
            self._onError(update.error)
        else:
            self._onDone(update.result)
