"""Overlay figures for reports: the map over the scan, with a colour bar, a scale bar and a caption.

Rendered with matplotlib's object API on the Agg canvas (no pyplot state), so
hosts can call it from any thread. Every panel has the same size and the same
millimetre scale (one scale bar reads for all), voxels are drawn at their
physical aspect, the colour bar shows where it clips (arrows, and the map's
true range in the caption), and a mask (a lesion, the explained region) can be
drawn as an outline.
"""

from __future__ import annotations

import datetime
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from scipy import ndimage

from .attribution import Attribution
from .display import CLEAR_BELOW, OPAQUE_FROM, clipped_ends, display_settings, limit_rule, overlay_alpha
from .image import ScanImage

#: Opacity of the map's colour where it is opaque (the scan still shows through a little).
OVERLAY_OPACITY = 0.65
#: Default resolution: print quality.
PRINT_DPI = 300
#: Side of one (square) panel, inches.
PANEL_INCHES = 2.6
#: Colour of the mask outline.
OUTLINE_COLOR = "#00e5ff"
#: Caption font size (points) and the line height it needs (inches).
CAPTION_PT = 6.5
_CAPTION_LINE_IN = CAPTION_PT * 1.45 / 72
#: Shown on figures of the bundled sample models.
NOT_CLINICAL = "Sample model for demonstration only: not for clinical use."


def to_lps(arr: np.ndarray, scan: ScanImage) -> tuple[np.ndarray, tuple[float, float, float]]:
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


@dataclass
class _Panel:
    title: str
    base: np.ndarray
    values: np.ndarray
    mask: np.ndarray | None
    size_mm: tuple[float, float]  # (width, height) of the slice
    letters: tuple[str, str, str, str]  # top, bottom, left, right


def render_overlay(scan: ScanImage, attribution: Attribution, path: str | os.PathLike, **options: Any) -> Path:
    """Write a PNG/PDF of the map over the scan (the figure of :func:`overlay_figure`).

    Parameters
    ----------
    scan, attribution
        As for :func:`overlay_figure`.
    path : str or PathLike
        ``.png`` or ``.pdf``.
    **options
        The keyword options of :func:`overlay_figure` (layout, slices, center,
        dpi, limits, mask, mask_label, date).

    Returns
    -------
    Path
    """
    fig = overlay_figure(scan, attribution, **options)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, facecolor="black")
    return p


