"""An image array together with its physical geometry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import ImageError
from .geometry import Geometry


@dataclass
class ScanImage:
    """A 2D or 3D image in numpy order with its geometry.

    Parameters
    ----------
    array : numpy.ndarray
        ``(y, x)`` or ``(z, y, x)``, or with a leading channel axis
        ``(c, y, x)`` / ``(c, z, y, x)`` when ``channel_axis == 0``.
    geometry : Geometry
        Physical geometry of the spatial axes.
    channel_axis : int or None
        0 when the array has a leading channel axis, else None.
    name : str
        A label for provenance and captions (usually the file name).
    source : dict
        Where the image came from, for provenance: ``path`` (the file or
        DICOM folder read), ``series_uid`` (DICOM SeriesInstanceUID).
    warnings : list of str
        Decisions made while reading that a reader of the map should know
        (e.g. a zero spacing in the header read as 1 mm); they go into the
        provenance of every map made from this image.
    """

    array: np.ndarray
    geometry: Geometry
    channel_axis: int | None = None
    name: str = "image"
    source: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes only."""
        return tuple(self.array.shape[1:] if self.channel_axis == 0 else self.array.shape)

    @property
    def channels(self) -> int:
        """Number of channels (1 when there is no channel axis)."""
        return int(self.array.shape[0]) if self.channel_axis == 0 else 1

    def channels_first(self) -> np.ndarray:
        """The array as ``(c, *spatial)`` float32."""
        arr = self.array if self.channel_axis == 0 else self.array[None]
        return np.asarray(arr, dtype=np.float32)

    def to_sitk(self, channel: int = 0) -> sitk.Image:
        """One channel as a SimpleITK image with this geometry."""
        img = sitk.GetImageFromArray(self.channels_first()[channel])
        return self.geometry.apply_to(img)


def validate_scan(scan: ScanImage) -> None:
    """Check shape and values; raise :class:`ImageError` naming the problem and fix."""
    shape = scan.spatial_shape
    if len(shape) not in (2, 3):
        raise ImageError(
            f"The image has {len(shape)} spatial axes.", "Pass a 2D (y, x) or 3D (z, y, x) image."
        )
    if scan.geometry.dim != len(shape):
        raise ImageError(
            f"The image has {len(shape)} spatial axes but its geometry has {scan.geometry.dim}.",
            "Give a geometry with one origin/spacing entry per spatial axis.",
        )
    if np.iscomplexobj(scan.array):
        raise ImageError(
            f"The image holds complex numbers ({scan.array.dtype}); a model takes real intensities, "
            "and dropping the imaginary part would explain a different image.",
            "Pass the magnitude (numpy.abs(image)) or the real or imaginary part, whichever the model was trained on.",
        )
    if min(shape) < 1 or scan.array.size == 0:
        raise ImageError(f"The image is empty (shape {scan.array.shape}).", "Load a non-empty image.")
    check_direction(scan.geometry)
    if np.issubdtype(scan.array.dtype, np.floating) and scan.array.dtype.itemsize > 4:
        limit = float(np.finfo(np.float32).max)
        big = np.abs(scan.array) > limit
        if big.any():
            raise ImageError(
                f"The image has {int(big.sum())} value(s) beyond the float32 range (largest magnitude "
                f"{float(np.nanmax(np.abs(scan.array))):.3g}); models compute in float32, where they become infinite.",
                "Rescale the image to its physical units (e.g. Hounsfield units or normalised MRI intensities) "
                "before explaining.",
            )
    if np.issubdtype(scan.array.dtype, np.floating):
        bad = ~np.isfinite(scan.array)
        if bad.any():
            raise ImageError(
                f"The image has {int(bad.sum())} NaN or infinite voxel(s) (first at index "
                f"{tuple(int(i) for i in np.argwhere(bad)[0])}).",
                "Replace them before explaining, e.g. numpy.nan_to_num(image, nan=background_value).",
            )


#: Largest deviation of ``D^T D`` from the identity accepted as orthonormal
#: (NIfTI stores directions in float32: about 1e-6 of rounding).
ORTHONORMAL_TOLERANCE = 1e-4


def check_direction(geometry: Geometry) -> None:
    """Refuse a sheared or non-orthonormal direction matrix, naming the fix.

    Orientation codes, the model-space resampling and the hosts' display all
    assume orthonormal axes; a sheared grid would be explained on the wrong
    voxels without a word.

    Raises
    ------
    ImageError
        ``D^T D`` differs from the identity by more than :data:`ORTHONORMAL_TOLERANCE`.
    """
    d = geometry.direction_matrix
    deviation = float(np.abs(d.T @ d - np.eye(geometry.dim)).max())
    if not np.isfinite(deviation) or deviation > ORTHONORMAL_TOLERANCE:
        raise ImageError(
            f"The image's direction matrix is not orthonormal (sheared or scaled axes; |D^T D - I| = {deviation:.3g}), "
            f"so its voxels do not lie on a rectangular grid: direction {np.round(d, 4).tolist()}.",
            "Resample the scan onto a rectangular grid first (e.g. SimpleITK.Resample with an orthonormal direction, "
            "or 3D Slicer's Resample Scalar Volume / Harden Transform), or fix the header's direction.",
        )
