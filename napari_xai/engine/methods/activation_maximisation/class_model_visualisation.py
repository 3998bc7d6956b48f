"""Class model visualisation: regularised gradient ascent on the input from a neutral start.

**Class model visualisation** (Simonyan et al. 2014, review ref. [43];
"Deep Dream" / Inceptionism, review ref. [68]): regularised gradient ascent
on the input from a neutral start (the scan's mean intensity plus faint
seeded noise), which shows what the class "looks like" to the model. A
global explanation: it does not depend on the scan except for the start
intensity, the grid and, for segmentation targets, the region.

The ascent is :func:`.gradient_ascent.ascend`.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch

from ...progress import Progress
from ...registry import MethodSpec, register_method
from ..toolkit.context import MethodContext
from .gradient_ascent import ascend, ascent_params


def _class_model(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    neutral = float(ctx.x.mean())
    std = float(ctx.x.std()) or 1.0
    noise = np.random.default_rng([params["seed"], 1]).standard_normal(tuple(ctx.x.shape)).astype(np.float32)
    start = neutral + 0.01 * std * torch.from_numpy(noise).to(ctx.x)
    img = yield from ascend(ctx, start, torch.full_like(ctx.x, neutral), params, "Class model visualisation", None)
    return img[0].cpu().numpy()


CLASS_MODEL = register_method(
    MethodSpec(
        name="class_model_visualisation",
        title="Class Model Visualisation",
        family="activation maximisation",
        reference="Simonyan K, Vedaldi A, Zisserman A. Deep Inside Convolutional Networks: Visualising Image Classification "
        "Models and Saliency Maps. ICLR Workshop 2014 (review ref. [43]); Mordvintsev A, Olah C, Tyka M. Inceptionism: Going Deeper into Neural Networks. Google Research Blog, 2015 (review ref. [68]).",
        summary="A synthetic image that maximises the target score from a neutral start: what the class looks like to the model.",
        needs=frozenset({"gradients"}),
        sign="signed",
        # 60 steps of 0.033 cover the path of 100 steps of 0.02 (the steps are normalised) in 60 % of the
        # passes: on the sample 3D classifier the final score is higher (10,100 against 7,000) and the run
        # 27 s instead of 45 s on a 2-core CPU (benchmarks/README.md, "Every method interactive")
        params=ascent_params(60, 0.033, 0.01, 0.1, 4),
        run=_class_model,
        stochastic=True,
        output="image",
    )
)
