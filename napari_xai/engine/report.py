"""A report a radiologist can file: one scan, its maps, how far to trust them, and how to repeat the run.

A multi-page PDF (fonts embedded as TrueType, so it prints and archives as
shown) and the same pages as PNG files, laid out with matplotlib's object API
on the Agg/PDF canvases (no pyplot state; any thread):

1. title block (scan and geometry, model and weights hash, target and score,
   date, package version), the methods and the trust table;
2. one page per map: the scan and the overlay in axial, coronal and sagittal
   slices through the map's peak, in radiological convention (the patient's
   right on the viewer's left, anterior up in axial views), with orientation
   letters and a millimetre scale bar; the colour bar, the sign convention,
   the method's parameters, timings and checks;
3. a provenance appendix: per map, the command line and the Python call that
   repeat the run, and the full provenance record.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .attribution import Attribution
from .display import display_settings
from .errors import ImageError
from .image import ScanImage
from .overlay import TRANSPARENCY_TEXT, lps_center, matplotlib_colormap, overlay_opacity, to_lps
from .trust import check_metrics, format_metric, metric_label, metric_reading, ordered_names

#: A4 portrait, inches.
PAGE_SIZE = (8.27, 11.69)
#: Lines of monospaced text on one appendix page.
APPENDIX_LINES = 96
#: Scale-bar lengths to choose from (mm): the longest under a third of the panel's width.
SCALE_BAR_MM = (1, 2, 5, 10, 20, 50, 100)
#: rcParams that embed fonts as TrueType (Type 42) instead of Type 3 outlines.
EMBEDDED_FONTS = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.family": "DejaVu Sans"}


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote.

    Parameters
    ----------
    pdf : Path
        The PDF.
    pages : list of Path
        One PNG per PDF page, in order.
    """

    pdf: Path
    pages: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class _View:
    """One slice of the scan and the map as shown: arrays in display order and what to label them with."""

    title: str
    base: np.ndarray
    values: np.ndarray
    row_mm: float
    col_mm: float
    letters: tuple[str, str, str, str]  # top, bottom, left, right


def write_report(
    scan: ScanImage,
    attributions: Sequence[Attribution],
    path: str | os.PathLike,
    *,
    trust: Sequence[dict[str, Any] | None] | None = None,
    image_path: str | os.PathLike | None = None,
    title: str | None = None,
    png: bool = True,
    dpi: int = 150,
) -> ReportFiles:
    """Write the report for one scan and its maps.

    Parameters
    ----------
    scan : ScanImage
        The explained image (its first channel is shown).
    attributions : sequence of Attribution
        Maps on the scan's grid (e.g. one per method).
    path : str or PathLike
        The ``.pdf`` to write; PNG pages go beside it as ``<stem>_page<N>.png``.
    trust : sequence of dict, optional
        One metrics dict per map (see :func:`napari_xai.engine.trust.trust_metrics`);
        default, and for a None entry: the checks each map carries.
    image_path : str or PathLike, optional
        Where the scan was read from, for the commands that repeat the run.
    title : str, optional
        Title line (default: ``Saliency report: <scan name>``).
    png : bool
        Also write each page as PNG.
    dpi : int
        PNG resolution.

    Returns
    -------
    ReportFiles

    Raises
    ------
    ImageError
        No map, a map off the scan's grid, or a path that is not ``.pdf``.
    """
    attributions = list(attributions)
    p = Path(path)
    if p.suffix.lower() != ".pdf":
        raise ImageError(f"A report is a PDF; {p.name} is not.", "Give a path ending in .pdf.")
    if not attributions:
        raise ImageError("There is no map to report.", "Explain the scan with at least one method first.")
    shape = scan.spatial_shape
    for a in attributions:
        if a.values.shape != shape:
            raise ImageError(
                f"The map {a.name!r} has shape {a.values.shape} but the scan has {shape}.",
                "Report each map with the scan it was computed on.",
            )
    rows = [dict(check_metrics(a)) | dict((trust[i] if trust is not None and i < len(trust) and trust[i] else {})) for i, a in enumerate(attributions)]
    with rc_context(EMBEDDED_FONTS):
        figures = [_title_page(scan, attributions, rows, title)]
        figures += [_method_page(scan, a, rows[i]) for i, a in enumerate(attributions)]
        figures += _appendix_pages(scan, attributions, image_path)
        total = len(figures)
        for number, fig in enumerate(figures, 1):
            fig.text(0.5, 0.012, f"{scan.name} | page {number} of {total}", ha="center", fontsize=7, color="0.4")
        p.parent.mkdir(parents=True, exist_ok=True)
        pages: list[Path] = []
        created = _dt.datetime.now(_dt.timezone.utc)
        with PdfPages(p, metadata={"Title": title or f"Saliency report: {scan.name}", "Creator": "napari-xai", "CreationDate": created}) as pdf:
            for number, fig in enumerate(figures, 1):
                pdf.savefig(fig)
                if png:
                    page = p.with_name(f"{p.stem}_page{number}.png")
                    fig.savefig(page, dpi=dpi)
                    pages.append(page)
    return ReportFiles(p, pages)


