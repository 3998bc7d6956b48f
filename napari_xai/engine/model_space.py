"""Mapping a scan into the grid and intensities a model expects, and attributions back.

The scan is permuted into the model's orientation (no interpolation), then
resampled (linear) onto a grid with the model's spacing and size, centred on
the scan's centre, then its intensities are transformed. Attributions come
back through physical space: the model-space map carries the model grid's
geometry and is resampled onto the scan's grid, so the map lands on the
anatomy whatever the model's grid was. When the model grid is the scan grid
nothing is interpolated and the values are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from .errors import ImageError
from .geometry import Geometry
from .image import ScanImage
from .models.spec import ModelSpec


@dataclass
class ModelSpaceInput:
    """A scan as the model sees it.

    Parameters
    ----------
    tensor : torch.Tensor
        ``(1, C, *spatial)`` float32, intensities transformed.
    geometry : Geometry
        Geometry of the model grid.
    same_grid : bool
        True when the model grid is the scan grid (values map back exactly).
    scan : ScanImage
        The original scan.
    """

    tensor: torch.Tensor
    geometry: Geometry
    same_grid: bool
    scan: ScanImage


def to_model_space(scan: ScanImage, spec: ModelSpec) -> ModelSpaceInput:
    """Resample and normalise ``scan`` as ``spec`` says.

    Raises
    ------
    ImageError
        Wrong number of spatial axes or channels for the model.
    """
    dim = len(scan.spatial_shape)
    if spec.spatial_dims is not None and spec.spatial_dims != dim:
        fix = (
            "Pick one slice of the volume (e.g. the current slice in the viewer) for this 2D model."
            if dim == 3
            else "Give the whole volume, not a slice: this model takes 3D input."
        )
        raise ImageError(f"The model takes {spec.spatial_dims}D images but the image is {dim}D {scan.spatial_shape}.", fix)
    if spec.in_channels is not None and spec.in_channels != scan.channels:
        raise ImageError(
            f"The model takes {spec.in_channels} channel(s) but the image has {scan.channels}.",
            "Give an image with a leading channel axis of that size (channel_axis=0), or a single-channel image for a 1-channel model.",
        )
    channels = scan.channels_first()
    grid = _model_grid(scan, spec)
    if grid is None:
        arr, geometry, same = channels, scan.geometry, True
    else:
        ref, geometry = grid
        arr = np.stack([_resample(scan_channel(scan, channels, c), ref, sitk.sitkLinear, float(channels[c].min())) for c in range(scan.channels)])
        same = False
    arr = np.stack([apply_intensity(a, spec.intensity) for a in arr]).astype(np.float32)
    return ModelSpaceInput(torch.from_numpy(arr[None]), geometry, same, scan)


def scan_channel(scan: ScanImage, channels: np.ndarray, c: int) -> sitk.Image:
    """Channel ``c`` as a SimpleITK image on the scan's geometry."""
    return scan.geometry.apply_to(sitk.GetImageFromArray(channels[c]))


def region_to_model_space(region: np.ndarray, msi: ModelSpaceInput) -> np.ndarray:
    """A boolean mask on the scan grid, on the model grid (nearest neighbour)."""
    if msi.same_grid:
        return np.asarray(region, dtype=bool)
    img = msi.scan.geometry.apply_to(sitk.GetImageFromArray(np.asarray(region, dtype=np.uint8)))
    ref = msi.geometry.apply_to(sitk.Image(list(msi.tensor.shape[2:][::-1]), sitk.sitkUInt8))
    return _resample(img, ref, sitk.sitkNearestNeighbor, 0.0) > 0


def map_to_model_space(values: np.ndarray, msi: ModelSpaceInput) -> np.ndarray:
    """A map on the scan grid, resampled (linear) onto the model grid (the reverse of :func:`to_scan_grid`); float32."""
    if msi.same_grid:
        return np.asarray(values, dtype=np.float32)
    return _resample_map(values, msi.scan.geometry, msi.geometry, tuple(msi.tensor.shape[2:]))


def to_scan_grid(values: np.ndarray, msi: ModelSpaceInput) -> np.ndarray:
    """A spatial map on the model grid, resampled (linear) onto the scan grid; float32."""
    if msi.same_grid:
        return np.asarray(values, dtype=np.float32)
    return _resample_map(values, msi.geometry, msi.scan.geometry, msi.scan.spatial_shape)


def _resample_map(values: np.ndarray, source: Geometry, target: Geometry, shape: tuple[int, ...]) -> np.ndarray:
    """A float map on ``source`` geometry, resampled (linear, 0 outside) onto ``shape`` voxels of ``target``."""
    img = source.apply_to(sitk.GetImageFromArray(np.asarray(values, dtype=np.float32)))
    ref = target.apply_to(sitk.Image([int(n) for n in shape[::-1]], sitk.sitkFloat32))
    return _resample(img, ref, sitk.sitkLinear, 0.0).astype(np.float32)


