"""Maps a PACS can open: a DICOM Parametric Map of a map, and a Secondary Capture of its overlay.

Built with highdicom (the well-kept library for DICOM information object
definitions; the ``dicom`` extra). The Parametric Map holds the map's float32
values (Float Pixel Data) with a real-world value mapping, references every
source slice (per frame and per series), shares the source's study and frame
of reference, and copies each source slice's plane position, orientation and
pixel spacing, so a viewer places it exactly on the scan. The Secondary
Capture is the overlay as RGB, one instance per source slice, for viewers
without Parametric Map support.

SimpleITK's DICOM reader (GDCM) does not open Parametric Map instances
(neither float nor integer); :func:`read_parametric_map` reads one back
through highdicom onto a SimpleITK image with the series' geometry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from .attribution import Attribution
from .display import display_settings
from .errors import ImageError
from .geometry import Geometry
from .image import ScanImage
from .overlay import matplotlib_colormap, overlay_opacity

#: Private block that carries the provenance JSON in exported instances.
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "napari-xai"
PRIVATE_PROVENANCE_ELEMENT = 0x10
#: Tolerances for "this slice is on the map's grid": index units and direction cosines.
INDEX_TOLERANCE = 1e-3
DIRECTION_TOLERANCE = 1e-4


@dataclass
class DicomExport:
    """What :func:`write_parametric_map` wrote.

    Parameters
    ----------
    parametric_map : Path
        The Parametric Map instance (one multi-frame file).
    secondary_capture : list of Path
        Secondary Capture instances of the overlay, one per slice (empty unless asked for).
    """

    parametric_map: Path
    secondary_capture: list[Path] = field(default_factory=list)


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError as err:
        raise ImageError(
            "DICOM export needs highdicom, which is not installed.",
            "Install the DICOM extra: pip install 'napari-xai[dicom]'.",
        ) from err
    return highdicom


def source_series(folder: str | os.PathLike, geometry: Geometry, shape: Sequence[int]) -> list[Any]:
    """The DICOM slices in ``folder`` that lie on a grid, ordered by the array's slice index.

    Parameters
    ----------
    folder : str or PathLike
        A folder of DICOM files (other files are ignored).
    geometry : Geometry
        The map's (the scan's) geometry.
    shape : sequence of int
        The map's ``(z, y, x)`` shape.

    Returns
    -------
    list of pydicom.Dataset
        One per slice ``k = 0 .. z-1`` (pixel data not loaded).

    Raises
    ------
    ImageError
        No series in the folder is on that grid.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder} is not a folder of DICOM files.", "Give the folder of the DICOM series the scan was read from.")
    by_series: dict[str, list[Any]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        if "ImagePositionPatient" in ds and "SeriesInstanceUID" in ds:
            by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if len(shape) != 3:
        raise ImageError("DICOM export is for volumes; this map is 2D.", "Export the map as NIfTI or PNG instead.")
    for datasets in by_series.values():
        ordered = _on_grid(datasets, geometry, shape)
        if ordered is not None:
            return ordered
    raise ImageError(
        f"No DICOM series in {folder} lies on the map's grid ({len(by_series)} series looked at).",
        "Give the folder the scan was read from (the map must be on that series' own grid, not resampled).",
    )


def _on_grid(datasets: list[Any], geometry: Geometry, shape: Sequence[int]) -> list[Any] | None:
    nz, ny, nx = (int(s) for s in shape)
    if len(datasets) != nz:
        return None
    d = geometry.direction_matrix
    slots: list[Any] = [None] * nz
    for ds in datasets:
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        spacing = np.asarray(ds.PixelSpacing, dtype=float)  # (between rows, between columns) = (y, x)
        if (int(ds.Rows), int(ds.Columns)) != (ny, nx):
            return None
        if not (np.allclose(iop[:3], d[:, 0], atol=DIRECTION_TOLERANCE) and np.allclose(iop[3:], d[:, 1], atol=DIRECTION_TOLERANCE)):
            return None
        if not np.allclose(spacing[::-1], geometry.spacing[:2], rtol=1e-4):
            return None
        zyx = geometry.physical_to_index(np.asarray(ds.ImagePositionPatient, dtype=float))
        k = int(round(zyx[0]))
        if np.abs(zyx - (k, 0, 0)).max() > INDEX_TOLERANCE or not 0 <= k < nz or slots[k] is not None:
            return None
        slots[k] = ds
    return slots


def write_parametric_map(
    attribution: Attribution,
    source: str | os.PathLike,
    path: str | os.PathLike,
    *,
    scan: ScanImage | None = None,
    secondary_capture: bool = False,
    series_number: int = 901,
) -> DicomExport:
    """Write a map as a DICOM Parametric Map on its source series (and optionally the overlay as Secondary Capture).

    Parameters
    ----------
    attribution : Attribution
        A map computed on a scan read from a DICOM series (same grid).
    source : str or PathLike
        The folder of that series.
    path : str or PathLike
        The Parametric Map file to write (``.dcm``). Secondary Capture
        instances go in the folder ``<stem>_overlay/`` beside it.
    scan : ScanImage, optional
        The scan (for the Secondary Capture's grey levels); needed when
        ``secondary_capture`` is True.
    secondary_capture : bool
        Also write the overlay as RGB Secondary Capture instances.
    series_number : int
        Series number of the Parametric Map (the overlay series gets the next).

    Returns
    -------
    DicomExport

    Raises
    ------
    ImageError
        highdicom missing, a 2D map, or no series in ``source`` on the map's grid.
    """
    hd = _highdicom()
    values = np.asarray(attribution.values, dtype=np.float32)
    if values.ndim != 3:
        raise ImageError("DICOM export is for volumes; this map is 2D.", "Export the map as NIfTI or PNG instead.")
    if secondary_capture and scan is None:
        raise ImageError("The overlay capture needs the scan.", "Pass scan= (the image the map was computed on).")
    sources = source_series(source, attribution.geometry, values.shape)
    settings = display_settings(values, attribution.sign)
    hi = settings.contrast_limits[1]
    rwvm = hd.pm.RealWorldValueMapping(
        lut_label="attribution",
        lut_explanation=f"{attribution.method_title} attribution ({attribution.sign})"[:64],
        unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
        value_range=(float(values.min()), float(values.max())),
        slope=1.0,
        intercept=0.0,
    )
    window = hd.VOILUTTransformation(
        window_center=0.0 if attribution.sign == "signed" else hi / 2,
        window_width=2 * hi if attribution.sign == "signed" else hi,
        window_explanation="99.5th percentile of |map|",
    )
    pm = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=values,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="napari-xai",
        manufacturer_model_name="napari-xai",
        software_versions=attribution.package_version or __version__,
        device_serial_number="none",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[rwvm],
        voi_lut_transformations=[window],
        content_description=f"{attribution.method_title}: {attribution.target.get('description', '')}"[:64],
        content_label="SALIENCY",
    )
    pm.SeriesDescription = f"{attribution.method_title} map"[:64]
    _add_provenance(pm, attribution)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pm.save_as(p)
    written = DicomExport(p)
    if secondary_capture:
        written.secondary_capture = _write_overlay_capture(hd, scan, attribution, sources, p.with_name(f"{p.stem}_overlay"), series_number + 1)  # type: ignore[arg-type]
    return written


