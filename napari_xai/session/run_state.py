"""The state of a host's run, without Qt: the estimate and its question, progress with time left, cancel.

Both docks of napari and the Slicer module keep one :class:`RunState` per
run; they only draw what it says. A run goes ``estimating`` (the engine's
timed probe) -> possibly a question (over :func:`~napari_xai.engine.estimate.confirm_seconds`)
-> ``running`` -> ``idle``; cancel may come at any step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from napari_xai.engine import Progress
from napari_xai.engine.estimate import Estimate, RemainingTime, confirm_seconds

from .jobs import describe_estimates


@dataclass(frozen=True)
class ProgressView:
    """How a progress event is drawn: the bar's value out of 1000, the text after the percentage, the status line."""

    value: int | None
    time_left: str
    message: str | None


@dataclass
class RunState:
    """One run of a host: what phase it is in and what to show.

    Attributes
    ----------
    phase : str
        ``idle``, ``estimating`` or ``running``.
    cancel_requested : bool
        Cancel was pressed; the run stops at its next event, nothing is added.
    estimates : list of Estimate
        The estimate of each job, once made.
    """

    phase: str = "idle"
    cancel_requested: bool = False
    estimates: list[Estimate] = field(default_factory=list)
    clock: RemainingTime | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        """True while estimating or running."""
        return self.phase != "idle"

    def begin_estimate(self, **context: Any) -> None:
        """A new run starts with its estimate; ``context`` keeps what the host needs when the run ends."""
        self.phase = "estimating"
        self.cancel_requested = False
        self.estimates = []
        self.clock = None
        self.context = dict(context)

    def estimated(self, estimates: list[Estimate]) -> str:
        """Record the estimates; returns the status line that describes them."""
        self.estimates = list(estimates)
        return self.summary

    @property
    def summary(self) -> str:
        return describe_estimates(self.estimates) if self.estimates else ""

    @property
    def needs_confirmation(self) -> bool:
        """The estimated total is over the threshold: the host asks before starting."""
        return sum(e.seconds for e in self.estimates) > confirm_seconds()

    def begin_run(self) -> None:
        """The run itself starts (the clock for the time left starts now)."""
        self.phase = "running"
        self.clock = RemainingTime()

    def cancel(self) -> None:
        """Cancel was pressed."""
        self.cancel_requested = True

    def progress(self, event: Progress) -> ProgressView:
        """What to draw for one event: the bar (None while the total is unknown), time left, the status (None after cancel)."""
        value = int(1000 * event.done / event.total) if event.total > 0 else None
        left = self.clock.text(event.fraction) if self.clock is not None and event.total > 0 else ""
        message = event.message if event.message and not self.cancel_requested else None
        return ProgressView(value, left, message)

    def finish(self) -> None:
        """The run ended (done, failed, refused or cancelled)."""
        self.phase = "idle"
