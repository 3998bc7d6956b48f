"""Overlay figures for reports: the map over the scan, with a colour bar and a caption.

Rendered with matplotlib's object API on the Agg canvas (no pyplot state), so
hosts can call it from any thread.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .attribution import Attribution
from .display import display_settings
from .image import ScanImage

#: Voxels below this fraction of the contrast limit are left transparent.
TRANSPARENT_BELOW = 0.15


def _to_lps(arr: np.ndarray, scan: ScanImage) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A (z, y, x) array permuted/flipped (no interpolation) so that x->L, y->P, z->S; and its spacing."""
    img = scan.geometry.apply_to(sitk.GetImageFromArray(np.asarray(arr, dtype=np.float32)))
    out = sitk.DICOMOrient(img, "LPS")
    return sitk.GetArrayFromImage(out), out.GetSpacing()


def _peak_index(values: np.ndarray, sign: str) -> tuple[int, ...]:
    """The centre of the map's strongest blob: where the views should cut.

    Not the first maximal voxel, which for a blocky map (occlusion, coarse
    CAMs) is a corner of the block: the centre of the connected region within
    5 % of the maximum that holds it.
    """
    v = values if sign == "non-negative" or (values > 0).any() else np.abs(values)
    first = np.unravel_index(int(np.argmax(v)), v.shape)
    labels, _ = ndimage.label(v >= v[first] - 0.05 * abs(v[first]))
    blob = np.argwhere(labels == labels[first])
    centre = blob.mean(axis=0)
    nearest = blob[np.argmin(((blob - centre) ** 2).sum(axis=1))]
    return tuple(int(i) for i in nearest)


def render_overlay(
    scan: ScanImage,
    attribution: Attribution,
    path: str | os.PathLike,
    *,
    layout: str = "orthogonal",
    slices: int = 9,
    center: tuple[int, ...] | None = None,
    dpi: int = 120,
) -> Path:
    """Write a PNG/PDF of the map over the scan.

    Parameters
    ----------
    scan : ScanImage
        The explained image (first channel is shown).
    attribution : Attribution
        Its map, on the same grid.
    path : str or PathLike
        ``.png`` or ``.pdf``.
    layout : {"orthogonal", "montage"}
        Axial, coronal and sagittal slices through ``center``, or ``slices``
        axial slices across the map's extent. 2D images get one panel.
    slices : int
        Number of montage slices.
    center : tuple of int, optional
        ``(z, y, x)`` voxel the orthogonal views pass through; default: the map's peak.
    dpi : int
        Resolution.

    Returns
    -------
    Path
    """
    base = scan.channels_first()[0]
    values = attribution.values
    if base.shape != values.shape:
        raise ValueError(f"scan grid {base.shape} and map grid {values.shape} differ")
    settings = display_settings(values, attribution.sign)
    norm = Normalize(*settings.contrast_limits)
    cmap = _colormap(settings.colormap)
    lo, hi = np.percentile(base, [0.5, 99.5])
    panels: list[tuple[str, np.ndarray, np.ndarray, float, tuple[str, str, str, str]]] = []
    if base.ndim == 2:
        sy, sx = scan.geometry.spacing[1], scan.geometry.spacing[0]
        panels.append(("image", base, values, sy / sx, ("", "", "", "")))
    else:
        b, sp = _to_lps(base, scan)
        v, _ = _to_lps(values, scan)
        sx, sy, sz = sp
        z, y, x = _lps_center(center, scan, values, attribution.sign, v)
        if layout == "montage":
            nz = np.flatnonzero(np.abs(v).reshape(v.shape[0], -1).max(axis=1) > 0) if np.abs(v).max() > 0 else np.arange(v.shape[0])
            picks = np.unique(np.linspace(nz.min(), nz.max(), min(slices, len(nz))).round().astype(int))
            for k in picks:
                panels.append((f"axial {k}", b[k], v[k], sy / sx, ("A", "P", "R", "L")))
        else:
            panels.append((f"axial (z={z})", b[z], v[z], sy / sx, ("A", "P", "R", "L")))
            panels.append((f"coronal (y={y})", b[::-1, y, :], v[::-1, y, :], sz / sx, ("S", "I", "R", "L")))
            panels.append((f"sagittal (x={x})", b[::-1, :, x], v[::-1, :, x], sz / sy, ("S", "I", "A", "P")))
    cols = min(len(panels), 5)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.2 * cols + 1.0, 3.4 * rows + 1.0), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [0.06], left=0.02, right=0.92, top=0.92, bottom=0.16, wspace=0.05)
    for i, (title, b_slice, v_slice, aspect, letters) in enumerate(panels):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.imshow(b_slice, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        rgba = cmap(norm(v_slice))
        rgba[..., 3] = np.where(np.abs(v_slice) >= TRANSPARENT_BELOW * settings.contrast_limits[1], 0.65, 0.0)
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")
        ax.set_title(title, color="white", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        top, bottom, left, right = letters
        for text, xy, ha, va in ((top, (0.5, 0.98), "center", "top"), (bottom, (0.5, 0.02), "center", "bottom"), (left, (0.02, 0.5), "left", "center"), (right, (0.98, 0.5), "right", "center")):
            if text:
                ax.text(*xy, text, transform=ax.transAxes, color="yellow", fontsize=8, ha=ha, va=va)
    cax = fig.add_subplot(grid[:, cols])
    fig.colorbar(_mappable(cmap, norm), cax=cax)
    cax.yaxis.set_tick_params(color="white", labelcolor="white", labelsize=8)
    cax.set_ylabel(f"{attribution.method_title} attribution", color="white", fontsize=8)
    fig.suptitle(f"{attribution.method_title}: {attribution.target.get('description', '')}", color="white", fontsize=11)
    caption = "\n".join(textwrap.wrap(attribution.caption(), width=int(28 * cols + 20)))
    fig.text(0.02, 0.02, caption, color="white", fontsize=7.5, va="bottom")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, facecolor="black")
    return p


def _lps_center(center: tuple[int, ...] | None, scan: ScanImage, values: np.ndarray, sign: str, v_lps: np.ndarray) -> tuple[int, int, int]:
    if center is None:
        return _peak_index(v_lps, sign)  # type: ignore[return-value]
    marker = np.zeros(values.shape, dtype=np.float32)
    marker[tuple(center)] = 1.0
    m, _ = _to_lps(marker, scan)
    return tuple(int(i) for i in np.argwhere(m > 0.5)[0])  # type: ignore[return-value]


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def _mappable(cmap, norm):
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)