def overlay_rgb(base: np.ndarray, values: np.ndarray, sign: str, window: tuple[float, float], limit: float) -> np.ndarray:
    """The map blended over grey levels as uint8 RGB, with the overlay figures' colour map and transparency."""
    lo, hi = (-limit, limit) if sign == "signed" else (0.0, limit)
    grey = np.clip((base - window[0]) / max(window[1] - window[0], 1e-12), 0, 1)[..., None].repeat(3, axis=-1)
    colour = matplotlib_colormap(display_settings(values, sign).colormap)(np.clip((values - lo) / (hi - lo), 0, 1))[..., :3]
    alpha = overlay_opacity(values, hi)[..., None]
    return np.round(255 * ((1 - alpha) * grey + alpha * colour)).astype(np.uint8)


def _write_overlay_capture(hd: Any, scan: ScanImage, a: Attribution, sources: list[Any], folder: Path, series_number: int) -> list[Path]:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    base = scan.channels_first()[0]
    if base.shape != a.values.shape:
        raise ImageError(f"The scan has shape {base.shape} but the map has {a.values.shape}.", "Pass the scan the map was computed on.")
    window = tuple(float(v) for v in np.percentile(base, [0.5, 99.5]))
    limit = display_settings(a.values, a.sign).contrast_limits[1]
    orientation = _patient_orientation(a.geometry)
    series_uid = hd.UID()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, src in enumerate(sources):
        rgb = overlay_rgb(base[k], a.values[k], a.sign, window, limit)  # type: ignore[arg-type]
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=src,
            pixel_array=rgb,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=k + 1,
            manufacturer="napari-xai",
            pixel_spacing=tuple(float(v) for v in src.PixelSpacing),
            patient_orientation=orientation,
        )
        sc.SeriesDescription = f"{a.method_title} overlay"[:64]
        ref = Dataset()
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        sc.SourceImageSequence = DicomSequence([ref])
        sc.FrameOfReferenceUID = src.FrameOfReferenceUID
        _add_provenance(sc, a)
        out = folder / f"overlay_{k + 1:04d}.dcm"
        sc.save_as(out)
        paths.append(out)
    return paths


