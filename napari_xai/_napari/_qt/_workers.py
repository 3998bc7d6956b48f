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

from typing import Any, Callable

from qtpy.QtCore import QEvent, QObject, QThreadPool
from qtpy.QtWidgets import QMainWindow, QWidget

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
