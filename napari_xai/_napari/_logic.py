"""What the dock widget does, without Qt: models, method menus, parameter forms, runs, results, compare, export.

The widget (``_qt/_dock_widget.py``) only wires signals to these functions, as
in napari-animation; the compute is one generator (:func:`run_jobs`, wrapping
the engine's :func:`~napari_xai.engine.explain_iter`) that tests can drain
synchronously and the widget runs in a thread worker, as in stardist-napari.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterable

import numpy as np

from napari_xai.engine import (
    Attribution,
    ImageError,
    LoadedModel,
    MethodSpec,
    ParamSpec,
    Prediction,
    Progress,
    ScanImage,
    explain_iter,
    list_methods,
    load_model,
)
from napari_xai.engine import predict as engine_predict
from napari_xai.engine.estimate import Estimate, format_seconds
from napari_xai.engine.estimate import estimate as engine_estimate
from napari_xai.engine.display import display_settings
from napari_xai.engine.overlay import PRINT_DPI, add_colorbar, caption_lines, render_overlay
from napari_xai.engine.registry import FAMILIES

from ._layers import PROVENANCE_KEY, PreparedResult, attribution_from_layer, changed_transforms, peak_index, prepare_result, result_layer_kwargs, scan_from_layer

#: Set to 1 to run everything on the main thread (for debugging with pdb or a profiler).
NO_THREADS_ENV = "NAPARI_XAI_NO_THREADS"
#: Metadata key naming the source layer a result was computed on.
SOURCE_KEY = "napari_xai_source"
#: Metadata key marking layers added for the compare grid (scan underlays).
COMPARE_KEY = "napari_xai_compare"
#: Export layouts: the canvas as shown, orthogonal slices through the cursor, an axial montage.
EXPORT_LAYOUTS = ("current view", "orthogonal", "montage")
#: Method selected when the widget opens (fast and faithful on the sample model), if registered.
DEFAULT_METHOD = "integrated_gradients"


def threads_disabled() -> bool:
    """True when ``NAPARI_XAI_NO_THREADS`` asks for runs on the main thread."""
    return os.environ.get(NO_THREADS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------- models


def sample_models(folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """Bundled sample models: every ``*.json`` spec in ``napari_xai/samples`` with a ``weights`` field whose file exists.

    Returns
    -------
    dict
        Display name (the spec's ``name``, else the file stem) -> spec path, sorted by name.
    """
    if folder is None:
        from napari_xai.samples import SAMPLES_DIR

        folder = SAMPLES_DIR
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not data.get("weights"):
            continue
        if not (path.parent / str(data["weights"])).is_file():
            continue
        found[str(data.get("name") or path.stem)] = path
    return dict(sorted(found.items()))


_MODEL_CACHE: dict[tuple[str, float], LoadedModel] = {}


def get_model(model: Any) -> LoadedModel:
    """A :class:`LoadedModel` for a path (cached by path and modification time) or an in-process model."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        p = Path(model).resolve()
        key = (str(p), p.stat().st_mtime if p.exists() else 0.0)
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = load_model(p)
        return _MODEL_CACHE[key]
    from napari_xai.engine.models.loading import as_loaded_model

    return as_loaded_model(model)


def default_sample_model(samples: dict[str, Path] | None = None) -> Path | None:
    """The sample classifier if it is there, else the first sample model, else None."""
    from napari_xai.samples import LESION_CLASSIFIER_SPEC

    samples = sample_models() if samples is None else samples
    for path in samples.values():
        if Path(path).resolve() == Path(LESION_CLASSIFIER_SPEC).resolve():
            return path
    return next(iter(samples.values()), None)


def model_label(model: Any) -> str:
    """A short name for a model choice."""
    if isinstance(model, (str, os.PathLike)):
        return Path(model).name
    if isinstance(model, LoadedModel):
        return model.name
    return f"<{type(model).__name__}>"


def predict(model: Any, scan: ScanImage) -> Prediction:
    """The model's decision on ``scan``, for the target menu (the engine's :func:`~napari_xai.engine.predict`)."""
    return engine_predict(get_model(model), scan)


def target_choices(prediction: Prediction | None, labels: list[str] | None) -> list[tuple[str, Any]]:
    """Target menu entries ``(text, value)``: the predicted class first (value None), then each class by name."""
    first = f"{prediction.describe()}" if prediction is not None else "predicted class"
    names = (prediction.labels if prediction is not None else None) or labels or []
    if prediction is not None and prediction.task == "regression":
        return [(first, None)]
    return [(first, None)] + [(f"{k}: {name}", k) for k, name in enumerate(names)]


# ----------------------------------------------------------------------------- methods and parameters


def methods_by_family() -> list[tuple[str, list[MethodSpec]]]:
    """Registered methods grouped by family, families in catalogue order (new methods appear by themselves)."""
    groups: dict[str, list[MethodSpec]] = {}
    for spec in list_methods():
        groups.setdefault(spec.family, []).append(spec)
    order = list(FAMILIES) + sorted(set(groups) - set(FAMILIES))
    return [(fam, groups[fam]) for fam in order if fam in groups]


def method_help(spec: MethodSpec) -> str:
    """The method's help label: summary, then the paper (authors, title, venue, year) a user can look up."""
    return f"{spec.summary}\n{spec.citation}" if spec.citation else spec.summary


def ready_message(image: str | None, model: Any, method: str | None, prediction: Prediction | None) -> str:
    """The idle status line: what is still to choose, else what Run will explain."""
    if image is None:
        return "Open a scan (File > Open, or File > Open Sample > napari-xai), then press Run."
    if model is None:
        return "Choose a model (a sample, or 'Open model file…'), then press Run."
    title = get_method_title(method)
    decided = f" The model says {prediction.describe().removeprefix('predicted: ')}." if prediction is not None else ""
    return f"Ready: press Run to explain {image!r} with {title}.{decided}"


def get_method_title(name: str | None) -> str:
    """Display name of a registered method (the name itself if unknown)."""
    from napari_xai.engine import get_method

    try:
        return get_method(name).title if name else "the chosen method"
    except Exception:
        return str(name)


def param_widget_options(p: ParamSpec) -> dict[str, Any]:
    """Keyword arguments for ``magicgui.widgets.create_widget`` for one parameter spec.

    One rule for every method: booleans are check boxes, numbers spin boxes
    bounded by the spec, strings with choices combo boxes, per-axis numbers a
    text field taking one value or ``z, y, x``. The tooltip is the spec's help.
    """
    opts: dict[str, Any] = {"name": p.name, "label": p.name.replace("_", " "), "options": {"tooltip": p.help}}
    if p.per_axis:
        opts.update(value=str(p.default), widget_type="LineEdit")
        opts["options"]["tooltip"] = f"{p.help} One value, or z, y, x."
    elif p.type is bool:
        opts.update(value=bool(p.default), widget_type="CheckBox")
    elif p.type is int:
        opts.update(value=int(p.default), widget_type="SpinBox")
        opts["options"].update(min=int(p.min) if p.min is not None else -(2**31), max=int(p.max) if p.max is not None else 2**31 - 1)
    elif p.type is float:
        lo = float(p.min) if p.min is not None else -1e9
        hi = float(p.max) if p.max is not None else 1e9
        step = _float_step(p.default, lo, hi)
        opts.update(value=float(p.default), widget_type="FloatSpinBox")
        opts["options"].update(min=lo, max=hi, step=step)
    elif p.choices:
        opts.update(value=p.default, widget_type="ComboBox")
        opts["options"]["choices"] = list(p.choices)
    else:
        opts.update(value=str(p.default), widget_type="LineEdit")
    return opts


def _float_step(default: float, lo: float, hi: float) -> float:
    scale = abs(float(default)) or (hi - lo if np.isfinite(hi - lo) and hi - lo < 1e6 else 1.0)
    return float(10 ** np.floor(np.log10(scale)) / 10) if scale > 0 else 0.01


def parse_param_value(p: ParamSpec, raw: Any) -> Any:
    """A widget's value as the method takes it (per-axis text ``"8"`` or ``"8, 8, 4"`` becomes int/float or tuple).

    Range and type are checked by the engine (its messages name the fix).
    """
    if not p.per_axis or not isinstance(raw, str):
        return raw
    parts = [s for s in raw.replace(";", ",").replace(" ", ",").split(",") if s]
    cast = int if p.type is int else float

    def conv(s: str) -> Any:
        try:
            return cast(s) if p.type is float or float(s) == int(float(s)) else float(s)
        except ValueError:
            return s  # the engine names the problem

    vals = [conv(s) for s in parts]
    if not vals:
        return p.default
    return vals[0] if len(vals) == 1 else tuple(vals)


# ----------------------------------------------------------------------------- runs


@dataclass
class Job:
    """One explanation to compute.

    Parameters
    ----------
    model : LoadedModel, nn.Module or path
    scan : ScanImage
        The source layer's data with its geometry.
    method : str
        Registry name.
    target : int or None
        Class index; None: the predicted class.
    region : numpy.ndarray or None
        Boolean mask on the scan grid (segmentation models).
    reduce : str
        ``sum`` or ``mean`` over the region.
    params : dict
        Method parameters.
    """

    model: Any
    scan: ScanImage
    method: str
    target: Any = None
    region: np.ndarray | None = None
    reduce: str = "sum"
    params: dict[str, Any] = field(default_factory=dict)
    slice_index: int | None = None


def takes_2d(model: Any) -> bool:
    """True when the model's spec says it takes 2D images (reads the spec only, never the weights)."""
    from napari_xai.engine import ModelSpec
    from napari_xai.engine.models.spec import sidecar_path

    try:
        if isinstance(model, LoadedModel):
            return model.spec.spatial_dims == 2
        if isinstance(model, (str, os.PathLike)):
            p = Path(model)
            spec_path = p if p.suffix.lower() == ".json" else sidecar_path(p)
            return spec_path.is_file() and ModelSpec.read(spec_path).spatial_dims == 2
    except Exception:  # unreadable spec: the run reports it
        return False
    return False


def current_slice(viewer: Any, layer: Any) -> int:
    """Index along the layer's first data axis (z) of the slice the viewer shows."""
    z = float(np.asarray(layer.world_to_data(viewer.dims.point[-layer.ndim :]))[0])
    return int(np.clip(round(z), 0, layer.data.shape[0] - 1))


def slice_scan(scan: ScanImage, k: int) -> ScanImage:
    """Slice ``k`` (along z) of a volume as a 2D image with its in-plane spacing (for 2D models)."""
    sx, sy = scan.geometry.spacing[0], scan.geometry.spacing[1]
    from napari_xai.engine import Geometry

    return ScanImage(np.asarray(scan.array[k]), Geometry((0.0, 0.0), (sx, sy), (1.0, 0.0, 0.0, 1.0)), None, name=f"{scan.name} z={k}")


def embed_slice(attribution: Attribution, scan: ScanImage, k: int) -> Attribution:
    """A 2D map of slice ``k`` placed on the volume's grid (zero elsewhere), with the volume's geometry."""
    values = np.zeros(scan.spatial_shape, dtype=np.float32)
    values[k] = attribution.values
    target = dict(attribution.target, slice=k)
    target["description"] = f"{attribution.target.get('description', '')} on slice z={k}"
    return dataclasses.replace(attribution, values=values, geometry=scan.geometry, target=target, image_name=scan.name)


def run_jobs(jobs: list[Job]) -> Generator[Progress, None, list[Attribution]]:
    """Run the jobs one after the other: yields overall progress, returns their attributions.

    ``done``/``total`` count thousandths of the whole set of jobs. Closing the
    generator closes the engine's generator of the job in flight (cancel).
    """
    results: list[Attribution] = []
    n = len(jobs)
    for i, job in enumerate(jobs):
        k = job.slice_index
        image = slice_scan(job.scan, k) if k is not None else job.scan
        region = job.region[k] if k is not None and job.region is not None else job.region
        gen = explain_iter(get_model(job.model), image, job.method, job.target, region=region, reduce=job.reduce, **job.params)
        prefix = f"[{i + 1}/{n}] " if n > 1 else ""
        try:
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    results.append(stop.value if k is None else embed_slice(stop.value, job.scan, k))
                    break
                yield Progress(int(1000 * (i + event.fraction)), 1000 * n, prefix + event.message)
        finally:
            gen.close()
    yield Progress(1000 * n, 1000 * n, "done")
    return results


def run_and_prepare(jobs: list[Job]) -> Generator[Progress, None, list[PreparedResult]]:
    """:func:`run_jobs`, then each result's contrast, colour map and peak (:func:`prepare_result`).

    Run in a host's worker thread, this leaves the main thread only napari's
    own work when the result is shown.
    """
    results = yield from run_jobs(jobs)
    return [prepare_result(a) for a in results]


def estimate_jobs(jobs: list[Job]) -> list[Estimate]:
    """The engine's cost estimate of each job, as :func:`run_jobs` would run it (a timed probe per job)."""
    out = []
    for job in jobs:
        k = job.slice_index
        image = slice_scan(job.scan, k) if k is not None else job.scan
        region = job.region[k] if k is not None and job.region is not None else job.region
        out.append(engine_estimate(get_model(job.model), image, job.method, job.target, region=region, **job.params))
    return out


def describe_estimates(estimates: list[Estimate]) -> str:
    """One line for the status bar: the total, and each job's estimate when there are several."""
    if len(estimates) == 1:
        return "Estimate: " + estimates[0].describe()
    total = sum(e.seconds for e in estimates)
    return f"Estimate: about {format_seconds(total)} for {len(estimates)} methods (" + "; ".join(
        f"{e.method} {format_seconds(e.seconds)}" for e in estimates) + ")"


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


# ----------------------------------------------------------------------------- checks ("sanity")


def _completeness(value: dict[str, Any]) -> str:
    rel = value.get("relative_delta")
    ok = rel is not None and rel < 0.05
    return f"completeness: sum {value.get('attribution_sum', float('nan')):.3g} vs score change {value.get('score_difference', float('nan')):.3g} ({100 * rel:.1f}% off, {'ok' if ok else 'raise steps'})"


#: Formatters for known checks; any other check is shown as ``name: value``. Checks from
#: the evaluation issue (faithfulness, randomisation) slot in here by name.
CHECK_FORMATTERS: dict[str, Callable[[Any], str]] = {"completeness": _completeness}
#: Checks that are bookkeeping, not sanity: not shown.
HIDDEN_CHECKS = ("model_grid_is_scan_grid",)


def format_checks(checks: dict[str, Any]) -> list[str]:
    """One line per check an Attribution carries."""
    lines = []
    for name, value in checks.items():
        if name in HIDDEN_CHECKS:
            continue
        fmt = CHECK_FORMATTERS.get(name)
        if fmt is not None:
            try:
                lines.append(fmt(value))
                continue
            except (TypeError, ValueError, KeyError):
                pass
        if isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"{name.replace('_', ' ')}: {value}")
    return lines


