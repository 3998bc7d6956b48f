"""Errors a user can cause, each naming the problem and the fix.

Hosts catch :class:`XAIError` and show ``str(error)`` as it is: the message is
written for the person at the viewer, not for a developer.
"""

from __future__ import annotations


class XAIError(ValueError):
    """A problem with the user's input, with a message that says how to fix it.

    Parameters
    ----------
    problem : str
        What is wrong, in the user's terms.
    fix : str
        What to do about it.
    """

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}")


class ImageError(XAIError):
    """The image is unreadable, has the wrong shape, or holds NaN/Inf."""


class ModelError(XAIError):
    """The model file is unreadable, untrusted, or fails on the input."""


class UntrustedModelError(ModelError):
    """The model file would need arbitrary unpickling to load."""


class TargetError(XAIError):
    """The target class or region does not fit the model's output."""


class MethodError(XAIError):
    """The method is unknown, its parameters are invalid, or the model lacks what it needs."""


class MemoryBudgetError(XAIError):
    """Even one sample does not fit the memory budget."""


class Cancelled(Exception):
    """Raised by :func:`explain` when the run was cancelled."""
