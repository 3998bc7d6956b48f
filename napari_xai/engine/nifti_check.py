"""Checks on a NIfTI file's header and size before SimpleITK reads it.

SimpleITK (ITK's NIfTI reader) fills a truncated file's missing voxels with
zeros without a word, and reads a zero voxel size (``pixdim``) as 1 mm. Both
silently change what is explained, so this module reads the header itself
(NIfTI-1 and NIfTI-2 layouts, either byte order) and compares the voxel data
the header promises with the bytes the file (or its gzip stream, read to its
end so a cut-off stream is noticed) really holds. Hand-written because the
check needs only a few header fields and nibabel is not a dependency.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

from .errors import ImageError

_CHUNK = 1 << 20


def check_nifti(path: Path) -> list[str]:
    """Check a ``.nii`` / ``.nii.gz`` file; return warnings about what the reader will assume.

    Returns
    -------
    list of str
        Visible warnings for provenance (e.g. zero voxel sizes read as 1 mm).

    Raises
    ------
    ImageError
        The header is unreadable, or the file holds fewer voxel bytes than its
        header promises (a truncated file or gzip stream).
    """
    compressed = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error):
        return []  # not even a header: SimpleITK's reader says what is wrong
    header = _parse_header(head, path.name)
    if header is None:
        return []  # not a NIfTI header we know: leave it to SimpleITK
    dims, bitpix, vox_offset, pixdim = header
    voxels = math.prod(dims) if dims else 0
    expected = int(vox_offset) + voxels * bitpix // 8
    if compressed:
        actual = _gzip_length(path)
    else:
        actual = path.stat().st_size
    if actual < expected:
        raise ImageError(
            f"{path.name} is truncated: its header promises {_size(expected)} ({' x '.join(map(str, dims))} voxels "
            f"of {bitpix // 8} bytes after a {int(vox_offset)}-byte header) but the file holds {_size(actual)}; "
            "reading it would fill the missing voxels with zeros.",
            "Copy or export the file again in full (an interrupted download or transfer cuts files short).",
        )
    warnings = []
    zero = [axis for axis, size in zip("xyz", pixdim[: len(dims)]) if not size > 0]
    if zero:
        warnings.append(
            f"{path.name}: the header gives voxel size 0 (or negative) along {', '.join(zero)}; "
            "it was read as 1 mm, so physical sizes, resampling to the model's spacing and the map's geometry assume 1 mm there."
        )
    return warnings


def _parse_header(head: bytes, name: str) -> tuple[list[int], int, float, list[float]] | None:
    """``(spatial dims, bitpix, vox_offset, spatial pixdim)`` of a NIfTI-1/2 header, or None for another format."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dim = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            pixdim = struct.unpack(order + "8f", head[76:108])
            vox_offset = struct.unpack(order + "f", head[108:112])[0]
            break
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            dim = struct.unpack(order + "8q", head[16:80])
            pixdim = struct.unpack(order + "8d", head[104:168])
            vox_offset = struct.unpack(order + "q", head[168:176])[0]
            break
    else:
        return None
    ndim = dim[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or bitpix % 8 or any(d < 1 for d in dim[1 : ndim + 1]):
        raise ImageError(
            f"{name} has an invalid NIfTI header (dim {list(dim)}, bitpix {bitpix}).",
            "The file is damaged or not NIfTI; export it again.",
        )
    return [int(d) for d in dim[1 : ndim + 1]], int(bitpix), float(vox_offset), [float(p) for p in pixdim[1 : ndim + 1]]


def _gzip_length(path: Path) -> int:
    """Uncompressed length of a gzip file, read to the end (nothing kept): a cut-off stream raises."""
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise ImageError(
            f"{path.name} is truncated or damaged: its gzip stream ends early or fails its checksum ({err}); "
            "reading it would fill the missing voxels with zeros.",
            "Copy or export the file again in full (an interrupted download or transfer cuts files short).",
        ) from err
    return total


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n / 2**20:.1f} MiB"
