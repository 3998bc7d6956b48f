"""2D models on a volume: the slice a host shows, as a 2D image, and its map put back on the volume's grid."""

from __future__ import annotations

import dataclasses

import numpy as np

from napari_xai.engine import Attribution, Geometry, ImageError, ScanImage


def slice_scan(scan: ScanImage, k: int) -> ScanImage:
    """Slice ``k`` (along z, the first spatial axis) of a volume as a 2D image with its in-plane spacing."""
    k = checked_slice(scan, k)
    sx, sy = scan.geometry.spacing[0], scan.geometry.spacing[1]
    array = np.asarray(scan.array[:, k] if scan.channel_axis is not None else scan.array[k])
    channel_axis = 0 if scan.channel_axis is not None else None
    return ScanImage(array, Geometry((0.0, 0.0), (sx, sy), (1.0, 0.0, 0.0, 1.0)), channel_axis, name=f"{scan.name} z={k}")


def slice_region(region: np.ndarray | None, k: int | None) -> np.ndarray | None:
    """The region mask of slice ``k`` (the whole mask when ``k`` is None)."""
    return region[k] if k is not None and region is not None else region


def embed_slice(attribution: Attribution, scan: ScanImage, k: int) -> Attribution:
    """A 2D map of slice ``k`` placed on the volume's grid (zero elsewhere), with the volume's geometry."""
    values = np.zeros(scan.spatial_shape, dtype=np.float32)
    values[k] = attribution.values
    target = dict(attribution.target, slice=k)
    target["description"] = f"{attribution.target.get('description', '')} on slice z={k}"
    return dataclasses.replace(attribution, values=values, geometry=scan.geometry, target=target, image_name=scan.name)


def checked_slice(scan: ScanImage, k: int) -> int:
    """``k`` when it is a slice index of ``scan``'s volume.

    Raises
    ------
    ImageError
        Not a volume, or ``k`` outside it.
    """
    if len(scan.spatial_shape) != 3:
        raise ImageError(f"{scan.name!r} is not a volume: there is no slice to take.", "Explain the 2D image as it is.")
    n = scan.spatial_shape[0]
    if not 0 <= int(k) < n:
        raise ImageError(f"Slice {k} is outside {scan.name!r}, which has slices 0 to {n - 1}.", f"Choose a slice from 0 to {n - 1}.")
    return int(k)


def slice_of_point(geometry: Geometry, point_lps: tuple[float, float, float], depth: int) -> int:
    """The index along z of the volume's slice nearest to a physical point (LPS, mm), clipped to the volume.

    This is SimpleITK's ``TransformPhysicalPointToContinuousIndex`` rounded,
    for the third index axis: ``index = (D diag(spacing))^-1 (point - origin)``.
    """
    spacing = np.asarray(geometry.spacing, dtype=float)
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    index = np.linalg.solve(direction @ np.diag(spacing), np.asarray(point_lps, dtype=float) - np.asarray(geometry.origin, dtype=float))
    return int(np.clip(round(float(index[2])), 0, depth - 1))


def slice_of_map(attribution: Attribution, k: int, geometry: Geometry) -> Attribution:
    """The inverse of :func:`embed_slice`: slice ``k`` of a map as a 2D map with the slice's ``geometry``."""
    target = {key: v for key, v in attribution.target.items() if key != "slice"}
    return dataclasses.replace(attribution, values=np.asarray(attribution.values[k], dtype=np.float32), geometry=geometry, target=target)


def evaluation_inputs(
    scan: ScanImage, maps: dict[str, Attribution], mask: np.ndarray | None = None, anatomy: np.ndarray | None = None
) -> tuple[ScanImage, dict[str, Attribution], np.ndarray | None, np.ndarray | None]:
    """What the engine's evaluation takes for maps of one scan: the maps of a 2D model's slice are evaluated on that slice.

    Raises
    ------
    ImageError
        The maps were made on different slices.
    """
    slices = {a.target.get("slice") for a in maps.values()}
    if len(slices) > 1:
        raise ImageError("These maps were made on different slices.", "Evaluate one map at a time, or maps of the same slice.")
    k = slices.pop() if slices else None
    if k is None:
        return scan, maps, mask, anatomy
    plane = slice_scan(scan, k)
    return plane, {name: slice_of_map(a, k, plane.geometry) for name, a in maps.items()}, slice_region(mask, k), slice_region(anatomy, k)
