"""Where a map's evidence lies relative to a mask: relevance mass, the pointing game, relevance rank.

Definitions as in Arras, Osman & Samek (Information Fusion 2022) and Zhang
et al. (ECCV 2016); they are a few lines of numpy on the scan's grid, so
they are written here rather than taken from Quantus (whose metrics expect a
batch of 2D images and a model wrapper); the tests compare them with
Quantus on 2D maps.
"""

from __future__ import annotations

from typing import Any

from ..image import ScanImage

import numpy as np
from scipy import ndimage


def scan_mask(value: Any, scan: ScanImage, what: str, error: type, empty_fix: str) -> np.ndarray:
    """A boolean mask (array or ScanImage, nonzero = in) checked against the scan's grid; ``error`` names the fix."""
    arr = np.asarray(value.array if isinstance(value, ScanImage) else value)
    if arr.shape != scan.spatial_shape:
        raise error(
            f"The {what} has shape {arr.shape} but the scan has {scan.spatial_shape}.",
            f"Give the {what} on the scan's own grid (a Labels layer or segment made from this image).",
        )
    mask = arr > 0
    if not mask.any():
        raise error(f"The {what} is empty.", empty_fix)
    return mask


def positive_mass_share(values: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the map's positive attribution inside ``mask`` (None when the map has none)."""
    pos = np.clip(np.asarray(values, dtype=np.float64), 0, None)
    total = float(pos.sum())
    return float(pos[mask].sum()) / total if total > 0 else None


def maxima(values: np.ndarray) -> np.ndarray:
    """bool: the voxels where the map takes its maximum."""
    return values == values.max()


def pointing_game(values: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...] | None = None, tolerance_mm: float = 0.0) -> bool:
    """A hit when a voxel where the map is maximal lies in ``mask``, or within ``tolerance_mm`` of it (``spacing``: mm per array axis)."""
    target = mask
    if tolerance_mm > 0:
        target = ndimage.distance_transform_edt(~mask, sampling=spacing) <= tolerance_mm
    return bool((maxima(values) & target).any())


def top_voxels(values: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the ``k`` highest voxels (descending; ties in index order)."""
    flat = np.asarray(values).ravel()
    k = int(min(max(k, 1), flat.size))
    part = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    return part[np.lexsort((part, -flat[part]))]


def relevance_rank(values: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the map's ``K`` highest voxels inside the mask, ``K`` = the mask's size (None for an empty mask)."""
    k = int(mask.sum())
    if k == 0:
        return None
    return float(mask.ravel()[top_voxels(values, k)].mean())


def localisation(values: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], tolerance_mm: float = 0.0) -> dict[str, Any]:
    """``mass_in_mask``, ``pointing_game`` and ``relevance_rank`` of a map against a mask on the same grid.

    Parameters
    ----------
    values : numpy.ndarray
        The map on the scan grid.
    mask : numpy.ndarray
        bool, same shape (a lesion, a region).
    spacing : tuple of float
        Voxel size in mm, in array axis order, for the pointing game's tolerance.
    tolerance_mm : float
        The pointing game counts a hit within this distance of the mask (Zhang et al. used 15 pixels).

    Every key is None for a map without a positive value.
    """
    if not (values > 0).any():  # no positive evidence: no peak, no ranking to score
        return {"mass_in_mask": None, "pointing_game": None, "relevance_rank": None}
    return {
        "mass_in_mask": positive_mass_share(values, mask),
        "pointing_game": pointing_game(values, mask, spacing, tolerance_mm),
        "relevance_rank": relevance_rank(values, mask),
    }
