"""The result of a run: a map on the scan's grid, with its geometry and provenance."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import Geometry
from .image_io import write_image
from .safe_write import check_writable, staged_files

PROVENANCE_KEY = "napari_xai_provenance"


@dataclass
class Attribution:
    """An attribution map aligned with the scan it explains.

    Parameters
    ----------
    values : numpy.ndarray
        float32 map on the input image's spatial grid, ``(y, x)`` or ``(z, y, x)``.
        For methods whose spec says ``output="image"`` (activation
        maximisation) it is a synthetic image in the model's intensities, with
        a leading channel axis ``(C, *spatial)`` when the model takes more than
        one channel.
    geometry : Geometry
        The input image's geometry (exactly).
    method : str
        Registry name of the method.
    method_title : str
        Display name of the method.
    family : str
        Method family.
    sign : str
        ``signed`` or ``non-negative`` for these parameters; hosts choose the colour map from it.
    target : dict
        Task, class index and label, score, region size, and a description.
    params : dict
        All method parameters, defaults filled in.
    model : dict
        Name, kind, source and weights identity of the model.
    image_name : str
        Name of the explained image.
    timings : dict
        Seconds spent preparing, in the method, and mapping back.
    checks : dict
        Axiom checks the method measured (e.g. integrated gradients' completeness).
    package_version : str
        napari-xai version that made the map.
    metrics : dict
        How far the map can be trusted, as :func:`napari_xai.engine.evaluate`
        measured it (empty until evaluated); part of the provenance.
    image_source : dict
        Where the explained image came from (``path``; ``series_uid`` for DICOM).
    warnings : list of str
        Decisions made on the way that a reader of the map should know
        (from reading the image, e.g. a zero voxel size read as 1 mm).
    """

    values: np.ndarray
    geometry: Geometry
    method: str
    method_title: str
    family: str
    sign: str
    target: dict[str, Any]
    params: dict[str, Any]
    model: dict[str, Any]
    image_name: str = "image"
    timings: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    package_version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    image_source: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """A short name for a layer: method and target."""
        label = self.target.get("label") or (f"class {self.target['class_index']}" if self.target.get("class_index") is not None else "output")
        suffix = " (region)" if self.target.get("task") == "segmentation" else ""
        return f"{self.method_title}: {label}{suffix}"

    def provenance(self) -> dict[str, Any]:
        """Everything needed to tell how the map was made, as plain JSON types (numpy values converted)."""
        record = {
            "method": self.method,
            "method_title": self.method_title,
            "family": self.family,
            "sign": self.sign,
            "target": self.target,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
            "model": self.model,
            "image": self.image_name,
            "image_source": self.image_source,
            "warnings": self.warnings,
            "geometry": self.geometry.to_dict(),
            "timings": self.timings,
            "checks": self.checks,
            "napari_xai_version": self.package_version,
        }
        if self.metrics:
            record["metrics"] = self.metrics
        return json.loads(json.dumps(record, default=_json_default))

    @classmethod
    def from_provenance(cls, values: np.ndarray, provenance: dict[str, Any], geometry: Geometry | None = None, name: str = "image") -> "Attribution":
        """Rebuild an Attribution from its values and the record :meth:`provenance` made (e.g. a host's layer or node).

        Parameters
        ----------
        values : numpy.ndarray
            The map.
        provenance : dict
            The record; its geometry is used unless ``geometry`` is given.
        geometry : Geometry, optional
            The grid the values are on now (a host's own transforms).
        name : str
            Image name when the record has none.
        """
        prov = dict(provenance)
        if geometry is None:
            geometry = Geometry.from_dict(prov["geometry"])
        return cls(
            values=np.asarray(values, dtype=np.float32),
            geometry=geometry,
            method=prov.get("method", ""),
            method_title=prov.get("method_title", prov.get("method", "")),
            family=prov.get("family", ""),
            sign=prov.get("sign", "signed"),
            target=dict(prov.get("target", {})),
            params=dict(prov.get("params", {})),
            model=dict(prov.get("model", {})),
            image_name=prov.get("image", name),
            timings=dict(prov.get("timings", {})),
            checks=dict(prov.get("checks", {})),
            package_version=prov.get("napari_xai_version", ""),
            metrics=dict(prov.get("metrics", {})),
        )

    def score_text(self) -> str:
        """The target's score in words, e.g. ``p(lesion) = 0.99; raw score (logit) 17.8``.

        Classification: the class's softmax probability, then the raw output
        labelled as such. Segmentation: the reduced logits over the region.
        Empty when no score was recorded.
        """
        t = self.target
        score = t.get("score")
        label = t.get("label") or (f"class {t['class_index']}" if t.get("class_index") is not None else "output")
        parts = []
        if isinstance(t.get("probability"), (int, float)):
            p = float(t["probability"])
            parts.append(f"p({label}) " + ("> 0.999" if p > 0.999 else "< 0.001" if p < 0.001 else f"= {p:.3f}"))
        if isinstance(score, (int, float)) and np.isfinite(score):
            if t.get("task") == "segmentation":
                parts.append(f"raw score ({t.get('reduce', 'sum')} of {label} logits over the region) {score:.4g}")
            elif t.get("task") == "regression":
                parts.append(f"raw output {score:.4g}")
            else:
                parts.append(f"raw score (logit) {score:.3g}")
        return "; ".join(parts)

    def caption(self) -> str:
        """One line for a figure: model, method, target, parameters."""
        params = ", ".join(f"{k}={v}" for k, v in self.params.items() if v != "")
        return f"{self.model.get('name', 'model')} | {self.method_title} | {self.target.get('description', '')} | {params}"

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the map with the input's exact geometry, plus provenance.

        Nothing is written unless both files can be: the map and its sidecar
        go to temporary files in the target folder first and are moved into
        place together.

        Parameters
        ----------
        path : str or PathLike
            ``.nii``, ``.nii.gz``, ``.nrrd`` or ``.mha``. Provenance goes in the
            header (NRRD, MHA) and always in a ``<path>.json`` sidecar.
        overwrite : bool
            Replace an existing map (and its sidecar) at ``path``. The image
            the map was made from is never overwritten.

        Returns
        -------
        Path
            The image path.

        Raises
        ------
        ImageError
            ``path`` is the source image, exists (without ``overwrite``), has an
            unknown extension, or its folder cannot be written.
        """
        p = Path(path)
        sidecar = Path(str(p) + ".json")
        check_writable(p, sidecar, overwrite=overwrite, source=self.image_source.get("path"))
        text = json.dumps(self.provenance())
        with staged_files(p, sidecar) as (tmp_map, tmp_sidecar):
            write_image(self.values.astype(np.float32), self.geometry, tmp_map, {PROVENANCE_KEY: text})
            tmp_sidecar.write_text(json.dumps(self.provenance(), indent=2) + "\n", encoding="utf-8")
        return p


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
