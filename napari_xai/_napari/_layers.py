"""napari layers <-> engine objects: geometry, scans, result layers. No Qt here.

The forward direction (geometry -> layer kwargs) is the engine's
:func:`~napari_xai.engine.napari_layer_kwargs`; this module holds its inverse
(:func:`layer_geometry`), the reconstruction of a :class:`ScanImage` from an
image layer, and the layer data tuple of an :class:`Attribution`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_xai.engine import Attribution, Geometry, ImageError, ScanImage, napari_layer_kwargs
from napari_xai.engine.attribution import PROVENANCE_KEY
from napari_xai.engine.display import DisplaySettings, display_settings, overlay_alpha
from napari_xai.engine.geometry import geometry_from_data_to_world

# PROVENANCE_KEY (imported above) keys the provenance in a result layer's ``metadata``: the
# same key saved map files carry it under.
#: Key under which the reader keeps the file's geometry in ``metadata`` (for reference).
GEOMETRY_KEY = "napari_xai_geometry"
#: Layer transforms copied from a source layer to its result layers.
TRANSFORM_ATTRS = ("scale", "translate", "rotate", "shear", "affine", "units")


def geometry_layer_kwargs(geometry: Geometry) -> dict[str, Any]:
    """``scale``, ``translate``, ``rotate`` and ``units`` of a layer with this geometry (docs/architecture.md, Geometry)."""
    return napari_layer_kwargs(geometry)


def layer_geometry(layer: Any) -> Geometry:
    """The physical geometry of an image layer: the inverse of :func:`napari_layer_kwargs`.

    For a layer made by :func:`napari_layer_kwargs` this is ``spacing =
    scale[::-1]``, ``origin = translate[::-1]``, ``direction = rotate[::-1,
    ::-1]``. Shear and a non-identity ``affine`` are folded in: the full
    data-to-world matrix ``M`` (``(z, y, x)`` order) is split into column
    norms (spacing) and unit columns (direction). A layer without physical
    metadata is treated the same way: its transforms are taken as physical,
    in the layer's own units.

    Parameters
    ----------
    layer : napari.layers.Image
        A 2D or 3D (non-RGB) image layer.

    Returns
    -------
    Geometry
    """
    affine = np.asarray(layer._data_to_world.affine_matrix, dtype=float)
    ndim = affine.shape[0] - 1
    if ndim not in (2, 3):
        raise ImageError(
            f"The layer {layer.name!r} has {ndim} dimensions.",
            "Use a 2D (y, x) or 3D (z, y, x) image layer; for a time series pick one time point first.",
        )
    try:
        return geometry_from_data_to_world(affine)
    except ValueError:
        raise ImageError(f"The layer {layer.name!r} has a degenerate transform (scale 0).", "Give the layer a positive scale.") from None


def scan_from_layer(layer: Any) -> ScanImage:
    """A :class:`ScanImage` whose array is the layer's data and whose geometry is the layer's.

    Raises
    ------
    ImageError
        RGB layers, multiscale layers or layers of the wrong dimensionality.
    """
    if getattr(layer, "rgb", False):
        raise ImageError(f"The layer {layer.name!r} is RGB.", "Explain a grey-level (single-channel) scan layer.")
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    arr = np.asarray(data)
    if arr.ndim not in (2, 3):
        raise ImageError(
            f"The layer {layer.name!r} has shape {arr.shape}: {arr.ndim} dimensions.",
            "Use a 2D (y, x) or 3D (z, y, x) image layer; for a time series pick one time point first.",
        )
    return ScanImage(arr, layer_geometry(layer), None, name=layer.name)


def source_transforms(layer: Any) -> dict[str, Any]:
    """All of ``layer``'s transforms (scale, translate, rotate, shear, affine, units), to copy onto a result."""
    out: dict[str, Any] = {}
    for attr in TRANSFORM_ATTRS:
        value = getattr(layer, attr, None)
        if value is None:
            continue
        if attr == "affine":
            value = np.asarray(value.affine_matrix).copy()
        elif attr == "units":
            value = tuple(str(u) for u in value)
        else:
            value = np.asarray(value).copy()
        out[attr] = value
    return out


@dataclass(frozen=True)
class PreparedResult:
    """An attribution with what showing it needs, computed once, off the main thread.

    The contrast limits (a sort of every voxel), the colour map and the peak
    cost the event loop tens of milliseconds each on a large map; a worker
    computes them (:func:`prepare_result`) so that adding the layer is
    napari's own work only.

    Parameters
    ----------
    attribution : Attribution
        The map.
    display : DisplaySettings
        Colour map name, contrast limits, opacity and blending.
    peak : tuple of int
        Index of the map's strongest voxel (:func:`peak_index`).
    """

    attribution: Attribution
    display: DisplaySettings
    peak: tuple[int, ...]


