"""What LIME and KernelSHAP share: supervoxel parameters, batched evaluation of coalitions, painting.

Both explain the target score with a linear model over binary "interpretable"
features, one per supervoxel: a coalition ``z`` in {0, 1}^M keeps the
supervoxels with ``z = 1`` and replaces the others by the reference image.
They differ only in how coalitions are drawn and weighted and how the linear
model is fitted (see :mod:`.lime` and :mod:`.kernel_shap`).
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch

from ..budget import batches
from ..progress import Progress
from ..registry import ParamSpec
from ._context import MethodContext
from ._perturb import BASELINES, blend, reference
from ._supervoxels import SEGMENTATIONS, supervoxels

#: Parameters of the supervoxels and the reference image (defaults: see each help).
SUPERVOXEL_PARAMS = (
    ParamSpec("segmentation", str, "slic", "Supervoxels: slic (intensity-aware over-segmentation) or grid (regular cells).", choices=SEGMENTATIONS),
    ParamSpec("cell", int, 8, "Grid segmentation: cell edge in voxels of the model grid (or one per axis, z y x).", min=1, max=512, per_axis=True),
    # 50, not scikit-image's 100: the samples a stable fit needs grow with the supervoxels, one forward pass each
    ParamSpec("n_segments", int, 50, "SLIC: approximate number of supervoxels (scikit-image: 100); more needs more samples.", min=2, max=20000),
    ParamSpec("compactness", float, 0.1, "SLIC: weight of position against intensity (intensities rescaled to [0, 1]); higher gives more cubic supervoxels.", min=1e-4, max=100.0),
    ParamSpec("baseline", str, "zeros", "What a switched-off supervoxel becomes: zeros, the scan's min or mean, or a blurred copy.", choices=BASELINES),
    ParamSpec("blur_sigma", float, 5.0, "Baseline 'blur': Gaussian sigma in voxels of the model grid.", min=0.0, max=1000.0),
)


def prepare(ctx: MethodContext, params: dict[str, Any], method: str) -> Generator[Progress, None, tuple[torch.Tensor, torch.Tensor, int]]:
    """Supervoxel labels (a long tensor on the model's device), the reference image and the feature count."""
    labels = yield from supervoxels(ctx.x[0].detach().cpu().numpy(), params, method)
    m = int(labels.max()) + 1
    yield Progress(0, 0, f"{method}: {m} supervoxels")
    ref = reference(ctx.x, params["baseline"], params["blur_sigma"])
    return torch.as_tensor(labels, device=ctx.x.device), ref, m


def evaluate(
    ctx: MethodContext, labels: torch.Tensor, ref: torch.Tensor, coalitions: np.ndarray, title: str
) -> Generator[Progress, None, np.ndarray]:
    """Target scores ``(n,)`` of the perturbed inputs for coalitions ``(n, M)``, batch by batch under the budget."""
    n = len(coalitions)
    y = np.empty(n, dtype=np.float64)
    planner = ctx.planner(gradients=False)  # sizing the batches may run the model once
    yield Progress(0, n, f"{title}: 0/{n} perturbed samples")
    for lo, hi in batches(n, planner):
        z = torch.as_tensor(coalitions[lo:hi], device=ctx.x.device)
        keep = z[:, labels]  # (b, *spatial): each voxel takes its supervoxel's switch
        y[lo:hi] = ctx.scores(blend(ctx.x, ref, keep)).double().cpu().numpy()
        yield Progress(hi, n, f"{title}: {hi}/{n} perturbed samples")
    return y


def paint(coefficients: np.ndarray, labels: torch.Tensor) -> np.ndarray:
    """Each voxel gets its supervoxel's coefficient (spatial shape, float32)."""
    return np.asarray(coefficients, dtype=np.float32)[labels.cpu().numpy()]
