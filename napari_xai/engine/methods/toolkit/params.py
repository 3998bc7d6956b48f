"""Parameters many methods take, declared once.

A method lists these in its ``MethodSpec.params`` beside its own, so the
same parameter has the same name, type, bounds and help wherever it appears.
"""

from __future__ import annotations

from ...registry import ParamSpec
from .perturbation import BASELINES

#: The constant references of :func:`.context.baseline_value` (model-space intensities).
CONSTANT_BASELINES = ("zeros", "min", "mean")


def seed_param(of: str) -> ParamSpec:
    """``seed``: the seed of a stochastic method's random draws (``of``: what is drawn, e.g. "the random masks")."""
    return ParamSpec("seed", int, 0, f"Random seed of {of} (same seed, same map).", min=0, max=2**31 - 1)


def baseline_param(what: str, blur: bool = False) -> ParamSpec:
    """``baseline``: the reference a perturbed or path-start voxel takes; ``blur`` adds the blurred copy (see ``BLUR_SIGMA``)."""
    if blur:
        return ParamSpec("baseline", str, "zeros", f"{what}: zeros, the scan's min or mean (model-space intensities), or a blurred copy.", choices=BASELINES)
    return ParamSpec("baseline", str, "zeros", f"{what}: zeros, or the scan's minimum or mean (model-space intensities).", choices=CONSTANT_BASELINES)


def blur_sigma_param(default: float, help: str, minimum: float = 0.0, maximum: float = 1000.0) -> ParamSpec:
    """``blur_sigma``: a Gaussian sigma in voxels of the model grid."""
    return ParamSpec("blur_sigma", float, default, help, min=minimum, max=maximum)


#: ``blur_sigma`` of a ``baseline_param(..., blur=True)``.
BLUR_SIGMA = blur_sigma_param(5.0, "Baseline 'blur': Gaussian sigma in voxels of the model grid.")

#: The display switch of a signed map (``MethodSpec.sign_param``).
ABSOLUTE = ParamSpec("absolute", bool, False, "Absolute value of the map; off keeps its sign.")

#: The ReLU the class activation papers apply to their map (``MethodSpec.sign_param``).
RELU = ParamSpec("relu", bool, True, "Keep only positive evidence, as in the paper; off keeps the signed map.")
