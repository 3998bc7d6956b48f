"""Whatever a caller gives as an image (an array, a SimpleITK image, a ScanImage, a path) as a checked :class:`ScanImage`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import ImageError
from .geometry import Geometry
from .image import ScanImage, validate_scan
from .image_io import read_image


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
        if channel_axis is not None and (
            not isinstance(channel_axis, (int, np.integer)) or isinstance(channel_axis, bool) or not -arr.ndim <= channel_axis < arr.ndim
        ):
            raise ImageError(
                f"channel_axis is {channel_axis!r}, but the image has shape {arr.shape} (axes 0 to {arr.ndim - 1}, or -1).",
                "Give the index of the channel axis as an integer (0 for channels first, -1 for channels last), "
                "or leave it unset for a single-channel image.",
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
