"""DeepLIFT (rescale rule) and DeepLIFT-SHAP.

- **DeepLIFT** (Shrikumar, Greenside & Kundaje 2017, review ref. [44]):
  contributions of each voxel's difference from a reference image, propagated
  with "multipliers": through linear layers (convolutions, BatchNorm, pooling,
  linear) the ordinary chain rule, through every element-wise non-linearity
  the *rescale* rule ``(f(x) - f(x0)) / (x - x0)`` (the gradient where the two
  coincide). The map is ``(x - x0) * multiplier`` and sums to
  ``f(x) - f(x0)`` (summation-to-delta); every run measures that and records
  it in ``checks["completeness"]``.
- **DeepLIFT-SHAP** (Lundberg & Lee 2017, review ref. [37]): DeepLIFT averaged
  over a distribution of references, an approximation of SHAP values. The
  references here are seeded: zeros, blurred copies of the scan (Gaussian,
  sigma 1-4 voxels) and Gaussian noise with the scan's mean and standard
  deviation. The map sums to ``f(x) - mean_i f(x0_i)``.

Signed: positive where the difference from the reference raises the target
score.

Hand-written rather than Captum's ``DeepLift`` / ``DeepLiftShap``: Captum
concatenates input and references into one batch (twice the memory, and it
fails for exported models that take a batch of one) and hooks the user's own
modules. Here the references run first (their non-linearity inputs and
outputs are recorded in call order), then the scan runs on a private copy of
the model whose non-linearities back-propagate the rescale multiplier;
references are batched under the memory budget, with progress between
batches. Non-linearities must be ``nn.Module`` layers (a functional
``F.relu`` keeps its gradient, and the completeness check then shows the
gap). Max pooling gets DeepLIFT's max-pool rule (the output difference goes
to the winning inputs, as in Captum), so completeness holds through it. Tests check both methods against Captum (correlation >= 0.99,
in practice exact) and completeness.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch

from ...budget import batches
from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from .modified_backward import deeplift_multipliers
from ..toolkit.context import MethodContext, baseline_value, record_completeness
from ..toolkit.model_copy import copy_model
from ..toolkit.params import baseline_param, seed_param
from ..toolkit.perturbation import gaussian_blur

DISTRIBUTIONS = ("mixed", "blurred", "noise", "zeros")


def reference_distribution(x: torch.Tensor, kind: str, n: int, seed: int) -> torch.Tensor:
    """``n`` seeded references ``(n, C, *spatial)`` for a batch-of-one input ``x``.

    ``mixed`` cycles zeros, blurred, noise; reference ``i`` uses a generator seeded with ``(seed, i)``.
    """
    arr = x[0].detach().cpu().numpy().astype(np.float64)
    mean, std = float(arr.mean()), float(arr.std())
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        k = ("zeros", "blurred", "noise")[i % 3] if kind == "mixed" else kind
        if k == "zeros":
            ref = np.zeros_like(arr)
        elif k == "blurred":
            sigma = rng.uniform(1.0, 4.0)
            ref = gaussian_blur(torch.from_numpy(arr[None]), sigma)[0].numpy()
        else:
            ref = rng.normal(mean, std if std > 0 else 1.0, size=arr.shape)
        out.append(ref)
    return torch.from_numpy(np.stack(out).astype(np.float32)).to(device=x.device, dtype=x.dtype)


def _deeplift(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    yield Progress(0, 1, "DeepLIFT: reference and backward pass")
    clone = copy_model(ctx, "DeepLIFT")
    ref = torch.full_like(ctx.x, baseline_value(ctx.x, params["baseline"]))
    mult, _, ref_scores = yield from deeplift_multipliers(ctx, clone, ctx.x, ref, Progress(0, 1, "DeepLIFT: reference recorded, backward pass"))
    attribution = ((ctx.x - ref) * mult)[0].cpu().numpy()
    record_completeness(ctx, attribution, float(ref_scores[0]))
    yield Progress(1, 1, "DeepLIFT: done")
    return attribution


def _deeplift_shap(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    n = params["n_baselines"]
    clone = copy_model(ctx, "DeepLIFT-SHAP")
    refs = reference_distribution(ctx.x, params["distribution"], n, params["seed"])
    total = torch.zeros_like(ctx.x[0], dtype=torch.float64)
    ref_total = 0.0
    planner = ctx.planner(gradients=True)
    yield Progress(0, n, f"DeepLIFT-SHAP: {n} references")
    for lo, hi in batches(n, planner):
        rb = refs[lo:hi]
        between = Progress(lo, n, f"DeepLIFT-SHAP: {lo}/{n} references, {hi - lo} recorded")
        mult, _, ref_scores = yield from deeplift_multipliers(ctx, clone, ctx.x.expand(hi - lo, *ctx.x.shape[1:]), rb, between)
        total += ((ctx.x - rb) * mult).double().sum(dim=0)
        ref_total += float(ref_scores.double().sum())
        yield Progress(hi, n, f"DeepLIFT-SHAP: {hi}/{n} references")
    attribution = (total / n).float().cpu().numpy()
    record_completeness(ctx, attribution, ref_total / n)
    return attribution


DEEPLIFT = register_method(
    MethodSpec(
        name="deeplift",
        title="DeepLIFT",
        family="backpropagation",
        reference="Shrikumar A, Greenside P, Kundaje A. Learning Important Features Through Propagating Activation "
        "Differences. ICML 2017 (review ref. [44]); rescale rule.",
        summary="Differences from a reference image propagated with the rescale rule; sums to f(scan) - f(reference). One pass.",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=(
            baseline_param("Reference image"),
        ),
        run=_deeplift,
    )
)

DEEPLIFT_SHAP = register_method(
    MethodSpec(
        name="deeplift_shap",
        title="DeepLIFT-SHAP",
        family="backpropagation",
        reference="Lundberg SM, Lee SI. A Unified Approach to Interpreting Model Predictions. NeurIPS 2017 (review ref. [37]); "
        "DeepLIFT of Shrikumar et al. 2017 (review ref. [44]) averaged over references.",
        summary="DeepLIFT averaged over seeded references (zeros, blurred scans, noise): approximate SHAP values.",
        needs=frozenset({"gradients"}),
        sign="signed",
        params=(
            ParamSpec("n_baselines", int, 9, "References averaged over.", min=1, max=500),
            ParamSpec("distribution", str, "mixed", "References: mixed (zeros, blurred scans, noise in turn), or one kind.", choices=DISTRIBUTIONS),
            seed_param("the blurred and noise references"),
        ),
        run=_deeplift_shap,
        stochastic=True,
    )
)
