"""An image array together with its physical geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
    """

    array: np.ndarray
    geometry: Geometry
    channel_axis: int | None = None
    name: str = "image"

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


def as_scan(image: Any, channel_axis: int | None = None, name: str | None = None) -> ScanImage:
    """Coerce what a user passes as ``image`` into a validated :class:`ScanImage`.

    Parameters
    ----------
    image : ScanImage, SimpleITK.Image, numpy.ndarray, str or Path
        A numpy array gets identity geometry (1 mm voxels at the origin); a
        path is read with :func:`napari_xai.engine.read_image`.
    channel_axis : int or None
        For numpy input: 0 if the array has a leading channel axis, or -1 /
        last-axis channels (moved to the front). A 4D array is channels-first.
    name : str, optional
        Overrides the image's name.

    Returns
    -------
    ScanImage

    Raises
    ------
    ImageError
        Wrong dimensionality, empty array, or NaN/Inf voxels.
    """
    if isinstance(image, (str, Path)):
        from .image_io import read_image

        scan = read_image(image)
    elif isinstance(image, ScanImage):
        scan = image
    elif isinstance(image, sitk.Image):
        comps = image.GetNumberOfComponentsPerPixel()
        arr = sitk.GetArrayFromImage(image)
        if comps > 1:
            arr = np.moveaxis(arr, -1, 0)
        scan = ScanImage(arr, Geometry.from_sitk(image), 0 if comps > 1 else None)
    else:
        arr = np.asarray(image)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ImageError(
                f"The image has dtype {arr.dtype}, not numbers.",
                "Pass a numeric numpy array (y, x) or (z, y, x), or a path to a NIfTI/NRRD/MHA file.",
            )
        if channel_axis is not None and channel_axis not in (0,):
            arr = np.moveaxis(arr, channel_axis, 0)
            channel_axis = 0
        if channel_axis is None and arr.ndim == 4:
            channel_axis = 0
        spatial = arr.ndim - (1 if channel_axis == 0 else 0)
        if spatial not in (2, 3):
            raise ImageError(
                f"The image has shape {arr.shape}: {spatial} spatial axes, but only 2D (y, x) or 3D (z, y, x) are supported.",
                "Pass one 2D slice or one 3D volume; give channel_axis=0 for a leading channel axis; "
                "for a time series pick one time point first.",
            )
        scan = ScanImage(arr, Geometry.identity(spatial), channel_axis)
    if name is not None:
        scan.name = name
    validate_scan(scan)
    return scan


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
    if min(shape) < 1 or scan.array.size == 0:
        raise ImageError(f"The image is empty (shape {scan.array.shape}).", "Load a non-empty image.")
    if np.issubdtype(scan.array.dtype, np.floating):
        bad = ~np.isfinite(scan.array)
        if bad.any():
            raise ImageError(
                f"The image has {int(bad.sum())} NaN or infinite voxel(s) (first at index "
                f"{tuple(int(i) for i in np.argwhere(bad)[0])}).",
                "Replace them before explaining, e.g. numpy.nan_to_num(image, nan=background_value).",
            )
