"""Whole ``run`` functions made from smaller pieces, for methods that are one of them."""

from __future__ import annotations

from typing import Any, Callable, Generator

import numpy as np

from ...progress import Progress
from .context import MethodContext

BatchMap = Callable[[MethodContext, dict], tuple[Callable[..., Any], int]]


def single_pass_run(batch_map: BatchMap, title: str, absolute: str | None = None) -> Callable[[MethodContext, dict], Generator[Progress, None, np.ndarray]]:
    """``run(ctx, params)`` of a one-pass gradient method from its ``batch_map`` (see ``MethodSpec.batch_map``).

    The map is ``fn(ctx.x)`` for the batch of one; ``absolute`` names the
    bool parameter that takes its absolute value (the method's ``sign_param``).
    """

    def run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
        yield Progress(0, 1, f"{title}: backward pass")
        fn, _ = batch_map(ctx, params)
        out = fn(ctx.x)[0].cpu().numpy()
        yield Progress(1, 1, f"{title}: done")
        return np.abs(out) if absolute is not None and params[absolute] else out

    return run