def overlay_figure(
    scan: ScanImage,
    attribution: Attribution,
    *,
    layout: str = "orthogonal",
    slices: int = 9,
    center: tuple[int, ...] | None = None,
    dpi: int = PRINT_DPI,
    limits: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
    mask_label: str = "mask",
    date: datetime.date | None = None,
) -> Figure:
    """The overlay as a matplotlib :class:`~matplotlib.figure.Figure` on an Agg canvas (e.g. a page of a PDF report).

    The figure's axes are the panels (in order), then the colour bar.

    Parameters
    ----------
    scan : ScanImage
        The explained image (first channel is shown).
    attribution : Attribution
        Its map, on the same grid.
    layout : {"orthogonal", "montage"}
        Axial, coronal and sagittal slices through ``center``, or ``slices``
        axial slices across the map's extent. 2D images get one panel.
    slices : int
        Number of montage slices.
    center : tuple of int, optional
        ``(z, y, x)`` voxel the orthogonal views pass through; default: the map's peak.
    dpi : int
        Resolution (default 300, for print).
    limits : tuple of float, optional
        Colour limits ``(low, high)``; default: ``(0, p)`` for a non-negative
        map, ``(-p, p)`` for a signed one, ``p`` from
        :func:`~napari_xai.engine.display.default_limit`. Values beyond them
        are clipped, which the colour bar's arrows show.
    mask : numpy.ndarray, optional
        Boolean mask on the scan grid (a lesion, the explained region), drawn
        as an outline.
    mask_label : str
        What the mask is, for the caption.
    date : datetime.date, optional
        Date printed in the caption (default: today, UTC).

    Returns
    -------
    matplotlib.figure.Figure
    """
    base = scan.channels_first()[0]
    values = attribution.values
    if base.shape != values.shape:
        raise ValueError(f"scan grid {base.shape} and map grid {values.shape} differ")
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != values.shape:
            raise ValueError(f"mask grid {mask.shape} and map grid {values.shape} differ")
    settings = display_settings(values, attribution.sign, limits)
    panels = _panels(scan, base, values, mask, attribution.sign, layout, slices, center)
    cols = min(len(panels), 5)
    rows = -(-len(panels) // cols)
    caption = caption_lines(attribution, settings.contrast_limits, user_limits=limits is not None, mask_label=mask_label if mask is not None and mask.any() else None, date=date)
    wrap = int(cols * PANEL_INCHES * 72 / (CAPTION_PT * 0.55))
    lines = [piece for line in caption for piece in textwrap.wrap(line, wrap)]
    if rows > 1:
        pad = 0.22  # room for the panel titles between rows

    # the layout in inches: title, a row of equal square panels (+ colour bar), caption
    pad, title_h, bar_w, label_w = 0.08, 0.55, 0.16, 0.75
    caption_h = len(lines) * _CAPTION_LINE_IN + 0.12
    width = pad + cols * PANEL_INCHES + (cols - 1) * pad + 0.15 + bar_w + label_w
    height = title_h + rows * PANEL_INCHES + (rows - 1) * pad + caption_h + pad
    fig = Figure(figsize=(width, height), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    cmap = matplotlib_colormap(settings.colormap)
    norm = Normalize(*settings.contrast_limits)
    lo, hi = np.percentile(base, [0.5, 99.5])
    side = max(max(p.size_mm) for p in panels)  # every panel shows the same square of the scan's largest extent
    bar_mm = _scale_bar_mm(side)
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        left = pad + c * (PANEL_INCHES + pad)
        bottom = height - title_h - (r + 1) * PANEL_INCHES - r * pad
        ax = fig.add_axes((left / width, bottom / height, PANEL_INCHES / width, PANEL_INCHES / height))
        _draw_panel(ax, panel, cmap, norm, settings.contrast_limits, (lo, hi), side, bar_mm)
    grid_bottom = height - title_h - rows * PANEL_INCHES - (rows - 1) * pad
    cax = fig.add_axes(((width - label_w - bar_w) / width, (grid_bottom + 0.1) / height, bar_w / width, (rows * PANEL_INCHES - 0.2) / height))
    add_colorbar(fig, cax, attribution, values, settings.contrast_limits, cmap)
    fig.suptitle(f"{attribution.method_title}: {attribution.target.get('description', '')}", color="white", fontsize=10, y=1 - 0.08 / height, va="top")
    fig.text(pad / width, (pad + 0.04) / height, "\n".join(lines), color="white", fontsize=CAPTION_PT, va="bottom", linespacing=1.3)
    return fig


def render_view(
    shot: np.ndarray,
    attribution: Attribution,
    path: str | os.PathLike,
    *,
    cmap: Any = None,
    limits: tuple[float, float] | None = None,
    dpi: int = PRINT_DPI,
    user_limits: bool = False,
) -> Path:
    """A host's screenshot of its view with the map's colour bar, title and caption, as :func:`render_overlay` draws them.

    Parameters
    ----------
    shot : numpy.ndarray
        ``(h, w, 3 or 4)`` RGB(A) screenshot of the canvas.
    attribution : Attribution
        The map shown in it.
    path : str or PathLike
        ``.png`` or ``.pdf``.
    cmap : matplotlib colormap, optional
        The colours the host showed (default: the map's from its sign).
    limits : tuple of float, optional
        The colour limits the host showed (default: the map's own).
    user_limits : bool
        The limits were set by the user (the caption says so).
    """
    settings = display_settings(attribution.values, attribution.sign)
    limits = tuple(limits or settings.contrast_limits)
    cmap = cmap if cmap is not None else matplotlib_colormap(settings.colormap)
    lines = [piece for line in caption_lines(attribution, limits, user_limits=user_limits) for piece in textwrap.wrap(line, 120)]
    h, w = shot.shape[:2]
    fig_w = 7.0
    shot_h = fig_w * 0.86 * h / w
    caption_h = 0.13 * len(lines) + 0.15
    fig_h = 0.45 + shot_h + caption_h
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, caption_h / fig_h, 0.86, shot_h / fig_h))
    ax.imshow(shot)
    ax.set_axis_off()
    cax = fig.add_axes((0.89, (caption_h + 0.1 * shot_h) / fig_h, 0.025, 0.8 * shot_h / fig_h))
    add_colorbar(fig, cax, attribution, attribution.values, limits, cmap)
    fig.suptitle(f"{attribution.method_title}: {attribution.target.get('description', '')}", color="white", fontsize=10, y=1 - 0.08 / fig_h, va="top")
    fig.text(0.02, 0.08 / fig_h, "\n".join(lines), color="white", fontsize=CAPTION_PT, va="bottom", linespacing=1.3)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, facecolor="black")
    return p


