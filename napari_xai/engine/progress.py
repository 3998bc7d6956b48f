"""Progress events yielded by :func:`napari_xai.engine.explain_iter`."""

from __future__ import annotations

from dataclasses import dataclass


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
