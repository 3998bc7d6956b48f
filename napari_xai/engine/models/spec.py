"""The JSON sidecar spec: what a model expects and how to feed it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ModelError

TASKS = ("auto", "classification", "segmentation", "regression")
INTENSITY_TYPES = ("none", "window", "zscore", "minmax", "scale")


@dataclass
class ModelSpec:
    """What a model expects. Every field is optional; an empty spec feeds the image as is.

    Per-axis fields are in numpy order ``(z, y, x)``, like the arrays.

    Parameters
    ----------
    name : str, optional
        Human-readable model name (captions, provenance).
    task : {"auto", "classification", "segmentation", "regression"}
        ``auto`` decides from the output shape at run time.
    spatial_dims : int, optional
        2 or 3.
    in_channels : int, optional
        Channels the model's first layer takes.
    input_size : tuple of int, optional
        Grid size the model takes, ``(z, y, x)``. With ``input_spacing`` the
        scan is resampled to that spacing and centre-cropped/padded to this
        size; alone, the scan's extent is resampled onto this many voxels.
    input_spacing : tuple of float, optional
        Voxel size in mm the model was trained at, ``(z, y, x)``.
    orientation : str, optional
        Three-letter orientation the model was trained in (SimpleITK
        ``DICOMOrient`` code, e.g. ``"RAS"`` or ``"LPS"``); the scan is
        permuted/flipped into it without interpolation.
    intensity : dict
        ``{"type": "none"}``, ``{"type": "window", "center": c, "width": w}``
        (clipped and scaled to [0, 1]), ``{"type": "zscore", "nonzero": bool}``,
        ``{"type": "minmax"}`` or ``{"type": "scale", "offset": a, "scale": b}``
        (``(x - a) * b``).
    labels : list of str, optional
        Class names, index order of the output channels.
    cam_layer : str, optional
        Dotted name of the layer CAM methods use.
    architecture : dict, optional
        ``{"factory": name, "kwargs": {...}}`` for weights files: a
        registered architecture name or ``"package.module:Class"`` naming an
        ``nn.Module`` subclass.
    weights : str, optional
        Weights file relative to the spec (state dict or safetensors).
    model_card : str, optional
        Path or URL of the model card.
    """

    name: str | None = None
    task: str = "auto"
    spatial_dims: int | None = None
    in_channels: int | None = None
    input_size: tuple[int, ...] | None = None
    input_spacing: tuple[float, ...] | None = None
    orientation: str | None = None
    intensity: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    labels: list[str] | None = None
    cam_layer: str | None = None
    architecture: dict[str, Any] | None = None
    weights: str | None = None
    model_card: str | None = None

    def __post_init__(self) -> None:
        if self.input_size is not None:
            self.input_size = tuple(int(v) for v in self.input_size)
        if self.input_spacing is not None:
            self.input_spacing = tuple(float(v) for v in self.input_spacing)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ModelError` naming the first inconsistent field."""

        def bad(problem: str, fix: str) -> ModelError:
            return ModelError(f"Model spec: {problem}", fix)

        if self.task not in TASKS:
            raise bad(f"task {self.task!r} is unknown.", f"Use one of {', '.join(TASKS)}.")
        if self.spatial_dims not in (None, 2, 3):
            raise bad(f"spatial_dims is {self.spatial_dims}.", "Use 2 or 3.")
        for key in ("input_size", "input_spacing"):
            value = getattr(self, key)
            if value is None:
                continue
            if self.spatial_dims is not None and len(value) != self.spatial_dims:
                raise bad(
                    f"{key} {list(value)} has {len(value)} entries for a {self.spatial_dims}D model.",
                    "Give one entry per spatial axis, in (z, y, x) order.",
                )
            if any(v <= 0 for v in value):
                raise bad(f"{key} {list(value)} has non-positive entries.", "Use positive sizes and spacings.")
        if self.in_channels is not None and self.in_channels < 1:
            raise bad(f"in_channels is {self.in_channels}.", "Use a positive channel count.")
        kind = self.intensity.get("type", "none")
        if kind not in INTENSITY_TYPES:
            raise bad(f"intensity type {kind!r} is unknown.", f"Use one of {', '.join(INTENSITY_TYPES)}.")
        if kind == "window" and ("center" not in self.intensity or float(self.intensity.get("width", 0)) <= 0):
            raise bad("a window intensity transform needs 'center' and a positive 'width'.", 'e.g. {"type": "window", "center": 40, "width": 400}.')
        if self.orientation is not None:
            o = self.orientation.upper()
            axes = [{"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}.get(c) for c in o]
            if len(o) != 3 or None in axes or sorted(axes) != [0, 1, 2]:
                raise bad(f"orientation {self.orientation!r} is not a 3-letter code.", 'Use e.g. "RAS" or "LPS".')
            self.orientation = o

    @property
    def is_segmentation(self) -> bool:
        return self.task == "segmentation"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists, unset fields are dropped)."""
        out = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """Build a spec from a dict, refusing unknown keys (a typo should not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"format_version", "description"})
        if unknown:
            raise ModelError(
                f"Model spec: unknown field(s) {unknown}.", f"Use only {sorted(known)}."
            )
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ModelSpec":
        """Read a JSON spec file."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ModelError(f"Model spec {p.name} could not be read ({err}).", "Give a valid JSON file.") from err
        if not isinstance(data, dict):
            raise ModelError(f"Model spec {p.name} is not a JSON object.", "Write the spec as {\"task\": ..., ...}.")
        return cls.from_dict(data)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the spec as JSON."""
        p = Path(path)
        p.write_text(json.dumps({"format_version": 1, **self.to_dict()}, indent=2) + "\n", encoding="utf-8")
        return p


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """The spec path that belongs to a model file: same stem, ``.json``."""
    return Path(model_path).with_suffix(".json")
