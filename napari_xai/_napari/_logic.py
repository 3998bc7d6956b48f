"""What the napari dock widget does that is napari's own, without Qt: layers, the compare grid, figures of the viewer.

What every host does alike (models, jobs and their runs, 2D slices, the
parameter controls, checks as text) is in :mod:`napari_xai.session`; the
widget (``_qt/_dock_widget.py``) wires signals to that layer and to these
functions, as napari-animation keeps its model apart from ``_qt/``.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path
from typing import Any, Callable, Generator, Iterable

import numpy as np

from napari_xai.engine import Attribution, ImageError, ParamSpec, Prediction, Progress
from napari_xai.engine.display import display_settings
from napari_xai.engine.overlay import PRINT_DPI, render_overlay, render_view
from napari_xai.session.controls import control_for
from napari_xai.session.jobs import Job, run_jobs
from napari_xai.session.methods import method_title

from ._layers import (
    PROVENANCE_KEY,
    PreparedResult,
    attribution_from_layer,
    changed_transforms,
    peak_index,
    prepare_result,
    result_layer_kwargs,
    scan_from_layer,
    source_transforms,
)

#: Set to 1 to run everything on the main thread (for debugging with pdb or a profiler).
NO_THREADS_ENV = "NAPARI_XAI_NO_THREADS"
#: Metadata key naming the source layer a result was computed on.
SOURCE_KEY = "napari_xai_source"
#: Metadata key marking layers added for the compare grid (scan underlays).
COMPARE_KEY = "napari_xai_compare"
#: Export layouts: the canvas as shown, orthogonal slices through the cursor, an axial montage.
EXPORT_LAYOUTS = ("current view", "orthogonal", "montage")


def threads_disabled() -> bool:
    """True when ``NAPARI_XAI_NO_THREADS`` asks for runs on the main thread."""
    return os.environ.get(NO_THREADS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------- methods and parameters


def ready_message(image: str | None, model: Any, method: str | None, prediction: Prediction | None) -> str:
    """The idle status line: what is still to choose, else what Run will explain."""
    if image is None:
        return "Open a scan (File > Open, or File > Open Sample > napari-xai), then press Run."
    if model is None:
        return "Choose a model (a sample, or 'Open model file…'), then press Run."
    title = method_title(method)
    decided = f" The model says {prediction.describe().removeprefix('predicted: ')}." if prediction is not None else ""
    return f"Ready: press Run to explain {image!r} with {title}.{decided}"


def param_widget_options(p: ParamSpec) -> dict[str, Any]:
    """Keyword arguments for ``magicgui.widgets.create_widget`` rendering one parameter's :class:`~napari_xai.session.controls.Control`."""
    control = control_for(p)
    opts: dict[str, Any] = {"name": p.name, "label": control.label, "options": {"tooltip": control.help}}
    if control.kind == "bool":
        opts.update(value=bool(control.default), widget_type="CheckBox")
    elif control.kind == "int":
        opts.update(value=int(control.default), widget_type="SpinBox")
        opts["options"].update(min=int(control.minimum), max=int(control.maximum))
    elif control.kind == "float":
        opts.update(value=float(control.default), widget_type="FloatSpinBox")
        opts["options"].update(min=control.minimum, max=control.maximum, step=control.step)
    elif control.kind == "choice":
        opts.update(value=str(control.default), widget_type="ComboBox")
        opts["options"]["choices"] = list(control.choices)
    else:  # per_axis and text
        opts.update(value=control.text(control.default), widget_type="LineEdit")
    return opts


# ----------------------------------------------------------------------------- runs


def current_slice(viewer: Any, layer: Any) -> int:
    """Index along the layer's first data axis (z) of the slice the viewer shows."""
    z = float(np.asarray(layer.world_to_data(viewer.dims.point[-layer.ndim :]))[0])
    return int(np.clip(round(z), 0, layer.data.shape[0] - 1))


def run_and_prepare(jobs: list[Job]) -> Generator[Progress, None, list[PreparedResult]]:
    """The session's :func:`~napari_xai.session.jobs.run_jobs`, then each result's contrast, colour map and peak (:func:`prepare_result`).

    Run in a host's worker thread, this leaves the main thread only napari's
    own work when the result is shown.
    """
    results = yield from run_jobs(jobs)
    return [prepare_result(a) for a in results]


