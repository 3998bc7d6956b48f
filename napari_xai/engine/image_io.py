"""Reading scans and writing maps with their exact geometry (SimpleITK)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ImageError
from .geometry import Geometry
from .image import ScanImage
from .nifti_check import check_nifti

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


def read_image(path: str | os.PathLike, series_id: str | None = None, *, series_uid: str | None = None) -> ScanImage:
    """Read a NIfTI, NRRD, MHA file or a DICOM series folder with its geometry.

    Parameters
    ----------
    path : str or PathLike
        A file, or a folder holding a DICOM series.
    series_uid : str, optional
        SeriesInstanceUID of the series to read when the folder holds several.
        Default: the one with the most slices, recorded in the scan's
        ``source`` and, when there was a choice, in a visible warning that
        lists the others.
    series_id : str, optional
        Older name of ``series_uid``.

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
    source: dict[str, str] = {"path": str(p.resolve())}
    warnings: list[str] = []
    try:
        if p.is_dir():
            image = _read_dicom_series(p, series_uid or series_id, source, warnings)
        else:
            if has_image_extension(p, (".nii", ".nii.gz")):
                warnings += check_nifti(p)
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
    return ScanImage(
        arr, Geometry.from_sitk(image), 0 if comps > 1 else None, name=scan_name(p), source=source, warnings=warnings
    )


def scan_name(p: str | os.PathLike) -> str:
    """The scan's name: the file name without its image extension (a DICOM folder's name as it is)."""
    p = Path(p)
    name = p.name
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _read_dicom_series(folder: Path, series_uid: str | None, source: dict[str, str], warnings: list[str]) -> sitk.Image:
    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not ids:
        raise ImageError(f"{folder} holds no DICOM series.", "Point to a folder of DICOM slices of one series.")
    files = {uid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) for uid in ids}
    listing = "; ".join(f"{uid} ({len(files[uid])} slices)" for uid in ids)
    if series_uid is None:
        series_uid = max(ids, key=lambda uid: len(files[uid]))
        if len(ids) > 1:
            warnings.append(
                f"{folder.name} holds {len(ids)} DICOM series; read {series_uid} ({len(files[series_uid])} slices), "
                f"the one with the most slices. All series: {listing}. Pick another with series_uid=..."
            )
    elif series_uid not in ids:
        raise ImageError(
            f"Series {series_uid} is not in {folder}; it holds {len(ids)} series: {listing}.",
            "Pass one of these SeriesInstanceUIDs as series_uid.",
        )
    source["series_uid"] = series_uid
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files[series_uid])
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
