"""Background workers of one widget, stopped and waited for before the widget or its viewer goes away.

A thread worker whose Qt signal object is deleted while it still runs (the
viewer closed, the dock removed, the application quitting) emits into a
deleted object when it finishes, and Qt aborts the process. The guard below
watches the viewer's main window (its Close event, which quitting napari
sends too) and the widget itself (taken out of its dock); on either
it asks every worker to stop (a generator worker stops at its next progress
event, which comes at least once a second), cuts the signals into the widget
and waits for the workers to return, so nothing reaches a deleted object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator

from qtpy.QtCore import QEvent, QObject, QThreadPool
from qtpy.QtWidgets import QApplication, QMainWindow, QWidget

from napari_xai.engine.errors import Cancelled
from napari_xai.engine.progress import run_to_end

#: How long closing waits for running workers before giving up (ms).
SHUTDOWN_WAIT_MS = 60_000

_SIGNALS = ("started", "yielded", "returned", "errored", "aborted", "finished", "warned")


class WorkerGuard(QObject):
    """Tracks a widget's workers and shuts them down with the widget or its window.

    Parameters
    ----------
    widget : QWidget
        The dock widget.
    on_shutdown : callable
        Called (on the main thread) with the stopped workers, to let the widget
        release what they held (e.g. close the engine's generator).
    """

    def __init__(self, widget: QWidget, on_shutdown: Callable[[list[Any]], None]) -> None:
        super().__init__(widget)
        self._widget = widget
        self._on_shutdown = on_shutdown
        self._workers: list[Any] = []
        self._watched: set[int] = set()  # ids, not references: the guard must not keep the viewer alive
        self._stopping = False
        self._watch_ancestors()

    def track(self, worker: Any) -> Any:
        """Remember ``worker`` until it finishes, and watch the widget's window from now on."""
        self._workers.append(worker)
        worker.finished.connect(lambda: self._workers.remove(worker) if worker in self._workers else None)
        return worker

    @property
    def running(self) -> bool:
        return any(w.is_running for w in self._workers)

    def _watch_ancestors(self) -> None:
        """Filter the events of the widget and of every widget above it (the dock, the main window)."""
        obj: QObject | None = self._widget
        while obj is not None:
            if id(obj) not in self._watched:
                obj.installEventFilter(self)
                self._watched.add(id(obj))
            obj = obj.parent()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind == QEvent.Close and isinstance(obj, QMainWindow):
            self.shutdown()  # the viewer's window is closing
        elif kind == QEvent.ParentChange:
            if obj is self._widget and self._widget.parent() is None:
                self.shutdown()  # taken out of its dock: napari deletes the dock next
            else:
                self._watch_ancestors()  # docked, or the dock put into the main window
        return False

    def shutdown(self) -> None:
        """Stop every worker, disconnect its signals and wait until it has returned."""
        if self._stopping:
            return
        self._stopping = True
        workers, self._workers = list(self._workers), []
        for worker in workers:
            for name in _SIGNALS:
                signal = getattr(worker, name, None)
                try:
                    signal.disconnect()
                except (TypeError, RuntimeError, AttributeError):  # nothing connected / already gone
                    pass
            quit_ = getattr(worker, "quit", None)
            if quit_ is not None:
                quit_()
        try:
            if workers:
                QThreadPool.globalInstance().waitForDone(SHUTDOWN_WAIT_MS)
            self._on_shutdown(workers)
        finally:
            self._stopping = False


#: Workers in flight, kept referenced until they finish (a worker collected while running crashes Qt).
LIVE_WORKERS: set[Any] = set()


def keep_alive(worker: Any) -> Any:
    """Keep ``worker`` referenced until it finishes; returns it."""
    LIVE_WORKERS.add(worker)
    worker.finished.connect(lambda: LIVE_WORKERS.discard(worker))
    return worker


def _drive(gen: Generator[Any, None, Any]) -> Generator[Any, None, Any]:
    """Generator function wrapper so that a generator object we hold can run in a GeneratorWorker."""
    return (yield from gen)


@dataclass
class RunCallbacks:
    """What a dock does with a run's events, on the main thread.

    Parameters
    ----------
    progress : callable
        Called with each ``Progress`` event.
    returned : callable
        Called with the generator's return value.
    failed : callable
        Called with the exception the run raised.
    aborted : callable
        Called when the run was cancelled.
    finished : callable
        Called last, whatever happened.
    cancel_requested : callable
        True once the user pressed Cancel (polled by the main-thread driver).
    """

    progress: Callable[[Any], None]
    returned: Callable[[Any], None]
    failed: Callable[[BaseException], None]
    aborted: Callable[[], None]
    finished: Callable[[], None]
    cancel_requested: Callable[[], bool]


def run_generator(gen: Generator[Any, None, Any], callbacks: RunCallbacks, *, threads: bool = True, guard: WorkerGuard | None = None) -> Any:
    """Run an engine generator for a dock: in a napari thread worker, or (``threads=False``) here on the main thread.

    Both docks (saliency and trust) drive their runs through this one loop.
    Returns the started worker (``quit()`` cancels it), or None when the run
    was driven on the main thread (it has ended then).
    """
    if not threads:
        _drive_here(gen, callbacks)
        return None
    from napari.qt.threading import create_worker

    worker = keep_alive(create_worker(_drive, gen, _ignore_errors=True, _start_thread=False))
    if guard is not None:
        guard.track(worker)
    worker.yielded.connect(callbacks.progress)
    worker.returned.connect(callbacks.returned)
    worker.errored.connect(callbacks.failed)
    worker.aborted.connect(callbacks.aborted)
    worker.finished.connect(callbacks.finished)
    worker.start()
    return worker


def _drive_here(gen: Generator[Any, None, Any], callbacks: RunCallbacks) -> None:
    """Main-thread driver (``NAPARI_XAI_NO_THREADS=1``): events are processed at every progress step."""
    def show(event: Any) -> None:
        callbacks.progress(event)
        QApplication.processEvents()

    try:
        callbacks.returned(run_to_end(gen, show, callbacks.cancel_requested))
    except Cancelled:  # Cancel was pressed: the generator is closed
        callbacks.aborted()
    except Exception as exc:
        callbacks.failed(exc)
    finally:
        callbacks.finished()


def start_call(function: Callable[..., Any], *args: Any, returned: Callable[[Any], None], failed: Callable[[BaseException], None],
               finished: Callable[[], None] | None = None, guard: WorkerGuard | None = None) -> Any:
    """Run ``function(*args)`` in a napari thread worker (a prediction, an estimate); returns the started worker."""
    from napari.qt.threading import create_worker

    worker = keep_alive(create_worker(function, *args, _ignore_errors=True, _start_thread=False))
    if guard is not None:
        guard.track(worker)
    worker.returned.connect(returned)
    worker.errored.connect(failed)
    if finished is not None:
        worker.finished.connect(finished)
    worker.start()
    return worker