def region_from_labels(labels_layer: Any, label_value: int | None = None) -> np.ndarray:
    """A boolean region from a Labels layer: the voxels of ``label_value``, or every non-zero voxel."""
    data = np.asarray(labels_layer.data)
    region = data != 0 if not label_value else data == int(label_value)
    if not region.any():
        raise ImageError(
            f"The region layer {labels_layer.name!r} has no painted voxel" + (f" with label {label_value}." if label_value else "."),
            "Paint the region in the Labels layer, or choose no region to use the model's predicted mask.",
        )
    return region


# ----------------------------------------------------------------------------- results in the viewer


def show_attribution(
    viewer: Any, attribution: Attribution | PreparedResult, source: Any, replace: Any | None = None, *, colorbar: bool = True
) -> Any:
    """Add ``attribution`` as an image layer aligned with ``source``, or update ``replace`` in place.

    A :class:`PreparedResult` (from a worker) brings its contrast limits and
    colour map; nothing is recomputed here. Replacing sets only the
    transforms that changed, and the data last, so the layer is re-sliced
    once. With ``colorbar=False`` the caller shows the colour bar later
    (:func:`show_colorbar`): napari builds it on the main thread, and doing
    it in a later turn of the event loop halves the longest stall.

    Returns the layer.
    """
    prepared = prepare_result(attribution)
    kwargs = result_layer_kwargs(prepared, source)
    kwargs["metadata"][SOURCE_KEY] = source.name
    if replace is not None and replace in viewer.layers:
        for key, value in changed_transforms(replace, kwargs).items():
            setattr(replace, key, value)
        replace.metadata = kwargs["metadata"]
        colormap = kwargs["colormap"]
        if replace.colormap.name != getattr(colormap, "name", colormap):  # a new colour map rebuilds the shader
            replace.colormap = colormap
        limits = list(kwargs["contrast_limits"])
        if list(replace.contrast_limits_range) != limits:
            replace.contrast_limits_range = limits
        if list(replace.contrast_limits) != limits:
            replace.contrast_limits = limits
        for key in ("opacity", "blending", "name"):
            if getattr(replace, key) != kwargs[key]:
                setattr(replace, key, kwargs[key])
        replace.data = prepared.attribution.values
        if colorbar:
            show_colorbar(viewer, replace)
        return replace
    layer = viewer.add_image(prepared.attribution.values, **kwargs)
    if colorbar:
        show_colorbar(viewer, layer)
    return layer


