"""The anatomy (body) mask of a scan, given or derived, and where a map's evidence lies relative to it."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ImageError
from ..image import ScanImage
from .definitions import TOP_FRACTION, shortcut_rule
from .localisation import pointing_game, positive_mass_share, scan_mask, top_voxels


def derive_anatomy(scan: ScanImage) -> np.ndarray:
    """The body on a scan, from the scan itself: threshold, largest component, holes filled.

    Steps (documented in :data:`~napari_xai.engine.metrics.definitions.METRICS`):
    Otsu's threshold on the first channel (SimpleITK's ``OtsuThreshold``,
    the voxels above it), the largest connected component (face-connected;
    separate blobs such as a marker, a table or burned-in text drop out),
    holes filled in 3D and then slice by slice along the first axis (so
    that dark ventricles, sinuses or lungs enclosed in a slice count as
    body).

    Parameters
    ----------
    scan : ScanImage
        2D or 3D scan.

    Returns
    -------
    numpy.ndarray
        bool, on the scan's grid.

    Raises
    ------
    ImageError
        The scan is constant, so no threshold separates body from background.
    """
    arr = scan.channels_first()[0]
    if float(arr.max()) <= float(arr.min()):
        raise ImageError(
            "The scan is constant, so no anatomy can be derived from it.",
            "Give the anatomy mask yourself (anatomy=<boolean array on the scan's grid>).",
        )
    img = sitk.GetImageFromArray(arr)
    foreground = sitk.OtsuThreshold(img, 0, 1, 256)  # inside (<= threshold) -> 0, outside (above) -> 1
    components = sitk.RelabelComponent(sitk.ConnectedComponent(foreground, False), sortByObjectSize=True)
    body = sitk.GetArrayFromImage(components) == 1
    body = ndimage.binary_fill_holes(body)
    if body.ndim == 3:
        for k in range(body.shape[0]):
            body[k] = ndimage.binary_fill_holes(body[k])
    return body


def as_anatomy(anatomy: Any, scan: ScanImage) -> tuple[np.ndarray, str]:
    """The anatomy mask to use, and where it came from (``given`` or ``derived``).

    Raises
    ------
    ImageError
        A given mask has another shape than the scan, or is empty.
    """
    if anatomy is None:
        return derive_anatomy(scan), "derived"
    return scan_mask(anatomy, scan, "anatomy mask", ImageError, "Give a mask of the body, or leave it unset to derive it from the scan."), "given"


def outside_anatomy(values: np.ndarray, anatomy: np.ndarray, top_fraction: float = TOP_FRACTION) -> dict[str, Any]:
    """``outside_anatomy_share``, ``_peak``, ``_top_share`` and ``shortcut_flag`` of a map.

    Parameters
    ----------
    values : numpy.ndarray
        The map on the scan grid.
    anatomy : numpy.ndarray
        bool, same shape.
    top_fraction : float
        Fraction of voxels (the highest) whose location the top share reports.

    Every key is None for a map without a positive value.
    """
    if not (values > 0).any():  # no positive evidence (e.g. a ReLU'd CAM that is zero everywhere): nothing to locate
        return {"outside_anatomy_share": None, "outside_anatomy_peak": None, "outside_anatomy_top_share": None, "shortcut_flag": None}
    outside = ~anatomy
    share = positive_mass_share(values, outside)
    peak = not pointing_game(values, anatomy)  # no voxel where the map is maximal lies in the body
    top = top_voxels(values, max(1, int(round(top_fraction * values.size))))
    top_share = float(outside.ravel()[top].mean())
    return {
        "outside_anatomy_share": share,
        "outside_anatomy_peak": peak,
        "outside_anatomy_top_share": top_share,
        "shortcut_flag": shortcut_rule(peak, top_share),
    }
