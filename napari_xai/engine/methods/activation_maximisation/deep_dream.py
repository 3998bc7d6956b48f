"""Segmentation Deep Dream: the scan changed step by step to raise the target class over the region.

**Segmentation Deep Dream** (Couteaux et al. 2019, review ref. [69]):
the same ascent started from the given scan, increasing the chosen class
over the chosen region; the changes show which features the network would
need to see more of. The image is kept in the scan's intensity range.

The ascent is :func:`.gradient_ascent.ascend`.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np

from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from ..toolkit.context import MethodContext
from .gradient_ascent import ascend, ascent_params


def _deep_dream(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    lo, hi = float(ctx.x.min()), float(ctx.x.max())
    img = yield from ascend(ctx, ctx.x.clone(), ctx.x, params, "Deep Dream", (lo, hi) if params["keep_range"] else None)
    return img[0].cpu().numpy()


DEEP_DREAM = register_method(
    MethodSpec(
        name="deep_dream",
        title="Deep Dream",
        family="activation maximisation",
        reference="Couteaux V, Nempont O, Pizaine G, Bloch I. Towards Interpretability of Segmentation Networks by Analyzing "
        "DeepDreams. iMIMIC 2019 (review ref. [69]); Mordvintsev A, Olah C, Tyka M. Inceptionism: Going Deeper into Neural Networks. Google Research Blog, 2015 (review ref. [68]).",
        summary="The scan changed step by step to raise the target class (over the region): which features the model wants more of.",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=ascent_params(50, 0.005, 0.0, 0.0, 0)
        + (ParamSpec("keep_range", bool, True, "Keep intensities within the scan's range."),),
        run=_deep_dream,
        stochastic=True,
        output="image",
    )
)
