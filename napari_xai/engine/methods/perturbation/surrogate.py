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

from ...progress import Progress
from ...registry import ParamSpec
from .supervoxels import SEGMENTATIONS, supervoxels
from ..toolkit.context import MethodContext
from ..toolkit.params import BLUR_SIGMA, baseline_param
from ..toolkit.perturbation import blend, reference, scored_batches

#: Parameters of the supervoxels and the reference image (defaults: see each help).
SUPERVOXEL_PARAMS = (
    ParamSpec("segmentation", str, "slic", "Supervoxels: slic (intensity-aware over-segmentation) or grid (regular cells).", choices=SEGMENTATIONS),
    ParamSpec("cell", int, 8, "Grid segmentation: cell edge in voxels of the model grid (or one per axis, z y x).", min=1, max=512, per_axis=True),
    # 50, not scikit-image's 100: the samples a stable fit needs grow with the supervoxels, one forward pass each
    ParamSpec("n_segments", int, 50, "SLIC: approximate number of supervoxels (scikit-image: 100); more needs more samples.", min=2, max=20000),
    ParamSpec("compactness", float, 0.1, "SLIC: weight of position against intensity (intensities rescaled to [0, 1]); higher gives more cubic supervoxels.", min=1e-4, max=100.0),
    baseline_param("What a switched-off supervoxel becomes", blur=True),
    BLUR_SIGMA,
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

    def perturbed(lo: int, hi: int) -> torch.Tensor:
        z = torch.as_tensor(coalitions[lo:hi], device=ctx.x.device)
        return blend(ctx.x, ref, z[:, labels])  # each voxel takes its supervoxel's switch

    for lo, hi, scores in scored_batches(ctx, n, perturbed, planner):
        y[lo:hi] = scores.double().cpu().numpy()
        yield Progress(hi, n, f"{title}: {hi}/{n} perturbed samples")
    return y


def paint(coefficients: np.ndarray, labels: torch.Tensor) -> np.ndarray:
    """Each voxel gets its supervoxel's coefficient (spatial shape, float32)."""
    return np.asarray(coefficients, dtype=np.float32)[labels.cpu().numpy()]
