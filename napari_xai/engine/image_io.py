"""Reading scans and writing maps with their exact geometry (SimpleITK)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ImageError
from .geometry import Geometry
from .image import ScanImage

#: Extensions read as single files (lower case, longest first).
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
#: Extensions a map can be written to.
WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")


def has_image_extension(path: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> bool:
    """True if ``path`` ends with one of ``extensions`` (case-insensitive)."""
    return str(path).lower().endswith(extensions)


def is_dicom_series_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding at least one DICOM series."""
    p = Path(path)
    return p.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p)))


def read_image(path: str | os.PathLike, series_id: str | None = None) -> ScanImage:
    """Read a NIfTI, NRRD, MHA file or a DICOM series folder with its geometry.

    Parameters
    ----------
    path : str or PathLike
        A file, or a folder holding a DICOM series.
    series_id : str, optional
        Which series to read when the folder holds several (default: the one
        with the most slices).

    Returns
    -------
    ScanImage
        The array in ``(z, y, x)`` order (channels first for vector images)
        with origin, spacing and direction.

    Raises
    ------
    ImageError
        The path does not exist or cannot be read as an image.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"No file or folder at {p}.", "Check the path.")
    try:
        if p.is_dir():
            image = _read_dicom_series(p, series_id)
        else:
            image = sitk.ReadImage(str(p))
    except ImageError:
        raise
    except RuntimeError as err:
        raise ImageError(
            f"{p.name} could not be read as an image ({str(err).strip().splitlines()[-1]}).",
            "Use a NIfTI (.nii/.nii.gz), NRRD, MHA file or a folder holding one DICOM series.",
        ) from err
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() not in (2, 3):
        raise ImageError(
            f"{p.name} has {image.GetDimension()} dimensions (size {image.GetSize()}).",
            "Pick one 3D volume (e.g. one time point) and save it on its own.",
        )
    comps = image.GetNumberOfComponentsPerPixel()
    arr = sitk.GetArrayFromImage(image)
    if comps > 1:
        arr = np.moveaxis(arr, -1, 0)
    # 3D files with a single slice stay 3D: their geometry is 3D.
    return ScanImage(arr, Geometry.from_sitk(image), 0 if comps > 1 else None, name=_image_name(p))


def _image_name(p: Path) -> str:
    name = p.name
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _read_dicom_series(folder: Path, series_id: str | None) -> sitk.Image:
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise ImageError(f"{folder} holds no DICOM series.", "Point to a folder of DICOM slices of one series.")
    if series_id is None:
        series_id = max(ids, key=lambda s: len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s)))
    elif series_id not in ids:
        raise ImageError(f"Series {series_id} is not in {folder}.", f"Choose one of {list(ids)}.")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id))
    return reader.Execute()


def write_image(
    values: np.ndarray, geometry: Geometry, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write an array on a grid with exactly the given geometry.

    Parameters
    ----------
    values : numpy.ndarray
        ``(y, x)`` or ``(z, y, x)``.
    geometry : Geometry
        Origin, spacing and direction to write.
    path : str or PathLike
        ``.nii``, ``.nii.gz``, ``.nrrd`` or ``.mha``.
    metadata : dict, optional
        Key/value strings stored in the header where the format allows (NRRD, MHA).

    Returns
    -------
    Path
        The written path.
    """
    p = Path(path)
    if not has_image_extension(p, WRITE_EXTENSIONS):
        raise ImageError(
            f"Cannot write {p.name}: unknown image format.", f"Use one of {', '.join(WRITE_EXTENSIONS)}."
        )
    img = geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(values)))
    if metadata and not has_image_extension(p, (".nii", ".nii.gz")):
        for key, value in metadata.items():
            img.SetMetaData(key, value)
    p.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(p), useCompression=True)
    return p