# ----------------------------------------------------------------------------- pages


def new_page() -> Figure:
    fig = Figure(figsize=PAGE_SIZE, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _title_page(scan: ScanImage, attributions: list[Attribution], rows: list[dict[str, Any]], title: str | None) -> Figure:
    fig = new_page()
    first = attributions[0]
    fig.text(0.06, 0.955, title or f"Saliency report: {scan.name}", fontsize=17, weight="bold", va="top")
    fig.text(0.06, 0.925, "Attribution maps are explanations of a model's output, not findings; read them with the trust table.", fontsize=8.5, color="0.3", va="top")
    g = scan.geometry
    models = {a.model.get("weights_sha256", ""): a.model for a in attributions}
    block = [
        ("Scan", scan.name),
        ("Grid", " x ".join(str(n) for n in scan.spatial_shape[::-1]) + " voxels (x, y, z)" if len(scan.spatial_shape) == 3 else " x ".join(str(n) for n in scan.spatial_shape[::-1]) + " pixels (x, y)"),
        ("Spacing", " x ".join(f"{s:.4g}" for s in g.spacing) + " mm"),
        ("Origin (LPS)", ", ".join(f"{o:.4g}" for o in g.origin) + " mm"),
        ("Orientation", _orientation_code(scan)),
    ]
    for m in models.values():
        block += [("Model", f"{m.get('name', '')} ({m.get('kind', '')})"), ("Weights SHA-256", m.get("weights_sha256", "")), ("Model source", str(m.get("source", "")))]
    targets = {a.target.get("description", ""): a.target for a in attributions}
    for t in targets.values():
        score = t.get("score")
        block.append(("Target", f"{t.get('description', '')}" + (f"; model output {score:.4g}" if isinstance(score, (int, float)) else "")))
    block += [
        ("Date (UTC)", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("napari-xai", first.package_version or "unknown"),
    ]
    ax = fig.add_axes((0.06, 0.60, 0.88, 0.31))
    ax.set_axis_off()
    draw_table(ax, [[k, _wrap(v, 70)] for k, v in block], col_widths=(0.24, 0.76), header=None, fontsize=8.5)
    fig.text(0.06, 0.58, "Maps in this report", fontsize=12, weight="bold", va="top")
    ax = fig.add_axes((0.06, 0.45, 0.88, 0.11))
    ax.set_axis_off()
    method_rows = [[str(i + 1), a.method_title, a.family, a.sign, f"{a.timings.get('total_s', float('nan')):.1f} s", str(i + 2)] for i, a in enumerate(attributions)]
    draw_table(ax, method_rows, col_widths=(0.06, 0.32, 0.2, 0.16, 0.12, 0.14), header=["#", "method", "family", "sign", "time", "page"], fontsize=8)
    fig.text(0.06, 0.42, "Trust table", fontsize=12, weight="bold", va="top")
    names = [n for n in ordered_names(rows) if n != "metrics_error"]
    failures = [f"#{i + 1}: {r['metrics_error']}" for i, r in enumerate(rows) if r.get("metrics_error")]
    if failures:
        fig.text(0.06, 0.05, _wrap("The evaluation failed for " + "; ".join(failures), 130), fontsize=7, color="0.3", va="top")
    ax = fig.add_axes((0.06, 0.06, 0.88, 0.34))
    ax.set_axis_off()
    if names:
        table_rows = [[metric_label(n), metric_reading(n)] + [format_metric(r.get(n)) for r in rows] for n in names]
        widths = (0.3, 0.16) + (0.54 / len(rows),) * len(rows)
        draw_table(ax, table_rows, col_widths=widths, header=["metric", "reading"] + [f"#{i + 1} {a.method_title}" for i, a in enumerate(attributions)], fontsize=7.5)
    else:
        ax.text(0, 1, _wrap("No trust metrics were measured for these maps. Integrated gradients and DeepLIFT record their completeness; "
                            "the engine's evaluation (deletion, insertion, sanity, localisation) adds the rest where it is installed.", 100),
                va="top", fontsize=8.5, color="0.3")
    return fig


def _method_page(scan: ScanImage, a: Attribution, metrics: dict[str, Any]) -> Figure:
    fig = new_page()
    fig.text(0.06, 0.965, f"{a.method_title}: {a.target.get('description', '')}", fontsize=14, weight="bold", va="top")
    fig.text(0.06, 0.94, f"{a.model.get('name', '')} | {scan.name}", fontsize=8.5, color="0.3", va="top")
    settings = display_settings(a.values, a.sign)
    norm = Normalize(*settings.contrast_limits)
    cmap = matplotlib_colormap(settings.colormap)
    base = scan.channels_first()[0]
    lo, hi = np.percentile(base, [0.5, 99.5])
    views = _views(scan, a)
    n = len(views)
    grid = fig.add_gridspec(2, n + 1, width_ratios=[1] * n + [0.05], left=0.05, right=0.89, top=0.9, bottom=0.525, wspace=0.06, hspace=0.14)
    for i, view in enumerate(views):
        for row, overlay in ((0, False), (1, True)):
            ax = fig.add_subplot(grid[row, i])
            _draw(ax, view, (lo, hi), cmap, norm, settings.contrast_limits[1] if overlay else None)
            ax.set_title(view.title + (" + map" if overlay else ""), fontsize=8)
    cax = fig.add_subplot(grid[1, n])
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cax.tick_params(labelsize=7)
    cax.set_ylabel("attribution", fontsize=7.5)
    montage = _axial_montage(scan, a)
    if montage:
        fig.text(0.06, 0.512, "Axial slices holding the most attribution", fontsize=9, weight="bold", va="top")
        strip = fig.add_gridspec(1, len(montage), left=0.05, right=0.89, top=0.475, bottom=0.365, wspace=0.04)
        for i, view in enumerate(montage):
            ax = fig.add_subplot(strip[0, i])
            _draw(ax, view, (lo, hi), cmap, norm, settings.contrast_limits[1], scale_bar=i == 0, letters=i == 0)
            ax.set_title(view.title, fontsize=7)
    text_lines = [_sign_convention(a, settings.contrast_limits[1], settings.colormap), ""]
    text_lines.append("Views cut through the centre of the map's strongest blob; radiological convention (patient's right on the left).")
    fig.text(0.06, 0.36, "\n".join(textwrap.fill(t, 118) if t else "" for t in text_lines), fontsize=7.5, va="top")
    fig.text(0.06, 0.285, "Parameters", fontsize=11, weight="bold", va="top")
    ax = fig.add_axes((0.06, 0.09, 0.42, 0.18))
    ax.set_axis_off()
    params = [[k, _wrap(_value_text(v), 36)] for k, v in a.params.items()] or [["(none)", ""]]
    params.append(["family", a.family])
    draw_table(ax, params, col_widths=(0.45, 0.55), header=["parameter", "value"], fontsize=7.5)
    fig.text(0.53, 0.285, "Timings and checks", fontsize=11, weight="bold", va="top")
    ax = fig.add_axes((0.53, 0.09, 0.41, 0.18))
    ax.set_axis_off()
    info = [[k.replace("_", " "), f"{v:.2f} s"] for k, v in a.timings.items()]
    info += [[metric_label(k), format_metric(v)] for k, v in metrics.items()]
    draw_table(ax, info or [["(none)", ""]], col_widths=(0.6, 0.4), header=["item", "value"], fontsize=7.5)
    return fig


def _appendix_pages(scan: ScanImage, attributions: list[Attribution], image_path: str | os.PathLike | None) -> list[Figure]:
    lines = [
        "To repeat a map: run the command (or the Python call) below with the same model file",
        "(check its weights SHA-256) and the same scan; the map is then the same up to",
        "floating-point summation order. The provenance record is the sidecar JSON of the map.",
        "",
    ]
    for i, a in enumerate(attributions, 1):
        lines += [f"#{i} {a.method_title}", "", "Command line:"]
        lines += _wrap_code(repeat_command(a, image_path))
        lines += ["", "Python:"]
        lines += _wrap_code(repeat_python(a, image_path))
        lines += ["", "Provenance record:"]
        for key, value in a.provenance().items():
            lines += _wrap_code(f"{json.dumps(key)}: {json.dumps(value)}")
        lines.append("")
    pages = []
    for start in range(0, len(lines), APPENDIX_LINES):
        fig = new_page()
        fig.text(0.06, 0.965, "Provenance appendix" + (" (continued)" if start else ""), fontsize=13, weight="bold", va="top")
        fig.text(0.06, 0.935, "\n".join(lines[start : start + APPENDIX_LINES]), fontsize=6.3, family="DejaVu Sans Mono", va="top", linespacing=1.25)
        pages.append(fig)
    return pages


# ----------------------------------------------------------------------------- repeating a run


def repeat_command(a: Attribution, image_path: str | os.PathLike | None = None) -> str:
    """The ``napari-xai-explain`` command line that makes ``a`` again (a shell-quoted string)."""
    source = str(a.model.get("source", ""))
    model = source if not source.startswith("<") else "MODEL_FILE"
    args = ["napari-xai-explain", "--model", model, "--image", str(image_path or a.image_name), "--method", a.method]
    if a.target.get("class_index") is not None:
        args += ["--target", str(a.target["class_index"])]
    if a.target.get("task") == "segmentation":
        args += ["--region", "REGION_MASK"]
    for k, v in a.params.items():
        args += ["--param", f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}"]
    args += ["--out", "OUT_DIR"]
    return " ".join(shlex.quote(s) for s in args)


def repeat_python(a: Attribution, image_path: str | os.PathLike | None = None) -> str:
    """The :func:`napari_xai.engine.explain` call that makes ``a`` again."""
    source = str(a.model.get("source", ""))
    if source.startswith("<"):  # an in-process module: only its weights hash identifies it
        model, note = "model", f"  # model: the in-process {source.strip('<>')}, weights SHA-256 {a.model.get('weights_sha256', '')[:16]}..."
    else:
        model, note = f"load_model({source!r})", ""
    params = "".join(f", {k}={v!r}" for k, v in a.params.items())
    region = ", region=region_mask" if a.target.get("task") == "segmentation" else ""
    return (
        "from napari_xai.engine import explain, load_model, read_image\n"
        f"attribution = explain({model}, read_image({str(image_path or a.image_name)!r}), {a.method!r}, "
        f"target={a.target.get('class_index')!r}{region}{params}){note}"
    )


# ----------------------------------------------------------------------------- drawing


def _views(scan: ScanImage, a: Attribution) -> list[_View]:
    """Axial, coronal and sagittal slices through the map's peak, in radiological display order."""
    base = scan.channels_first()[0]
    if base.ndim == 2:
        sx, sy = scan.geometry.spacing
        return [_View("image", base, a.values, sy, sx, ("", "", "", ""))]
    b, spacing = to_lps(base, scan)
    v, _ = to_lps(a.values, scan)
    sx, sy, sz = spacing
    z, y, x = lps_center(None, scan, a.values, a.sign, v)
    # After reorienting to LPS: columns run R -> L and rows A -> P (axial), so
    # the patient's right is on the left as radiologists read; coronal and
    # sagittal are flipped to put superior at the top.
    return [
        _View(f"axial (slice {z + 1}/{b.shape[0]})", b[z], v[z], sy, sx, ("A", "P", "R", "L")),
        _View(f"coronal ({y + 1}/{b.shape[1]})", b[::-1, y, :], v[::-1, y, :], sz, sx, ("S", "I", "R", "L")),
        _View(f"sagittal ({x + 1}/{b.shape[2]})", b[::-1, :, x], v[::-1, :, x], sz, sy, ("S", "I", "A", "P")),
    ]


def _axial_montage(scan: ScanImage, a: Attribution, count: int = 6) -> list[_View]:
    """The ``count`` axial slices holding the most attribution (sum of |map|), in slice order (3D only)."""
    if a.values.ndim != 3:
        return []
    b, spacing = to_lps(scan.channels_first()[0], scan)
    v, _ = to_lps(a.values, scan)
    energy = np.abs(v).reshape(v.shape[0], -1).sum(axis=1)
    if not energy.any():
        return []
    picks = np.sort(np.argsort(-energy, kind="stable")[: min(count, int((energy > 0).sum()))])
    return [_View(f"axial {k + 1}/{b.shape[0]}", b[k], v[k], spacing[1], spacing[0], ("A", "P", "R", "L")) for k in picks]


def _draw(ax: Any, view: _View, window: tuple[float, float], cmap: Any, norm: Normalize, overlay_limit: float | None, *, scale_bar: bool = True, letters: bool = True) -> None:
    """The scan slice in grey, the map over it where ``overlay_limit`` is given, letters and scale bar."""
    ax.set_facecolor("black")
    aspect = view.row_mm / view.col_mm
    ax.imshow(view.base, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="nearest")
    if overlay_limit is not None:
        rgba = cmap(norm(view.values))
        rgba[..., 3] = overlay_opacity(view.values, overlay_limit)
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if letters:
        _letters(ax, view.letters)
    if scale_bar:
        _scale_bar(ax, view)


def _letters(ax: Any, letters: tuple[str, str, str, str]) -> None:
    top, bottom, left, right = letters
    for text, xy, ha, va in ((top, (0.5, 0.97), "center", "top"), (bottom, (0.5, 0.03), "center", "bottom"), (left, (0.03, 0.5), "left", "center"), (right, (0.97, 0.5), "right", "center")):
        if text:
            ax.text(*xy, text, transform=ax.transAxes, color="yellow", fontsize=8, weight="bold", ha=ha, va=va)


def _scale_bar(ax: Any, view: _View) -> None:
    """A bar of a round length in mm along the bottom left (columns are ``col_mm`` apart)."""
    width_mm = view.base.shape[1] * view.col_mm
    length = max([mm for mm in SCALE_BAR_MM if mm <= width_mm / 3] or [SCALE_BAR_MM[0]])
    rows = view.base.shape[0]
    x0 = 0.06 * view.base.shape[1]
    y0 = rows - 1 - 0.07 * rows
    ax.plot([x0, x0 + length / view.col_mm], [y0, y0], color="white", linewidth=2.2, solid_capstyle="butt")
    ax.text(x0 + 0.5 * length / view.col_mm, y0 - 0.03 * rows, f"{length} mm", color="white", fontsize=6.5, ha="center", va="bottom")
    ax.set_xlim(-0.5, view.base.shape[1] - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)


def _sign_convention(a: Attribution, hi: float, colormap: str) -> str:
    target = a.target.get("label") or a.target.get("description", "the target")
    if a.sign == "non-negative":
        return (
            f"Sign convention: non-negative map ({colormap} colour map). Brighter = larger contribution to the model's "
            f"output for '{target}' (how much, not in which direction); 0 = none. Colour limits 0 to {hi:.3g} "
            f"(99.5th percentile of the map); {TRANSPARENCY_TEXT}."
        )
    return (
        f"Sign convention: signed map ({colormap} colour map). Red = evidence for '{target}' (raises the model's output), "
        f"blue = evidence against (lowers it), white = 0. Colour limits +/-{hi:.3g} (99.5th percentile of |map|); "
        f"{TRANSPARENCY_TEXT}."
    )


def draw_table(ax: Any, rows: list[list[str]], *, col_widths: Sequence[float], header: list[str] | None, fontsize: float) -> None:
    """A table with horizontal rules from the top left of ``ax`` (multi-line cells get taller rows)."""
    table = ax.table(cellText=rows, colLabels=header, colWidths=list(col_widths), loc="upper left", cellLoc="left", edges="horizontal")
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    cells = table.get_celld()
    lines_per_row: dict[int, int] = {}
    for (r, _c), cell in cells.items():
        lines_per_row[r] = max(lines_per_row.get(r, 1), cell.get_text().get_text().count("\n") + 1)
    for (r, _c), cell in cells.items():
        cell.set_edgecolor("0.8")
        cell.set_height(cell.get_height() * (1.0 + 0.9 * (lines_per_row[r] - 1)))
        if header is not None and r == 0:
            cell.set_text_props(weight="bold")


def _orientation_code(scan: ScanImage) -> str:
    g = scan.geometry
    if g.dim != 3:
        return "2D image"
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(g.direction)
    oblique = not np.allclose(np.abs(g.direction_matrix), np.round(np.abs(g.direction_matrix)), atol=1e-4)
    return f"{code} (index axes point to {', '.join(code)}){'; oblique' if oblique else ''}"


def _value_text(v: Any) -> str:
    return json.dumps(list(v) if isinstance(v, tuple) else v) if not isinstance(v, str) else v or '""'


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(text), width, break_long_words=True)) or str(text)


def _wrap_code(text: str, width: int = 118) -> list[str]:
    out = []
    for line in text.splitlines() or [""]:
        while len(line) > width:
            out.append(line[:width])
            line = "    " + line[width:]
        out.append(line)
    return out
