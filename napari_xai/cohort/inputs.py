"""The scans of a cohort: folders, globs or a CSV (with optional mask and label columns), each with a unique id."""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from napari_xai.engine.errors import ImageError
from napari_xai.engine.image_io import IMAGE_EXTENSIONS, has_image_extension, is_dicom_series_folder

#: CSV column names accepted for the scan path, the mask path and the label (first match wins, case-insensitive).
IMAGE_COLUMNS = ("image", "scan", "path", "file")
MASK_COLUMNS = ("mask", "region", "segmentation")
LABEL_COLUMNS = ("label", "class", "target")


@dataclass(frozen=True)
class CohortInput:
    """One scan of a cohort.

    Parameters
    ----------
    scan_id : str
        Unique within the cohort and stable across runs (output names derive from it).
    image : str
        Path of the scan (a file or a DICOM series folder).
    mask : str or None
        Path of a mask on the scan's grid (for the localisation metrics).
    label : str or None
        The given label (class index or name), compared with the model's prediction.
    """

    scan_id: str
    image: str
    mask: str | None = None
    label: str | None = None


def collect_inputs(items: Iterable[str | os.PathLike]) -> list[CohortInput]:
    """Expand folders, globs, files and CSV tables into the cohort's scans, in a stable order.

    Parameters
    ----------
    items : iterable of str or PathLike
        A ``.csv`` (a column ``image`` and optional ``mask`` and ``label``;
        relative paths are read from the CSV's folder), a folder (its image
        files, and its sub-folders that hold a DICOM series, or the folder
        itself if it is one), a glob pattern, or an image file.

    Returns
    -------
    list of CohortInput
        One per scan, duplicates removed, ids made unique.

    Raises
    ------
    ImageError
        An item matches nothing, or a CSV has no image column.
    """
    rows: list[tuple[str, str | None, str | None]] = []
    for item in items:
        text = str(item)
        p = Path(text)
        if text.lower().endswith(".csv") and p.is_file():
            rows += _read_csv(p)
        elif p.is_dir():
            rows += [(s, None, None) for s in _scan_folder(p)]
        elif p.is_file():
            rows.append((str(p), None, None))
        elif glob.has_magic(text):
            found = sorted(glob.glob(text))
            if not found:
                raise ImageError(f"The pattern {text!r} matches no file.", "Check the pattern (quote it so the shell does not expand it).")
            rows += [(s, None, None) for s in found if Path(s).is_file() or is_dicom_series_folder(s)]
        else:
            raise ImageError(f"No file, folder or pattern {text!r}.", "Give scan files, folders of scans, glob patterns or a CSV with an image column.")
    seen: dict[str, tuple[str, str | None, str | None]] = {}
    for image, mask, label in rows:
        seen.setdefault(str(Path(image).resolve()), (image, mask, label))
    if not seen:
        raise ImageError("The cohort holds no scan.", "Point to folders or files of NIfTI/NRRD/MHA scans or DICOM series.")
    return _unique_ids(list(seen.items()))


def _read_csv(path: Path) -> list[tuple[str, str | None, str | None]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
        image_col = next((fields[c] for c in IMAGE_COLUMNS if c in fields), None)
        if image_col is None:
            raise ImageError(f"{path.name} has no image column (columns: {list(fields.values())}).", f"Name the scan column one of {IMAGE_COLUMNS}.")
        mask_col = next((fields[c] for c in MASK_COLUMNS if c in fields), None)
        label_col = next((fields[c] for c in LABEL_COLUMNS if c in fields), None)
        out = []
        for row in reader:
            image = (row.get(image_col) or "").strip()
            if not image:
                continue
            mask = (row.get(mask_col) or "").strip() if mask_col else ""
            label = (row.get(label_col) or "").strip() if label_col else ""
            out.append((_relative_to(path.parent, image), _relative_to(path.parent, mask) if mask else None, label or None))
        return out


def _relative_to(folder: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else folder / p)


def _scan_folder(folder: Path) -> list[str]:
    if is_dicom_series_folder(folder):
        return [str(folder)]
    out = []
    for child in sorted(folder.iterdir()):
        if child.is_file() and has_image_extension(child) and not child.name.lower().endswith(".dcm"):
            out.append(str(child))
        elif child.is_dir() and is_dicom_series_folder(child):
            out.append(str(child))
    return out


def _stem(path: str) -> str:
    name = Path(path).name
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _unique_ids(items: list[tuple[str, tuple[str, str | None, str | None]]]) -> list[CohortInput]:
    """Ids from file names; where two scans share a name, each gets a short hash of its full path (stable across runs)."""
    stems = [_safe(_stem(image)) for _, (image, _, _) in items]
    counts = {s: stems.count(s) for s in stems}
    out = []
    for (resolved, (image, mask, label)), stem in zip(items, stems):
        scan_id = stem if counts[stem] == 1 else f"{stem}-{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"
        out.append(CohortInput(scan_id, image, mask, label))
    return out


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned or "scan"