def apply_intensity(arr: np.ndarray, intensity: dict) -> np.ndarray:
    """Apply a spec's intensity transform to one channel (float32 out)."""
    kind = intensity.get("type", "none")
    a = np.asarray(arr, dtype=np.float32)
    if kind == "none":
        return a
    if kind == "window":
        lo = float(intensity["center"]) - float(intensity["width"]) / 2
        out = np.clip(a, lo, lo + float(intensity["width"]))  # a new array (never the input), then in place:
        out -= lo  # one volume-sized buffer instead of three (a 512 x 512 x 300 CT: 315 MiB each)
        out /= float(intensity["width"])
        return out
    if kind == "scale":
        return (a - float(intensity.get("offset", 0.0))) * float(intensity.get("scale", 1.0))
    if kind == "minmax":
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if kind == "zscore":
        mask = a != 0 if intensity.get("nonzero") or intensity.get("keep_zeros") else None
        sel = a[mask] if mask is not None else a
        if sel.size == 0:
            return np.zeros_like(a)
        std = float(sel.std())
        out = (a - float(sel.mean())) / (std if std > 0 else 1.0)
        if intensity.get("keep_zeros"):
            out[~mask] = 0.0
        return out
    if kind == "range":  # MONAI's ScaleIntensityRange
        a_min, a_max = float(intensity["a_min"]), float(intensity["a_max"])
        out = (a - a_min) / (a_max - a_min)
        b_min, b_max = intensity.get("b_min"), intensity.get("b_max")
        if b_min is not None and b_max is not None:
            out = out * (float(b_max) - float(b_min)) + float(b_min)
            if intensity.get("clip"):
                out = np.clip(out, float(b_min), float(b_max))
        return out.astype(np.float32)
    if kind == "ct":  # nnU-Net's CTNormalization, with its epsilon
        out = np.clip(a, float(intensity["lower"]), float(intensity["upper"])) - float(intensity["mean"])
        return (out / max(float(intensity["std"]), 1e-8)).astype(np.float32)
    raise ValueError(f"unknown intensity transform {kind!r}")


def _model_grid(scan: ScanImage, spec: ModelSpec) -> tuple[sitk.Image, Geometry] | None:
    """The model's reference grid, or None when the scan grid already is it."""
    geom = scan.geometry
    dim = geom.dim
    size = np.array(scan.spatial_shape[::-1], dtype=float)  # x, y, z
    spacing = np.array(geom.spacing)
    direction = geom.direction_matrix
    if spec.orientation is not None and dim == 3:
        direction = _oriented_direction(geom, spec.orientation)
        # Reorienting permutes axes: express size and spacing along the new axes.
        perm = np.abs(np.linalg.inv(geom.direction_matrix) @ direction).argmax(axis=0)
        size, spacing = size[perm], spacing[perm]
    if spec.transpose is not None and len(spec.transpose) == dim:
        # Model numpy axis i is the scan's numpy axis transpose[i]; in SimpleITK's reversed (x, y, z) order
        # that is model axis a = dim-1-i taking axis dim-1-transpose[i].
        perm = np.array([dim - 1 - spec.transpose[dim - 1 - a] for a in range(dim)])
        direction, size, spacing = direction[:, perm], size[perm], spacing[perm]
    if spec.input_spacing is None and spec.input_size is None:
        new_spacing, new_size = spacing, size.astype(int)
    else:
        extent = size * spacing
        if spec.input_size is not None:
            new_size = np.array(spec.input_size[::-1], dtype=int)
        if spec.input_spacing is not None:
            new_spacing = np.array(spec.input_spacing[::-1], dtype=float)
            if spec.input_size is None:
                new_size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
        else:
            new_spacing = extent / new_size
    centre = np.asarray(geom.origin) + geom.direction_matrix @ (np.array(geom.spacing) * (np.array(scan.spatial_shape[::-1]) - 1) / 2)
    origin = centre - direction @ (new_spacing * (new_size - 1) / 2)
    model_geom = Geometry(tuple(origin.tolist()), tuple(new_spacing.tolist()), tuple(direction.ravel().tolist()))
    if (
        tuple(new_size) == tuple(scan.spatial_shape[::-1])
        and np.allclose(new_spacing, geom.spacing, rtol=1e-6, atol=1e-9)
        and np.allclose(direction, geom.direction_matrix, atol=1e-9)
        and np.allclose(origin, geom.origin, atol=1e-6 * float(np.max(new_spacing)))
    ):
        return None
    if np.prod(new_size) > 512**3:
        raise ImageError(
            f"The model grid would have {tuple(int(v) for v in new_size[::-1])} voxels.",
            "Check the spec's input_spacing/input_size: they look too fine for this scan.",
        )
    ref = model_geom.apply_to(sitk.Image([int(v) for v in new_size], sitk.sitkFloat32))
    return ref, model_geom


def _oriented_direction(geom: Geometry, orientation: str) -> np.ndarray:
    probe = geom.apply_to(sitk.Image([2, 2, 2], sitk.sitkUInt8))
    return np.asarray(sitk.DICOMOrient(probe, orientation).GetDirection()).reshape(3, 3)


def _resample(img: sitk.Image, ref: sitk.Image, interp: int, default: float) -> np.ndarray:
    out = sitk.Resample(img, ref, sitk.Transform(), interp, default, img.GetPixelID())
    return sitk.GetArrayFromImage(out)