def go_to_peak(viewer: Any, layer: Any, index: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Move the viewer's slices to the map's strongest voxel (positive evidence first); returns its index.

    ``index`` is the peak when it is known (:attr:`PreparedResult.peak`); else it is found in the layer's data.
    """
    values = np.asarray(layer.data)
    if index is None:
        prov = layer.metadata.get(PROVENANCE_KEY) or {}
        index = peak_index(values, prov.get("sign", "signed"))
    idx = tuple(int(i) for i in index)
    if values.ndim == 3:
        world = np.asarray(layer.data_to_world(idx), dtype=float)
        axes = tuple(range(viewer.dims.ndim - 3, viewer.dims.ndim))
        viewer.dims.set_point(axes, tuple(world[-3:]))
    return idx


def show_colorbar(viewer: Any, layer: Any, only: bool = True) -> None:
    """Show ``layer``'s colour bar on the canvas (napari >= 0.6); with ``only``, hide other results' bars."""
    if not hasattr(layer, "colorbar"):
        return
    if only:
        for other in viewer.layers:
            if other.name != layer.name and other.metadata.get(PROVENANCE_KEY) and hasattr(other, "colorbar"):
                other.colorbar.visible = False
    layer.colorbar.visible = True


#: Metadata key keeping a layer's visibility from before a comparison, restored by :func:`end_comparison`.
VISIBLE_BEFORE_KEY = "napari_xai_visible_before_compare"
_COMPARE_RUNS = itertools.count(1)


def show_comparison(viewer: Any, source: Any, attributions: Iterable[Attribution | PreparedResult]) -> list[Any]:
    """Side by side (napari grid): each map over its own view of the scan, contrast per map.

    Adds, per map, an underlay of the scan (same data, no copy) and the map,
    then shows only these pairs in a grid with a stride of two (from the top
    of the layer list). :func:`end_comparison` restores the previous view.
    Returns the added layers (underlay, map, underlay, map, ...).
    """
    added: list[Any] = []
    for step in comparison_steps(viewer, source, attributions, added):
        step()
    return added


def comparison_steps(viewer: Any, source: Any, attributions: Iterable[Attribution | PreparedResult], added: list[Any]) -> list[Callable[[], None]]:
    """:func:`show_comparison` as steps, for a host to run one per turn of its event loop.

    Each layer added, each colour bar, hiding the other layers, the grid and
    the view's reset cost napari main-thread time (a scene-graph re-layout
    each); one step each keeps every turn short. The layers are appended to
    ``added`` (underlay, map, underlay, map, ...) as the steps run.
    """
    prepared = [prepare_result(item) for item in attributions]
    run_id = f"compare-{next(_COMPARE_RUNS)}"

    def remember_visibility() -> None:
        for layer in viewer.layers:
            layer.metadata.setdefault(VISIBLE_BEFORE_KEY, bool(layer.visible))

    def add_underlay(item: PreparedResult) -> None:
        added.append(
            viewer.add_image(
                source.data,
                name=f"{source.name} | {item.attribution.method_title}",
                colormap=source.colormap.name,
                contrast_limits=tuple(source.contrast_limits),
                metadata={COMPARE_KEY: run_id},
                **source_transforms(source),
            )
        )

    def add_map(item: PreparedResult) -> None:
        layer = show_attribution(viewer, item, source, colorbar=False)
        layer.metadata[COMPARE_KEY] = run_id
        added.append(layer)

    def hide_the_rest() -> None:
        # napari re-lays out its whole scene graph at each visibility change: change only what differs
        # (napari hands plugins proxies of its layers, a new one per access: compare by a mark, not identity)
        for layer in viewer.layers:
            show = layer.metadata.get(COMPARE_KEY) == run_id
            if bool(layer.visible) != show:
                layer.visible = show

    def grid_view() -> None:
        grid = viewer_grid(viewer)
        grid.stride = -2
        grid.enabled = True

    def colorbar(k: int) -> Callable[[], None]:
        return lambda: show_colorbar(viewer, added[2 * k + 1], only=False)

    per_map = [step for item in prepared for step in (functools.partial(add_underlay, item), functools.partial(add_map, item))]
    return [remember_visibility, *per_map, hide_the_rest, grid_view, viewer.reset_view, *(colorbar(k) for k in range(len(prepared)))]


def end_comparison(viewer: Any) -> None:
    """Leave the grid and show the layers that were visible before the comparison."""
    for step in end_comparison_steps(viewer):
        step()


def end_comparison_steps(viewer: Any) -> list[Callable[[], None]]:
    """:func:`end_comparison` as steps, for a host to run one per turn of its event loop.

    Each visibility change re-lays out napari's scene graph, so only the
    layers whose visibility differs are changed, one per step; leaving the
    grid is the last step.
    """
    steps: list[Callable[[], None]] = []
    for layer in viewer.layers:
        if VISIBLE_BEFORE_KEY in layer.metadata:
            show = bool(layer.metadata.pop(VISIBLE_BEFORE_KEY))
        elif layer.metadata.get(COMPARE_KEY) and not layer.metadata.get(PROVENANCE_KEY):
            show = False  # scan underlays of the grid: the source layer shows the scan again
        else:
            continue
        if bool(layer.visible) != show:
            steps.append(lambda layer=layer, show=show: setattr(layer, "visible", show))

    def leave_grid() -> None:
        grid = viewer_grid(viewer)
        grid.enabled = False
        grid.stride = 1

    steps.append(leave_grid)
    return steps


def viewer_grid(viewer: Any) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return getattr(canvas, "grid", None) or viewer.grid


# ----------------------------------------------------------------------------- export


def find_source_layer(viewer: Any, result: Any) -> Any:
    """The image layer a result was computed on (by name)."""
    meta = result.metadata
    name = meta.get(SOURCE_KEY) or (meta.get(PROVENANCE_KEY) or {}).get("image")
    for layer in viewer.layers:
        if layer.name == name and not layer.metadata.get(PROVENANCE_KEY) and not layer.metadata.get(COMPARE_KEY):
            return layer
    raise ImageError(
        f"The scan {name!r} that {result.name!r} was computed on is no longer in the viewer.",
        "Open the scan again (same layer name), or export the map as NIfTI with File > Save Selected Layers.",
    )


def export_figure(viewer: Any, result: Any, path: str | os.PathLike, layout: str = "orthogonal", *, dpi: int = PRINT_DPI, mask: np.ndarray | None = None, mask_label: str = "region") -> Path:
    """Write a PNG/PDF of a result layer over its scan, with colour bar and caption.

    The colour limits are the layer's own contrast limits (so a user sets
    them in napari's layer controls); the caption says when they differ from
    the default.

    Parameters
    ----------
    viewer : napari.Viewer
    result : napari.layers.Image
        A napari-xai result layer.
    path : str or PathLike
        ``.png`` or ``.pdf``.
    layout : {"current view", "orthogonal", "montage"}
        The canvas as shown now; axial/coronal/sagittal slices through the
        viewer's current position; or an axial slice montage.
    dpi : int
        Resolution (default 300, for print).
    mask : numpy.ndarray, optional
        Boolean mask on the scan grid (e.g. the region Labels layer), drawn as an outline.
    mask_label : str
        What the mask is, for the caption.

    Returns
    -------
    Path
    """
    if layout not in EXPORT_LAYOUTS:
        raise ValueError(f"layout must be one of {EXPORT_LAYOUTS}, not {layout!r}")
    attribution = attribution_from_layer(result)
    limits = tuple(float(v) for v in result.contrast_limits)
    user_limits = not np.allclose(limits, display_settings(attribution.values, attribution.sign).contrast_limits, rtol=1e-4)
    if layout == "current view":
        shot = viewer.screenshot(canvas_only=True, flash=False)
        return render_view(shot, attribution, path, cmap=matplotlib_colormap(result.colormap), limits=limits, dpi=dpi, user_limits=user_limits)
    source = find_source_layer(viewer, result)
    scan = scan_from_layer(source)
    center = None
    if layout == "orthogonal" and attribution.values.ndim == 3:
        idx = np.round(np.asarray(source.world_to_data(viewer.dims.point))[-3:]).astype(int)
        center = tuple(int(np.clip(i, 0, s - 1)) for i, s in zip(idx, attribution.values.shape))
    if mask is not None and np.shape(mask) != attribution.values.shape:
        mask = None  # a region drawn on another grid cannot be outlined here
    return render_overlay(scan, attribution, path, layout=layout, center=center, dpi=dpi, limits=limits if user_limits else None, mask=mask, mask_label=mask_label)


def report_layers(viewer: Any, result: Any) -> list[Any]:
    """The visible result layers computed on the same scan as ``result`` (``result`` first), not comparison copies."""
    source = find_source_layer(viewer, result)
    others = [
        layer
        for layer in viewer.layers
        if layer.metadata.get(PROVENANCE_KEY) and not layer.metadata.get(COMPARE_KEY) and layer.visible and layer.name != result.name
        and (layer.metadata.get(SOURCE_KEY) or layer.metadata[PROVENANCE_KEY].get("image")) == source.name
    ]
    return [result] + others


def export_report(viewer: Any, result: Any, path: str | os.PathLike) -> Any:
    """Write the PDF report (and PNG pages) of the scan ``result`` was computed on, with all its visible maps.

    Returns
    -------
    napari_xai.engine.report.ReportFiles
    """
    from napari_xai.engine.report import write_report

    source = find_source_layer(viewer, result)
    maps = [attribution_from_layer(layer) for layer in report_layers(viewer, result)]
    image_path = getattr(getattr(source, "source", None), "path", None)
    return write_report(scan_from_layer(source), maps, path, image_path=image_path)


def matplotlib_colormap(colormap: Any) -> Any:
    """A napari colour map as matplotlib's (its colours, opacity dropped), or None for one without colours."""
    if colormap is None or not hasattr(colormap, "colors"):
        return None
    from matplotlib.colors import ListedColormap

    return ListedColormap(np.asarray(colormap.map(np.linspace(0, 1, 256)))[:, :3])