def _panels(scan: ScanImage, base: np.ndarray, values: np.ndarray, mask: np.ndarray | None, sign: str, layout: str, slices: int, center: tuple[int, ...] | None) -> list[_Panel]:
    if base.ndim == 2:
        sx, sy = scan.geometry.spacing[0], scan.geometry.spacing[1]
        ny, nx = base.shape
        return [_Panel("image", base, values, mask, (nx * sx, ny * sy), ("", "", "", ""))]
    b, sp = to_lps(base, scan)
    v, _ = to_lps(values, scan)
    m = to_lps(mask.astype(np.float32), scan)[0] > 0.5 if mask is not None else None
    sx, sy, sz = sp
    nz, ny, nx = b.shape
    axial, coronal, sagittal = (nx * sx, ny * sy), (nx * sx, nz * sz), (ny * sy, nz * sz)
    if layout == "montage":
        nonzero = np.flatnonzero(np.abs(v).reshape(nz, -1).max(axis=1) > 0) if np.abs(v).max() > 0 else np.arange(nz)
        picks = np.unique(np.linspace(nonzero.min(), nonzero.max(), min(slices, len(nonzero))).round().astype(int))
        return [_Panel(f"axial {k}", b[k], v[k], m[k] if m is not None else None, axial, ("A", "P", "R", "L")) for k in picks]
    z, y, x = lps_center(center, scan, values, sign, v)
    return [
        _Panel(f"axial (z={z})", b[z], v[z], m[z] if m is not None else None, axial, ("A", "P", "R", "L")),
        _Panel(f"coronal (y={y})", b[::-1, y, :], v[::-1, y, :], m[::-1, y, :] if m is not None else None, coronal, ("S", "I", "R", "L")),
        _Panel(f"sagittal (x={x})", b[::-1, :, x], v[::-1, :, x], m[::-1, :, x] if m is not None else None, sagittal, ("S", "I", "A", "P")),
    ]


