"""The JSON sidecar spec: what a model expects and how to feed it."""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .json_files import read_json_object

TASKS = ("auto", "classification", "segmentation", "regression")
INTENSITY_TYPES = ("none", "window", "zscore", "minmax", "scale", "range", "ct")


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
        ``DICOMOrient`` code, e.g. ``"RAS"`` or ``"LPS"``; each letter is the
        direction its axis, x then y then z, increases towards, as in MONAI's
        and nibabel's ``axcodes``); the scan is permuted/flipped into it
        without interpolation.
    transpose : tuple of int, optional
        Permutation of the spatial axes after reorientation: the model's
        axis ``i`` is the scan's numpy axis ``transpose[i]`` (nnU-Net's
        ``transpose_forward``; ``(2, 1, 0)`` feeds MONAI's ``(x, y, z)``
        array layout). ``input_size``, ``input_spacing`` and
        ``sliding_window.roi_size`` are then in the model's axis order.
    intensity : dict
        ``{"type": "none"}``, ``{"type": "window", "center": c, "width": w}``
        (clipped and scaled to [0, 1]), ``{"type": "zscore", "nonzero": bool,
        "keep_zeros": bool}`` (statistics over the nonzero voxels; with
        ``keep_zeros`` only those are normalised and zeros stay zero, as
        MONAI's ``NormalizeIntensity(nonzero=True)`` and nnU-Net's
        ``use_mask_for_norm`` do), ``{"type": "minmax"}``,
        ``{"type": "scale", "offset": a, "scale": b}`` (``(x - a) * b``),
        ``{"type": "range", "a_min", "a_max", "b_min", "b_max", "clip"}``
        (MONAI's ``ScaleIntensityRange``) or ``{"type": "ct", "lower",
        "upper", "mean", "std"}`` (nnU-Net's ``CTNormalization``: clip to
        ``[lower, upper]``, then ``(x - mean) / std``).
    labels : list of str, optional
        Class names, index order of the output channels.
    cam_layer : str, optional
        Dotted name of the layer CAM methods use.
    architecture : dict, optional
        ``{"factory": name, "kwargs": {...}}`` for weights files: the name of
        an architecture registered in the process, or one the caller allows
        for the load (``load_model(..., architectures=...)``); a spec never
        makes napari-xai import a module.
    weights : str, optional
        Weights file relative to the spec (state dict or safetensors).
    model_card : str, optional
        Path or URL of the model card.
    sliding_window : dict, optional
        The network is fully convolutional and runs by sliding windows over
        the model-space volume, with the meaning of MONAI's
        ``sliding_window_inference``: ``roi_size`` (z, y, x; required),
        ``overlap`` (float in [0, 1), or one per axis; default 0.25),
        ``mode`` (``"constant"`` or ``"gaussian"``; default ``"constant"``),
        ``sigma_scale`` (float or one per axis; default 0.125),
        ``padding_mode`` (``"constant"``, ``"reflect"``, ``"replicate"``,
        ``"circular"``; default ``"constant"``), ``cval`` (default 0.0),
        ``sw_batch_size`` (default 1) and ``style`` (``"monai"``, default, or
        ``"nnunet"``: nnU-Net's predictor, whose windows are spread evenly
        between the first and last position and whose Gaussian peaks on the
        centre voxel and is not clamped; see ``engine/sliding_window.py``).
        Filled in from a MONAI bundle's inferer or an nnU-Net plan's patch size.
    """

    name: str | None = None
    task: str = "auto"
    spatial_dims: int | None = None
    in_channels: int | None = None
    input_size: tuple[int, ...] | None = None
    input_spacing: tuple[float, ...] | None = None
    orientation: str | None = None
    transpose: tuple[int, ...] | None = None
    intensity: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    labels: list[str] | None = None
    cam_layer: str | None = None
    architecture: dict[str, Any] | None = None
    weights: str | None = None
    model_card: str | None = None
    sliding_window: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self._check_types()
        if self.input_size is not None:
            self.input_size = tuple(int(v) for v in self.input_size)
        if self.input_spacing is not None:
            self.input_spacing = tuple(float(v) for v in self.input_spacing)
        if self.transpose is not None and isinstance(self.transpose, (list, tuple)):
            self.transpose = tuple(self.transpose)
        self.validate()

    def _check_types(self) -> None:
        """Raise :class:`ModelError` naming the first field of the wrong JSON type (before anything converts it)."""

        def wrong(key: str, value: Any, expected: str, example: str) -> ModelError:
            return ModelError(
                f"Model spec: {key} is {value!r} ({type(value).__name__}), not {expected}.", f"Write it as {example}."
            )

        for key in ("name", "task", "orientation", "cam_layer", "weights", "model_card"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise wrong(key, value, "a string", f'"{key}": "..."')
        for key, example in (("spatial_dims", "3"), ("in_channels", "1")):
            value = getattr(self, key)
            if value is not None and not _is_int(value):
                raise wrong(key, value, "an integer", f'"{key}": {example}')
        if self.input_size is not None and not (
            isinstance(self.input_size, (list, tuple)) and all(_is_int(v) for v in self.input_size)
        ):
            raise wrong("input_size", self.input_size, "a list of integers", '"input_size": [96, 96, 96] (z, y, x)')
        if self.input_spacing is not None and not (
            isinstance(self.input_spacing, (list, tuple)) and all(_is_finite_number(v) for v in self.input_spacing)
        ):
            raise wrong(
                "input_spacing", self.input_spacing, "a list of finite numbers (mm)", '"input_spacing": [1.5, 1.0, 1.0] (z, y, x)'
            )
        if not isinstance(self.intensity, dict):
            raise wrong("intensity", self.intensity, "an object", '{"type": "zscore"} or {"type": "window", "center": 40, "width": 400}')
        for key in ("center", "width"):  # the window's numbers (other types' numbers: _validate_intensity_numbers)
            if key in self.intensity and not _is_finite_number(self.intensity[key]):
                raise wrong(f"intensity.{key}", self.intensity[key], "a finite number", f'"{key}": 40')
        if self.labels is not None and not (isinstance(self.labels, list) and all(isinstance(v, str) for v in self.labels)):
            raise wrong("labels", self.labels, "a list of strings", '"labels": ["background", "lesion"]')

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
        if self.transpose is not None:
            t = self.transpose
            n = self.spatial_dims or len(t)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in t) or sorted(t) != list(range(n)):
                raise bad(f"transpose {list(t)!r} is not a permutation of the spatial axes.", "Give each of 0..dim-1 once, e.g. [2, 1, 0].")
        if not isinstance(self.intensity, dict):
            raise bad(f"intensity is {type(self.intensity).__name__}, not an object.", 'Write it as {"type": "zscore"}.')
        kind = self.intensity.get("type", "none")
        if kind not in INTENSITY_TYPES:
            raise bad(f"intensity type {kind!r} is unknown.", f"Use one of {', '.join(INTENSITY_TYPES)}.")
        if kind == "window" and ("center" not in self.intensity or float(self.intensity.get("width", 0)) <= 0):
            raise bad("a window intensity transform needs 'center' and a positive 'width'.", 'e.g. {"type": "window", "center": 40, "width": 400}.')
        _validate_intensity_numbers(self.intensity, bad)
        if self.architecture is not None:
            arch = self.architecture
            example = '{"factory": "lesion_classifier_3d", "kwargs": {"width": 8}}'
            if not isinstance(arch, dict) or set(arch) - {"factory", "kwargs"}:
                raise bad(f"architecture is {arch!r}.", f"Write it as {example}.")
            if not isinstance(arch.get("factory"), str) or not arch["factory"]:
                raise bad(
                    f"architecture.factory is {arch.get('factory')!r} ({type(arch.get('factory')).__name__}), not an architecture name.",
                    f"Write it as a string, e.g. {example}.",
                )
            if not isinstance(arch.get("kwargs", {}), dict):
                raise bad(f"architecture.kwargs is {arch['kwargs']!r}, not an object.", f"Write it as {example}.")
        if self.sliding_window is not None:
            self.sliding_window = _validated_sliding_window(self.sliding_window, self.spatial_dims)
        if self.orientation is not None:
            o = self.orientation.upper()
            axes = [{"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}.get(c) for c in o]
            if len(o) != 3 or None in axes or sorted(axes) != [0, 1, 2]:
                raise bad(f"orientation {self.orientation!r} is not a 3-letter code.", 'Use e.g. "RAS" or "LPS".')
            self.orientation = o

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
        return cls.from_dict(read_json_object(p, f"Model spec {p.name}", "Give a valid JSON file.", "Write the spec as {\"task\": ..., ...}."))

    def write(self, path: str | os.PathLike) -> Path:
        """Write the spec as JSON."""
        p = Path(path)
        p.write_text(json.dumps({"format_version": 1, **self.to_dict()}, indent=2) + "\n", encoding="utf-8")
        return p


#: Numeric keys of the intensity types that take them: required ones, then optional ones.
_INTENSITY_NUMBERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "range": (("a_min", "a_max"), ("b_min", "b_max")),
    "ct": (("lower", "upper", "mean", "std"), ()),
    "scale": ((), ("offset", "scale")),
}
_INTENSITY_EXAMPLES = {
    "range": '{"type": "range", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1, "clip": true}',
    "ct": '{"type": "ct", "lower": -958, "upper": 327, "mean": 82.9, "std": 136.9}',
    "scale": '{"type": "scale", "offset": 0, "scale": 1}',
}


def _validate_intensity_numbers(intensity: dict[str, Any], bad: Any) -> None:
    """Check the numeric parameters of ``range``, ``ct`` and ``scale`` transforms and the flags of ``zscore``/``range``."""
    kind = intensity.get("type", "none")
    for flag in ("nonzero", "keep_zeros", "clip"):
        if flag in intensity and not isinstance(intensity[flag], bool):
            raise bad(f"intensity '{flag}' is {intensity[flag]!r}.", "Use true or false.")
    if kind not in _INTENSITY_NUMBERS:
        return
    required, optional = _INTENSITY_NUMBERS[kind]
    example = _INTENSITY_EXAMPLES[kind]
    for key in required + optional:
        if key not in intensity:
            if key in required:
                raise bad(f"a {kind} intensity transform needs {', '.join(repr(k) for k in required)}.", f"e.g. {example}.")
            continue
        value = intensity[key]
        if value is None and key in ("b_min", "b_max"):
            continue  # MONAI: no output range, only (x - a_min) / (a_max - a_min)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise bad(f"intensity {key!r} is {value!r}.", f"Give a finite number, e.g. {example}.")
    if kind == "range" and float(intensity["a_max"]) == float(intensity["a_min"]):
        raise bad("a range intensity transform has a_min == a_max.", "Give the input range the model was trained with, a_min < a_max.")
    if kind == "range" and (intensity.get("b_min") is None) != (intensity.get("b_max") is None):
        raise bad("a range intensity transform gives only one of b_min and b_max.", "Give both, or neither.")
    if kind == "ct" and float(intensity["lower"]) > float(intensity["upper"]):
        raise bad("a ct intensity transform has lower > upper.", f"Give the clip bounds in order, e.g. {example}.")
    if kind == "ct" and float(intensity["std"]) < 0:
        raise bad("a ct intensity transform has a negative std.", f"Give the foreground standard deviation, e.g. {example}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


SLIDING_WINDOW_DEFAULTS: dict[str, Any] = {
    "overlap": 0.25,
    "mode": "constant",
    "sigma_scale": 0.125,
    "padding_mode": "constant",
    "cval": 0.0,
    "sw_batch_size": 1,
    "style": "monai",
}
SLIDING_WINDOW_MODES = ("constant", "gaussian")
#: Whose window placement and Gaussian: MONAI's sliding_window_inference, or nnU-Net's predictor.
SLIDING_WINDOW_STYLES = ("monai", "nnunet")
SLIDING_WINDOW_PADDING = ("constant", "reflect", "replicate", "circular")


def _validated_sliding_window(sw: Any, spatial_dims: int | None) -> dict[str, Any]:
    """The ``sliding_window`` field with its defaults filled in, or a :class:`ModelError`."""
    example = '{"roi_size": [96, 96, 96], "overlap": 0.25, "mode": "gaussian"}'
    if not isinstance(sw, dict):
        raise ModelError(f"Model spec: sliding_window is {type(sw).__name__}, not an object.", f"Write it as {example}.")
    unknown = sorted(set(sw) - set(SLIDING_WINDOW_DEFAULTS) - {"roi_size"})
    if unknown:
        raise ModelError(
            f"Model spec: sliding_window has unknown key(s) {unknown}.",
            f"Use roi_size and {', '.join(SLIDING_WINDOW_DEFAULTS)}.",
        )
    out = {**SLIDING_WINDOW_DEFAULTS, **sw}
    roi = out.get("roi_size")
    if (
        not isinstance(roi, (list, tuple))
        or not roi
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in roi)
    ):
        raise ModelError(
            f"Model spec: sliding_window.roi_size is {roi!r}.",
            f"Give one positive integer per spatial axis, in (z, y, x) order, e.g. {example}.",
        )
    if spatial_dims is not None and len(roi) != spatial_dims:
        raise ModelError(
            f"Model spec: sliding_window.roi_size {list(roi)} has {len(roi)} entries for a {spatial_dims}D model.",
            "Give one entry per spatial axis, in (z, y, x) order.",
        )
    out["roi_size"] = [int(v) for v in roi]
    for key, lo, hi in (("overlap", 0.0, 1.0), ("sigma_scale", 0.0, None)):
        value = out[key]
        values = value if isinstance(value, (list, tuple)) else [value]
        ok = len(values) in (1, len(roi)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= lo and (hi is None or v < hi)
            and v == v and v != float("inf")
            for v in values
        )
        if key == "sigma_scale" and ok:
            ok = all(v > 0 for v in values)
        if not ok:
            span = f"in [{lo}, {hi})" if hi is not None else "positive"
            raise ModelError(
                f"Model spec: sliding_window.{key} is {value!r}.",
                f"Give a finite number {span}, or one per spatial axis.",
            )
        out[key] = [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)
    if out["mode"] not in SLIDING_WINDOW_MODES:
        raise ModelError(
            f"Model spec: sliding_window.mode {out['mode']!r} is unknown.", f"Use one of {', '.join(SLIDING_WINDOW_MODES)}."
        )
    if out["style"] not in SLIDING_WINDOW_STYLES:
        raise ModelError(
            f"Model spec: sliding_window.style {out['style']!r} is unknown.", f"Use one of {', '.join(SLIDING_WINDOW_STYLES)}."
        )
    if out["padding_mode"] not in SLIDING_WINDOW_PADDING:
        raise ModelError(
            f"Model spec: sliding_window.padding_mode {out['padding_mode']!r} is unknown.",
            f"Use one of {', '.join(SLIDING_WINDOW_PADDING)}.",
        )
    batch = out["sw_batch_size"]
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ModelError(f"Model spec: sliding_window.sw_batch_size is {batch!r}.", "Use a positive integer.")
    cval = out["cval"]
    if not isinstance(cval, (int, float)) or isinstance(cval, bool) or cval != cval:
        raise ModelError(f"Model spec: sliding_window.cval is {cval!r}.", "Use a finite number.")
    out["cval"] = float(cval)
    return out


def spec_fields(spec: "ModelSpec | dict | str | os.PathLike") -> dict[str, Any]:
    """The fields a spec sets: a dict's keys, a file's keys, or a ModelSpec's fields that differ from the defaults."""
    if isinstance(spec, ModelSpec):
        default = ModelSpec().to_dict()
        return {k: v for k, v in spec.to_dict().items() if default.get(k, None) != v}
    if isinstance(spec, dict):
        ModelSpec.from_dict(spec)  # refuses unknown or invalid fields, naming them
        return {k: v for k, v in spec.items() if k not in ("format_version", "description")}
    p = Path(spec)
    ModelSpec.read(p)
    data = json.loads(p.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in ("format_version", "description")}


def merged_spec(base: "ModelSpec | None", override: "ModelSpec | dict | str | os.PathLike | None") -> ModelSpec:
    """``base`` with the fields ``override`` sets replaced, field by field; neither input is changed.

    Raises
    ------
    ModelError
        The override or the merged spec is invalid.
    """
    base_fields = base.to_dict() if base is not None else {}
    if override is None:
        return ModelSpec.from_dict(base_fields)
    return ModelSpec.from_dict({**base_fields, **spec_fields(override)})


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """The spec path that belongs to a model file: same stem, ``.json``."""
    return Path(model_path).with_suffix(".json")
