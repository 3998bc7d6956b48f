"""What the saliency dock and the trust dock do alike: the model menu, viewer events, and a run's progress, cancel, end and errors.

Both docks run one engine generator at a time through
:func:`._workers.run_generator` with a :class:`~napari_xai.session.run_state.RunState`;
:class:`RunDock` holds the reactions to that run which both draw the same
way, so each dock keeps only its own controls and what it does with a result.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Generator

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QComboBox, QWidget

from napari_xai.engine import XAIError
from napari_xai.session.models import model_label
from napari_xai.session.run_state import RunState

from .. import _logic
from ._workers import RunCallbacks, WorkerGuard, run_generator


def same_model(a: Any, b: Any) -> bool:
    """Model menu entries are paths (compare by value) or objects (compare by identity)."""
    if isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike)):
        return str(a) == str(b)
    return a is b


def select_model(combo: QComboBox, model: Any, label: str | None = None, at: int | None = None) -> None:
    """Select ``model`` (path, ``nn.Module`` or ``LoadedModel``) in a model menu, adding it (at ``at``, default last) if it is not there."""
    for i in range(combo.count()):
        data = combo.itemData(i)
        if data is not None and same_model(data, model):
            combo.setCurrentIndex(i)
            return
    value = str(model) if isinstance(model, (str, os.PathLike)) else model
    at = combo.count() if at is None else at
    combo.insertItem(at, label or model_label(model), value)
    combo.setCurrentIndex(at)


def alive(qobject: Any) -> bool:
    """False once Qt has deleted the widget (viewer events can still arrive while napari closes)."""
    try:
        qobject.objectName()
    except RuntimeError:
        return False
    return True


def disconnect_viewer(connections: list[tuple[Any, Any]], *_: Any) -> None:
    """Disconnect a dock's viewer event handlers (the viewer may be gone already)."""
    for emitter, handler in connections:
        try:
            emitter.disconnect(handler)
        except Exception:  # already gone with the viewer
            pass


def connect_viewer(widget: QWidget, connections: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Connect each ``(viewer event, handler)`` pair, disconnected again when ``widget`` is deleted; returns the pairs."""
    for emitter, handler in connections:
        emitter.connect(handler)
    widget.destroyed.connect(functools.partial(disconnect_viewer, connections))
    return connections


def error_message(exc: BaseException) -> str:
    """An XAIError's own message (problem and fix); anything else with its type."""
    return str(exc) if isinstance(exc, XAIError) else f"{type(exc).__name__}: {exc}"


class RunDock:
    """A dock's reactions to its run, shared by the saliency and the trust dock (a mixin before ``QWidget``).

    It sets ``viewer``, ``state`` (a ``RunState``), ``worker`` and ``_gen``
    (None when idle); the dock provides ``status`` (a ``QLabel``),
    ``progress`` (a ``QProgressBar`` of 0..1000), ``_set_running(bool)``,
    ``_on_aborted()`` and what to do with the run's value.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()  # the QWidget
        self.viewer = napari_viewer
        self.worker: Any = None
        self._gen: Any = None
        self.state = RunState()  # the run's phase, estimate, progress and cancel (no Qt)

    def _start_run(self, gen: Generator[Any, None, Any], returned: Callable[[Any], None], guard: WorkerGuard | None = None) -> None:
        """Drive ``gen`` in a thread worker (on the main thread with ``NAPARI_XAI_NO_THREADS=1``)."""
        self._gen = gen
        callbacks = RunCallbacks(self._on_progress, returned, self._fail, self._on_aborted, self._on_finished, lambda: self.state.cancel_requested)
        self.worker = run_generator(gen, callbacks, threads=not _logic.threads_disabled(), guard=guard)

    def cancel(self) -> None:
        """Stop the run at its next progress step (Cancel button); nothing is added or written."""
        self.state.cancel()
        if self.worker is not None:
            self.worker.quit()
        self.status.setText("Cancelling…")

    def _on_progress(self, event: Any) -> None:
        if not alive(self.status):
            return
        view = self.state.progress(event)
        if view.value is not None:
            self.progress.setValue(view.value)
            self.progress.setFormat(f"%p%  {view.time_left}" if view.time_left else "%p%")
        if view.message:
            self.status.setText(view.message)

    def _release_run(self) -> None:
        """Forget the run; its generator is closed (the engine's hooks and buffers are released now)."""
        gen, self._gen, self.worker = self._gen, None, None
        if gen is not None:
            gen.close()
        self.state.finish()

    def _on_finished(self) -> None:
        self._release_run()
        if alive(self.status):
            self._set_running(False)

    def _fail(self, exc: BaseException) -> None:
        """An error: a notification (and the status line); the viewer stays as it was."""
        message = error_message(exc)
        if alive(self.status):
            self.progress.setValue(0)
            self.status.setText(f"Error: {message}")
        show_error(message)