def _draw_panel(ax: Any, panel: _Panel, cmap: Any, norm: Normalize, limits: tuple[float, float], grey: tuple[float, float], side: float, bar_mm: float) -> None:
    w, h = panel.size_mm
    extent = (0.0, w, h, 0.0)  # millimetres; row 0 at the top
    ax.set_facecolor("black")
    ax.imshow(panel.base, cmap="gray", vmin=grey[0], vmax=grey[1], extent=extent, interpolation="nearest")
    rgba = cmap(norm(panel.values))
    rgba[..., 3] = overlay_opacity(panel.values, max(abs(limits[0]), abs(limits[1])))
    ax.imshow(rgba, extent=extent, interpolation="nearest")
    if panel.mask is not None and panel.mask.any():
        rows, cols = panel.mask.shape
        xs = (np.arange(cols) + 0.5) * w / cols
        ys = (np.arange(rows) + 0.5) * h / rows
        ax.contour(xs, ys, panel.mask.astype(float), levels=[0.5], colors=OUTLINE_COLOR, linewidths=0.8)
    ax.set_xlim(w / 2 - side / 2, w / 2 + side / 2)
    ax.set_ylim(h / 2 + side / 2, h / 2 - side / 2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(panel.title, color="white", fontsize=7, pad=2)
    top, bottom, left, right = panel.letters  # at the slice's own edges (the panel may be wider than the slice)
    inset = 0.015 * side
    for text, xy, ha, va in ((top, (w / 2, inset), "center", "top"), (bottom, (w / 2, h - inset), "center", "bottom"), (left, (inset, h / 2), "left", "center"), (right, (w - inset, h / 2), "right", "center")):
        if text:
            ax.text(*xy, text, color="yellow", fontsize=7, ha=ha, va=va)
    x0 = w / 2 + side / 2 - 0.05 * side - bar_mm
    y0 = h / 2 + side / 2 - 0.06 * side
    ax.plot([x0, x0 + bar_mm], [y0, y0], color="white", linewidth=1.5, solid_capstyle="butt")
    ax.text(x0 + bar_mm / 2, y0 - 0.015 * side, f"{bar_mm:g} mm", color="white", fontsize=6, ha="center", va="bottom")


def overlay_opacity(values: np.ndarray, limit: float) -> np.ndarray:
    """Per-voxel opacity of a map drawn over its scan in a figure: :func:`~napari_xai.engine.display.overlay_alpha` times :data:`OVERLAY_OPACITY`."""
    return OVERLAY_OPACITY * overlay_alpha(np.asarray(values, dtype=float) / (float(limit) or 1.0))


#: How figures say which voxels are clear (captions).
TRANSPARENCY_TEXT = f"voxels under {CLEAR_BELOW:.0%} of the limit are transparent, opaque from {OPAQUE_FROM:.0%}"


def _scale_bar_mm(side_mm: float) -> float:
    """A round length near a quarter of the panel's side."""
    target = side_mm / 4
    steps = [1, 2, 5, 10, 20, 25, 50, 100, 200, 500]
    return float(min(steps, key=lambda s: abs(np.log(s / target))))


def tick_scale(limits: tuple[float, float]) -> int:
    """The power of ten the colour bar's ticks are divided by (0 when plain numbers read well)."""
    top = max(abs(limits[0]), abs(limits[1]))
    if top <= 0 or not np.isfinite(top):
        return 0
    e = int(np.floor(np.log10(top)))
    return e if e < -2 or e > 3 else 0


def add_colorbar(fig: Figure, cax: Any, attribution: Attribution, values: np.ndarray, limits: tuple[float, float], cmap: Any) -> None:
    """The map's colour bar on ``cax``: arrows where values are clipped, plain tick labels, the scale in the label.

    Shared by :func:`render_overlay` and the hosts' "current view" export.
    """
    from matplotlib.cm import ScalarMappable

    e = tick_scale(limits)
    bar = fig.colorbar(ScalarMappable(norm=Normalize(*limits), cmap=cmap), cax=cax, extend=clipped_ends(values, limits), extendfrac=0.06)
    bar.formatter = FuncFormatter(lambda v, _pos: f"{v / 10**e:.3g}")
    bar.update_ticks()
    bar.outline.set_edgecolor("white")
    cax.yaxis.set_tick_params(color="white", labelcolor="white", labelsize=7)
    unit = rf" ($\times 10^{{{e}}}$)" if e else ""
    cax.set_ylabel(f"{attribution.method_title} attribution{unit}", color="white", fontsize=7)


def caption_lines(
    attribution: Attribution,
    limits: tuple[float, float],
    *,
    user_limits: bool = False,
    mask_label: str | None = None,
    date: datetime.date | None = None,
) -> list[str]:
    """The caption, one entry per line (before wrapping): what was explained, how, on what, and how it is shown.

    Lines: model, method and target; the target's probability and raw score;
    the scan's name and the date; the map's true range and the colour
    limits; the parameters; the mask outline (if any); and, for the bundled
    sample models, :data:`NOT_CLINICAL`.
    """
    v = attribution.values
    finite = v[np.isfinite(v)]
    day = (date or datetime.datetime.now(datetime.timezone.utc).date()).isoformat()
    where = "chosen by the user" if user_limits else limit_rule()
    clipped = clipped_ends(v, limits) != "neither"
    lines = [
        f"Model: {attribution.model.get('name', 'model')} | {attribution.method_title} | target: {attribution.target.get('description', '')}",
    ]
    score = attribution.score_text()
    if score:
        lines.append(f"Target score on the scan: {score}")
    version = f" | napari-xai {attribution.package_version}" if attribution.package_version else ""
    lines.append(f"Scan: {attribution.image_name} | {day}{version}")
    if finite.size:
        lines.append(
            f"Map range {finite.min():.3g} to {finite.max():.3g}; colour limits {limits[0]:.3g} to {limits[1]:.3g} ({where})"
            + ("; arrows on the colour bar: values beyond the limits are clipped." if clipped else ".")
        )
    params = ", ".join(f"{k}={v}" for k, v in attribution.params.items() if v != "")
    if params:
        lines.append(f"Parameters: {params}")
    if mask_label:
        lines.append(f"Outline: {mask_label} (where a slice cuts it).")
    if is_sample_model(attribution.model):
        lines.append(NOT_CLINICAL)
    return lines


def is_sample_model(model: dict[str, Any]) -> bool:
    """True when an attribution's model record is one of the bundled sample models (file under ``napari_xai/samples``)."""
    source = str(model.get("source", ""))
    if not source or source.startswith("<"):
        return False
    samples = Path(__file__).resolve().parents[1] / "samples"
    try:
        return Path(source).resolve().is_relative_to(samples)
    except (OSError, ValueError):
        return False


def lps_center(center: tuple[int, ...] | None, scan: ScanImage, values: np.ndarray, sign: str, v_lps: np.ndarray) -> tuple[int, int, int]:
    """The ``(z, y, x)`` index in the LPS-oriented arrays of :func:`to_lps` of ``center`` (a scan voxel), or of the map's peak."""
    if center is None:
        return _peak_index(v_lps, sign)  # type: ignore[return-value]
    marker = np.zeros(values.shape, dtype=np.float32)
    marker[tuple(center)] = 1.0
    m, _ = to_lps(marker, scan)
    return tuple(int(i) for i in np.argwhere(m > 0.5)[0])  # type: ignore[return-value]


def matplotlib_colormap(name: str):
    """Matplotlib's colour map of that name (imported on first use)."""
    from matplotlib import colormaps

    return colormaps[name]
