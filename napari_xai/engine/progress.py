"""Progress events yielded by :func:`napari_xai.engine.explain_iter`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator


@dataclass(frozen=True)
class Progress:
    """One step of a run.

    Parameters
    ----------
    done : int
        Units of work finished (forward/backward passes, windows, ...).
    total : int
        Units of work in the whole run (0 when not known yet).
    message : str
        What is happening, for a status line.
    """

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """``done / total`` in [0, 1] (0 while the total is unknown)."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


def relay(gen: Generator[Progress, None, Any], start: int, span: int, total: int, prefix: str = "") -> Generator[Progress, None, Any]:
    """Re-yield a sub-run's events as part of a larger run, and return its value.

    The sub-run's fraction is mapped onto ``start .. start + span`` units of
    ``total``; its messages get ``prefix``. Closing the outer generator
    closes the sub-run (cancel reaches the work in flight).
    """
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield Progress(start + int(span * event.fraction), total, prefix + event.message)
    finally:
        gen.close()


def run_to_end(
    gen: Generator[Progress, None, Any],
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    what: str = "the run",
) -> Any:
    """Drive an engine generator to its return value, reporting each event and honouring cancel.

    Raises
    ------
    Cancelled
        ``should_cancel`` returned True (the generator is closed first).
    """
    from .errors import Cancelled

    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)
        if should_cancel is not None and should_cancel():
            gen.close()
            raise Cancelled(f"{what} was cancelled at {event.done}/{event.total}.")