def prepare_result(attribution: Attribution | PreparedResult) -> PreparedResult:
    """Contrast, colour map and peak of ``attribution`` (returned as is if already prepared)."""
    if isinstance(attribution, PreparedResult):
        return attribution
    display = display_settings(attribution.values, attribution.sign)
    napari_colormap(display.colormap)  # built and cached here, in the worker's thread
    return PreparedResult(attribution, display, peak_index(attribution.values, attribution.sign))


def peak_index(values: np.ndarray, sign: str) -> tuple[int, ...]:
    """Index of a map's strongest voxel: the largest positive value (the largest ``|value|`` if none is positive)."""
    v = np.asarray(values)
    if sign != "non-negative":
        v = np.where(v > 0, v, 0) if (v > 0).any() else np.abs(v)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(v)), v.shape))


def result_layer_kwargs(attribution: Attribution | PreparedResult, source: Any | None = None) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_image`` showing ``attribution``.

    Colour map from the map's sign (``display_settings``; taken from a
    :class:`PreparedResult` as computed, never recomputed), the source
    layer's transforms (or, with no source layer, the attribution's own
    geometry) and the provenance in ``metadata``.
    """
    prepared = prepare_result(attribution)
    attribution, settings = prepared.attribution, prepared.display
    kwargs: dict[str, Any] = source_transforms(source) if source is not None else geometry_layer_kwargs(attribution.geometry)
    kwargs.update(
        name=attribution.name,
        colormap=napari_colormap(settings.colormap),
        contrast_limits=tuple(float(v) for v in settings.contrast_limits),
        opacity=settings.opacity,
        blending=settings.blending,
        metadata={PROVENANCE_KEY: attribution.provenance()},
    )
    return kwargs


def changed_transforms(layer: Any, transforms: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``transforms`` (as :func:`source_transforms` gives them) that differ from ``layer``'s.

    Setting a transform on a napari layer re-slices it even when the value is
    unchanged; a replaced result usually keeps every transform.
    """
    current = source_transforms(layer)
    out = {}
    for key, value in transforms.items():
        if key not in TRANSFORM_ATTRS:
            continue
        have = current.get(key)
        same = have is not None and (tuple(have) == tuple(value) if key == "units" else np.array_equal(np.asarray(have), np.asarray(value)))
        if not same:
            out[key] = value
    return out


#: Suffix of the diverging colour maps made transparent around zero.
TRANSPARENT_ZERO = "_transparent_zero"


@functools.lru_cache(maxsize=None)
def napari_colormap(name: str) -> Any:
    """The engine's colour map for napari (built once per name; napari layers may share it).

    Sequential maps (``inferno``, drawn with additive blending: black adds
    nothing) are used by name. A diverging map (``bwr``) has an opaque white
    zero that would veil the scan, so its opacity rises with ``|value|`` by
    the rule figures and Slicer use too
    (:func:`~napari_xai.engine.display.overlay_alpha`), hues unchanged.
    """
    if name != "bwr":
        return name
    from matplotlib import colormaps
    from napari.utils.colormaps import Colormap

    t = np.linspace(0.0, 1.0, 257)
    colors = np.asarray(colormaps[name](t))
    colors[:, 3] = overlay_alpha(2 * t - 1)
    return Colormap(colors=colors, controls=t, name=name + TRANSPARENT_ZERO, display_name=f"{name} (clear 0)")


def attribution_from_layer(layer: Any) -> Attribution:
    """Rebuild the :class:`Attribution` a result layer shows (for export and the writer).

    The values are the layer's data; geometry and everything else come from
    the provenance the layer carries (the layer's own transforms when the
    provenance has no geometry).

    Raises
    ------
    ImageError
        The layer carries no napari-xai provenance.
    """
    prov = dict(layer.metadata.get(PROVENANCE_KEY) or {})
    if not prov:
        raise ImageError(
            f"The layer {layer.name!r} is not a napari-xai result (its metadata holds no provenance).",
            "Select a saliency layer made by the napari-xai widget.",
        )
    geometry = Geometry.from_dict(prov["geometry"]) if "geometry" in prov else layer_geometry(layer)
    return Attribution.from_provenance(layer.data, prov, geometry, name=layer.name)


def is_result_layer(layer: Any) -> bool:
    """True if ``layer`` was made by napari-xai (carries provenance)."""
    return bool(getattr(layer, "metadata", {}).get(PROVENANCE_KEY))