def summary_line(attribution: Attribution, checks: bool = True) -> str:
    """Status line after a run: name, probability and raw score, time, and (with ``checks``) the checks."""
    t = attribution.timings.get("total_s")
    parts = [attribution.name]
    if attribution.score_text():
        parts.append(attribution.score_text())
    if t is not None:
        parts.append(f"{t:.1f} s")
    if checks:
        parts += format_checks(attribution.checks)
    return "; ".join(parts)


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
                **_transforms(source),
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
    for layer in viewer.layers:
        if VISIBLE_BEFORE_KEY in layer.metadata:
            layer.visible = bool(layer.metadata.pop(VISIBLE_BEFORE_KEY))
        elif layer.metadata.get(COMPARE_KEY) and not layer.metadata.get(PROVENANCE_KEY):
            layer.visible = False  # scan underlays of the grid: the source layer shows the scan again
    grid = viewer_grid(viewer)
    grid.enabled = False
    grid.stride = 1


def viewer_grid(viewer: Any) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return getattr(canvas, "grid", None) or viewer.grid


def _transforms(layer: Any) -> dict[str, Any]:
    from ._layers import source_transforms

    return source_transforms(layer)


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
        return compose_view_figure(shot, attribution, path, colormap=result.colormap, contrast_limits=limits, dpi=dpi, user_limits=user_limits)
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


def compose_view_figure(
    shot: np.ndarray,
    attribution: Attribution,
    path: str | os.PathLike,
    *,
    colormap: Any = None,
    contrast_limits: tuple[float, float] | None = None,
    dpi: int = PRINT_DPI,
    user_limits: bool = False,
) -> Path:
    """The canvas screenshot with a colour bar for the map and the caption, as in :func:`render_overlay`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    settings = display_settings(attribution.values, attribution.sign)
    limits = tuple(contrast_limits or settings.contrast_limits)
    if colormap is not None and hasattr(colormap, "colors"):
        cmap = ListedColormap(np.asarray(colormap.map(np.linspace(0, 1, 256)))[:, :3])
    else:
        from matplotlib import colormaps

        cmap = colormaps[settings.colormap]
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
    fig.text(0.02, 0.08 / fig_h, "\n".join(lines), color="white", fontsize=6.5, va="bottom", linespacing=1.3)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, facecolor="black")
    return p