def _patient_orientation(geometry: Geometry) -> tuple[str, str]:
    """DICOM Patient Orientation of rows and columns: the dominant LPS letter of the x and y index axes."""
    letters = (("R", "L"), ("A", "P"), ("F", "H"))
    out = []
    for axis in (0, 1):
        v = geometry.direction_matrix[:, axis]
        i = int(np.argmax(np.abs(v)))
        out.append(letters[i][int(v[i] > 0)])
    return out[0], out[1]


def _add_provenance(ds: Any, a: Attribution) -> None:
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(PRIVATE_PROVENANCE_ELEMENT, "UT", json.dumps(a.provenance()))


def read_provenance(ds: Any) -> dict[str, Any]:
    """The provenance record an exported instance carries (``{}`` if none)."""
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        return json.loads(block[PRIVATE_PROVENANCE_ELEMENT].value)
    except KeyError:
        return {}


def read_parametric_map(path: str | os.PathLike) -> ScanImage:
    """Read a Parametric Map back as a float map on its grid (through highdicom; SimpleITK's GDCM reader refuses the IOD).

    Returns
    -------
    ScanImage
        ``(z, y, x)`` values with the geometry the frames' positions define;
        ``scan.to_sitk()`` gives the SimpleITK image.
    """
    import pydicom
    import SimpleITK as sitk

    hd = _highdicom()
    ds = pydicom.dcmread(path)
    pm = hd.pm.ParametricMap.from_dataset(ds)
    # highdicom's volume indexes (frame, row, column) and hands SimpleITK that as (x, y, z): permute to x = column
    image = sitk.PermuteAxes(pm.get_volume().to_simpleitk(), [2, 1, 0])
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    geometry = Geometry.from_sitk(image)
    if np.linalg.det(geometry.direction_matrix) < 0:
        # highdicom may stack the frames against the slice normal; the scan's own
        # series (SimpleITK/GDCM) runs along it: reverse the slices to match
        d = geometry.direction_matrix.copy()
        d[:, 2] *= -1
        origin = geometry.index_to_physical(np.array([arr.shape[0] - 1, 0, 0]))
        geometry = Geometry(tuple(float(v) for v in origin), geometry.spacing, tuple(float(v) for v in d.ravel()))
        arr = np.ascontiguousarray(arr[::-1])
    scan = ScanImage(arr, geometry, None, name=Path(path).stem)
    prov = read_provenance(ds)
    if prov:
        scan.name = f"{prov.get('image', scan.name)}_{prov.get('method', 'map')}"
    return scan


__all__ = ["DicomExport", "overlay_rgb", "read_parametric_map", "read_provenance", "source_series", "write_parametric_map"]
