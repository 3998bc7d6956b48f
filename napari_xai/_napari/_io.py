"""npe2 reader, writer and sample data contributions (no Qt)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from napari_xai.engine import read_image, write_image
from napari_xai.engine.image_io import WRITE_EXTENSIONS, has_image_extension, is_dicom_series_folder

from ._layers import GEOMETRY_KEY, PROVENANCE_KEY, attribution_from_layer, geometry_layer_kwargs, layer_geometry, napari_colormap

LayerData = tuple[Any, dict[str, Any], str]


# ----------------------------------------------------------------------------- reader


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader: a function for NIfTI/NRRD/MHA files and DICOM series folders, else None.

    Returns None (never raises) for anything it does not handle, so napari can
    try other readers.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    for p in paths:
        try:
            if not (has_image_extension(p) or is_dicom_series_folder(p)):
                return None
        except Exception:  # unreadable folder, odd path: not ours
            return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each path into an image layer with its physical geometry (docs/architecture.md, Geometry)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [_read_one(p) for p in paths]


def _read_one(path: str | os.PathLike) -> LayerData:
    scan = read_image(path)
    kwargs: dict[str, Any] = geometry_layer_kwargs(scan.geometry)
    metadata: dict[str, Any] = {"source_path": str(path), GEOMETRY_KEY: scan.geometry.to_dict()}
    prov = _sidecar_provenance(path)
    if prov is not None:  # a map written by napari-xai: show it as one again
        from napari_xai.engine.display import display_settings

        s = display_settings(scan.array, prov.get("sign", "signed"))
        metadata[PROVENANCE_KEY] = prov
        kwargs.update(colormap=napari_colormap(s.colormap), contrast_limits=s.contrast_limits, opacity=s.opacity, blending=s.blending)
    kwargs.update(name=scan.name, metadata=metadata)
    if scan.channel_axis == 0:
        kwargs["channel_axis"] = 0
    return scan.array, kwargs, "image"


def _sidecar_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    side = Path(str(path) + ".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "method" in data else None


# ----------------------------------------------------------------------------- writer


def write_map(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-image writer: the layer on its physical grid (NIfTI/NRRD/MHA) plus provenance.

    A napari-xai result layer is written by :meth:`Attribution.save` (provenance
    in the header where the format allows and in a ``<path>.json`` sidecar);
    any other image layer is written with its geometry only.
    """
    layer = _MetaLayer(data, meta)
    if not has_image_extension(path, WRITE_EXTENSIONS):
        path = str(path) + ".nii.gz"
    if layer.metadata.get(PROVENANCE_KEY):
        attribution = attribution_from_layer(layer)
        return [str(attribution.save(path))]
    return [str(write_image(np.asarray(data), layer_geometry(layer), path))]


class _MetaLayer:
    """The parts of a layer the writer needs, rebuilt from npe2's ``meta`` dict."""

    def __init__(self, data: Any, meta: dict[str, Any]) -> None:
        from napari.utils.transforms import Affine

        self.data = data
        self.name = meta.get("name", "layer")
        self.metadata = dict(meta.get("metadata") or {})
        ndim = np.asarray(data).ndim
        data2phys = Affine(
            scale=meta.get("scale", (1.0,) * ndim),
            translate=meta.get("translate", (0.0,) * ndim),
            rotate=meta.get("rotate", np.eye(ndim)),
            shear=meta.get("shear", None),
            ndim=ndim,
        )
        affine = meta.get("affine")
        if affine is not None:
            affine_matrix = np.asarray(getattr(affine, "affine_matrix", affine), dtype=float)
            self._data_to_world = Affine(affine_matrix=affine_matrix @ data2phys.affine_matrix, ndim=ndim)
        else:
            self._data_to_world = data2phys


# ----------------------------------------------------------------------------- sample data


def sample_brain() -> list[LayerData]:
    """The sample brain T1 (3 mm, MNI geometry, simulated lesions), with the sample model noted in metadata."""
    from napari_xai.samples import LESION_CLASSIFIER_SPEC, SAMPLE_SCAN

    data, kwargs, kind = _read_one(SAMPLE_SCAN)
    kwargs["name"] = "sample brain T1"
    kwargs["colormap"] = "gray"
    kwargs["metadata"]["napari_xai_model"] = str(LESION_CLASSIFIER_SPEC)
    return [(data, kwargs, kind)]


def sample_brain_lesions() -> list[LayerData]:
    """The sample scan plus its ground-truth lesion mask as a Labels layer."""
    from napari_xai.samples import SAMPLE_LESION_MASK

    layers = sample_brain()
    mask = read_image(SAMPLE_LESION_MASK)
    kwargs = geometry_layer_kwargs(mask.geometry)
    kwargs.update(name="sample lesions (ground truth)", opacity=0.5)
    layers.append((np.asarray(mask.array > 0, dtype=np.uint8), kwargs, "labels"))
    return layers



def sample_brain_axial() -> list[LayerData]:
    """One axial slice of the sample brain (2D, through a lesion), for the 2D sample classifier, with its lesion mask."""
    from napari_xai.samples import LESION_CLASSIFIER_2D_SPEC, SAMPLE_LESION_MASK_AXIAL, SAMPLE_SCAN_AXIAL

    data, kwargs, kind = _read_one(SAMPLE_SCAN_AXIAL)
    kwargs.update(name="sample brain T1 (axial slice)", colormap="gray")
    kwargs["metadata"]["napari_xai_model"] = str(LESION_CLASSIFIER_2D_SPEC)
    mask = read_image(SAMPLE_LESION_MASK_AXIAL)
    mask_kwargs = geometry_layer_kwargs(mask.geometry)
    mask_kwargs.update(name="sample lesions (axial, ground truth)", opacity=0.5)
    return [(data, kwargs, kind), (np.asarray(mask.array > 0, dtype=np.uint8), mask_kwargs, "labels")]


def sample_brain_marker() -> list[LayerData]:
    """The sample scan with a marker burned in beside the head (the shortcut model's cue), with its lesion mask."""
    from napari_xai.samples import SHORTCUT_CLASSIFIER_SPEC
    from napari_xai.samples.markers import burn_in_marker

    layers = sample_brain_lesions()
    data, kwargs, kind = layers[0]
    kwargs["name"] = "sample brain T1 with marker"
    kwargs["metadata"]["napari_xai_model"] = str(SHORTCUT_CLASSIFIER_SPEC)
    layers[0] = (burn_in_marker(np.asarray(data)), kwargs, kind)
    return layers
