"""Shared pieces of the perturbation family: reference images, blending, per-axis parameters.

A perturbation method replaces part of the input by a *reference*: a
constant (zeros, the scan's minimum or mean, in model-space intensities), a
blurred copy of the input, or (for the mask-optimising methods) a noisy copy.
Masks here follow one convention: ``keep = 1`` leaves the voxel as it is,
``keep = 0`` replaces it by the reference.
"""

from __future__ import annotations

from typing import Any

import torch
from scipy import ndimage

from ..errors import MethodError
from ._context import baseline_value

#: Reference kinds for methods that switch regions off (LIME, KernelSHAP, RISE, HiPe).
BASELINES = ("zeros", "min", "mean", "blur")
#: Perturbation operators of the mask-optimising methods (Fong & Vedaldi).
OPERATORS = ("blur", "noise", "constant")


def per_axis(value: Any, dim: int, name: str, method: str) -> tuple:
    """A scalar or a per-axis tuple as a tuple of ``dim`` values (z, y, x order)."""
    out = tuple(value) if isinstance(value, (tuple, list)) else (value,) * dim
    if len(out) != dim:
        raise MethodError(f"{method}: {name} {out} has {len(out)} entries for a {dim}D image.", f"Give one value or {dim} values (z, y, x).")
    return out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` ``(N, C, *spatial)`` blurred over its spatial axes by a Gaussian of ``sigma`` voxels.

    Done once per run with scipy (any sigma, even larger than the image,
    with nearest-edge extension), then moved back to ``x``'s device.
    """
    if sigma <= 0:
        return x.clone()
    arr = x.detach().float().cpu().numpy()
    out = ndimage.gaussian_filter(arr, sigma=(0, 0) + (float(sigma),) * (x.ndim - 2), mode="nearest")
    return torch.as_tensor(out, dtype=x.dtype, device=x.device)


def reference(x: torch.Tensor, kind: str, blur_sigma: float) -> torch.Tensor:
    """The image that switched-off voxels take, shaped like ``x`` ``(1, C, *spatial)``.

    Parameters
    ----------
    x : torch.Tensor
        Model-space input.
    kind : str
        ``zeros``, ``min``, ``mean`` (constants of the model-space input) or
        ``blur`` (the input blurred with a Gaussian of ``blur_sigma`` voxels).
    blur_sigma : float
        Gaussian sigma for ``blur``, in voxels of the model grid.
    """
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    return torch.full_like(x, baseline_value(x, kind))


def blend(x: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x * keep + ref * (1 - keep)`` for a batch of masks ``keep`` ``(N, *spatial)``.

    ``x`` and ``ref`` are ``(1, C, *spatial)``; the mask is shared by all channels.
    """
    k = keep.to(dtype=x.dtype, device=x.device).unsqueeze(1)
    return ref + k * (x - ref)
