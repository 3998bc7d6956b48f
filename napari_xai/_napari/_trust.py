"""The trust dock's decisions, without Qt: which maps, which model, which scan; metrics back onto layers.

The metrics themselves are the engine's (:mod:`napari_xai.engine.metrics`);
this module only turns napari layers into what the engine takes and puts
the results back into the layers' provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator

import numpy as np

from napari_xai.engine import XAIError
from napari_xai.engine.attribution import Attribution
from napari_xai.engine.image import ScanImage
from napari_xai.engine.metrics import derive_anatomy, evaluate_maps_iter
from napari_xai.engine.progress import Progress
from napari_xai.engine.registry import get_method
from napari_xai.session.models import get_model
from napari_xai.session.slices import evaluation_inputs

from . import _logic
from ._layers import PROVENANCE_KEY, attribution_from_layer, is_result_layer, scan_from_layer, source_transforms

#: Metadata key marking the anatomy Labels layer the dock added.
ANATOMY_KEY = "napari_xai_anatomy"


def map_layers(viewer: Any) -> list[Any]:
    """Result layers holding attribution maps (not activation-maximisation images)."""
    out = []
    for layer in viewer.layers:
        if not is_result_layer(layer):
            continue
        try:
            if get_method(layer.metadata[PROVENANCE_KEY].get("method", "")).output == "map":
                out.append(layer)
        except XAIError:
            continue
    return out


def sibling_maps(viewer: Any, layer: Any) -> list[Any]:
    """Every map layer computed on the same scan as ``layer`` (``layer`` first)."""
    source = layer.metadata.get(_logic.SOURCE_KEY)
    others = [m for m in map_layers(viewer) if m is not layer and m.metadata.get(_logic.SOURCE_KEY) == source]
    return [layer] + others


def model_from_provenance(layer: Any) -> str | None:
    """The model file a map was made with, when its provenance names one that still exists."""
    source = ((layer.metadata.get(PROVENANCE_KEY) or {}).get("model") or {}).get("source", "")
    if source and not source.startswith("<") and Path(source).exists():
        return source
    return None


@dataclass
class TrustJob:
    """Everything one evaluation run needs, gathered on the main thread.

    Parameters
    ----------
    model : path, nn.Module or LoadedModel
    scan : ScanImage
        The scan (one slice of it when the maps were made slice by slice by a 2D model).
    maps : dict
        Layer name -> Attribution on ``scan``'s grid.
    layers : dict
        Layer name -> the napari layer (results go back into its metadata).
    mask, anatomy : numpy.ndarray or None
        On ``scan``'s grid.
    settings : dict
        Evaluation settings (``steps``, ``removal``, ``sanity_steps``, ...) and ``metrics``.
    """

    model: Any
    scan: ScanImage
    maps: dict[str, Attribution]
    layers: dict[str, Any]
    mask: np.ndarray | None = None
    anatomy: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def make_job(viewer: Any, layers: list[Any], model: Any, mask_layer: Any = None, anatomy_layer: Any = None, settings: dict[str, Any] | None = None) -> TrustJob:
    """Collect the scan, maps, mask and anatomy for ``layers`` (maps of one scan).

    Raises
    ------
    XAIError
        No map, no model, the scan is gone, or the maps were made on different slices.
    """
    if not layers:
        raise XAIError("No saliency map is selected.", "Make a map with the 'Saliency maps (XAI)' dock, then pick it under 'map'.")
    model = model or model_from_provenance(layers[0])
    if model is None:
        raise XAIError(
            f"The model that made {layers[0].name!r} is not a file this dock can open.",
            "Pick the model under 'model' (the same one the map was made with).",
        )
    source = _logic.find_source_layer(viewer, layers[0])
    scan = scan_from_layer(source)
    maps = {layer.name: attribution_from_layer(layer) for layer in layers}
    # a 2D model's map of one slice, embedded in the volume, is evaluated on that slice
    scan, maps, mask, anatomy = evaluation_inputs(scan, maps, _labels_on(mask_layer, scan), _labels_on(anatomy_layer, scan))
    return TrustJob(model, scan, maps, {layer.name: layer for layer in layers}, mask, anatomy, dict(settings or {}))


def _labels_on(layer: Any, scan: ScanImage) -> np.ndarray | None:
    if layer is None:
        return None
    arr = np.asarray(layer.data) > 0
    if arr.shape != scan.spatial_shape:
        raise XAIError(
            f"The Labels layer {layer.name!r} has shape {arr.shape} but the scan has {scan.spatial_shape}.",
            "Use a Labels layer drawn on this scan (Layer > New Labels with the scan selected).",
        )
    return arr


def run_job(job: TrustJob) -> Generator[Progress, None, tuple[dict[str, dict[str, Any]], list[str]]]:
    """The engine's evaluation of every map of the job (shared setup), as a generator for a worker."""
    settings = dict(job.settings)
    metrics = settings.pop("metrics", None)
    gen = evaluate_maps_iter(get_model(job.model), job.scan, job.maps, mask=job.mask, anatomy=job.anatomy, metrics=metrics, **settings)
    return (yield from gen)


def store_results(job: TrustJob, results: dict[str, dict[str, Any]]) -> None:
    """Write each map's metrics into its layer's provenance (saved with the map)."""
    for name, result in results.items():
        layer = job.layers.get(name)
        if layer is not None and PROVENANCE_KEY in layer.metadata:
            layer.metadata[PROVENANCE_KEY] = {**layer.metadata[PROVENANCE_KEY], "metrics": result}


def show_anatomy(viewer: Any, source: Any, anatomy: np.ndarray | None = None) -> Any:
    """Add (or update) a Labels layer with the anatomy mask of ``source``, aligned with it.

    ``anatomy`` None: derived from the scan as the metrics derive it.
    """
    scan = scan_from_layer(source)
    mask = derive_anatomy(scan) if anatomy is None else np.asarray(anatomy, dtype=bool)
    name = f"anatomy of {source.name}"
    for layer in viewer.layers:
        if layer.metadata.get(ANATOMY_KEY) == source.name:
            layer.data = mask.astype(np.uint8)
            return layer
    kwargs = source_transforms(source)
    return viewer.add_labels(mask.astype(np.uint8), name=name, opacity=0.25, metadata={ANATOMY_KEY: source.name}, **kwargs)
