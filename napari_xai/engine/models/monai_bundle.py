"""MONAI bundles: the network built by MONAI's own ``ConfigParser``, the preprocessing and inferer as a spec.

A bundle (``configs/metadata.json``, ``configs/inference.json`` or
``.yaml``, ``models/model.pt`` or ``models/model.ts``) describes its network
in ``network_def``, a ``_target_`` component that MONAI's ``ConfigParser``
instantiates. A config can also hold Python expressions (``"$..."``) and name
any importable callable as a ``_target_``, including the bundle's own
``scripts/``: evaluating those runs code chosen by the bundle's author. By
default the loader therefore hands ``ConfigParser`` only a checked copy of
``network_def``: references (``"@id"``) replaced by the plain values they name,
no expressions, no ``_mode_``/``_requires_``, and every ``_target_`` a
``torch.nn.Module`` class under ``monai.networks`` or ``torch.nn``. With
``trust_bundle_code=True`` the whole config is parsed as MONAI would, the
bundle's folder importable.

The weights are read with ``torch.load(weights_only=True)``. The
``preprocessing`` transforms and the ``inferer`` are translated into the
:class:`ModelSpec` fields (orientation, spacing, intensity, sliding window);
labels and task come from ``metadata.json``. Transforms that have no spec
equivalent are named in a :class:`ModelError`; pass ``spec=`` to describe the
preprocessing by hand instead.

MONAI arrays are ``(x, y, z)``-ordered, the reverse of numpy's ``(z, y, x)``:
the spec's ``transpose`` reverses the axes, so ``pixdim`` and ``roi_size``
carry over in MONAI's own order. The engine's resampled grid is centred on the
scan (MONAI's ``Spacingd`` keeps the first voxel's corner); both interpolate
linearly.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from ..errors import ModelError, UntrustedModelError
from .state_dict import load_state_strict
from .loaded_model import LoadedModel, weights_identity
from .spec import ModelSpec

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
WEIGHT_NAMES = ("model.pt", "model.ts")
#: Where a checked ``network_def`` may take its components from.
ALLOWED_TARGET_PREFIXES = ("monai.networks.", "torch.nn.")

#: Transforms that change nothing the engine has not already done (reading, channel axis, dtype, device).
_NO_OPS = {
    "LoadImaged", "LoadImage", "EnsureChannelFirstd", "EnsureChannelFirst", "AddChanneld", "AddChannel",
    "EnsureTyped", "EnsureType", "ToTensord", "ToTensor", "CastToTyped", "CastToType", "Identityd", "Identity",
    "ToDeviced", "ToDevice", "ToNumpyd", "ToNumpy", "ToMetaTensord", "ToMetaTensor", "DeleteItemsd", "CopyItemsd",
}
_SW_KEYS = {"roi_size", "sw_batch_size", "overlap", "mode", "sigma_scale", "padding_mode", "cval"}
#: Inferer arguments that change where or how fast it runs, not what it computes.
_SW_IGNORED = {"sw_device", "device", "progress", "cache_roi_weight_map", "cpu_thresh", "buffer_steps", "buffer_dim"}


def is_monai_bundle(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with ``configs/metadata.json`` and an inference config."""
    p = Path(path)
    return (p / "configs" / "metadata.json").is_file() and any((p / "configs" / n).is_file() for n in CONFIG_NAMES)


def load_monai_bundle(
    path: str | os.PathLike,
    spec: ModelSpec | None = None,
    *,
    trust_bundle_code: bool = False,
    weights: str | None = None,
) -> LoadedModel:
    """Load a MONAI bundle's network, weights and preprocessing.

    Parameters
    ----------
    path : str or PathLike
        The bundle's root folder.
    spec : ModelSpec, optional
        Use this spec instead of translating the bundle's preprocessing.
    trust_bundle_code : bool
        Parse the whole config as MONAI does, evaluating its expressions and
        importing the components it names, including the bundle's
        ``scripts/``. Only for bundles you trust: this runs code chosen by
        the bundle's author.
    weights : str, optional
        Weights file relative to the bundle (default ``models/model.pt``,
        else ``models/model.ts``).

    Returns
    -------
    LoadedModel
        ``kind`` is ``"monai_bundle"`` (``"torchscript"`` for a ``.ts``);
        ``extra`` holds the metadata's name and version and the config used.

    Raises
    ------
    ModelError
        Missing files, weights that do not fit, or transforms with no spec equivalent.
    UntrustedModelError
        The network needs code evaluated and ``trust_bundle_code`` is False.
    """
    root = Path(path)
    if not is_monai_bundle(root):
        raise ModelError(
            f"{root} is not a MONAI bundle (no configs/metadata.json with configs/inference.json).",
            "Give the bundle's root folder, the one holding configs/ and models/.",
        )
    config_file = next(root / "configs" / n for n in CONFIG_NAMES if (root / "configs" / n).is_file())
    config = _read_config(config_file)
    meta = _read_config(root / "configs" / "metadata.json")
    spec_obj = spec if spec is not None else bundle_spec(config, meta, name=root.name)
    weights_path = root / weights if weights else next((root / "models" / n for n in WEIGHT_NAMES if (root / "models" / n).is_file()), None)
    if weights_path is None or not weights_path.is_file():
        raise ModelError(
            f"The bundle {root.name} has no weights file ({weights_path or 'models/model.pt or models/model.ts'}).",
            "Put the trained weights at models/model.pt (a state dict) or models/model.ts (TorchScript).",
        )
    extra = {"bundle_name": meta.get("name"), "bundle_version": meta.get("version"), "config": config_file.name}
    if weights_path.suffix == ".ts":
        try:
            module = torch.jit.load(str(weights_path), map_location="cpu")
        except Exception as err:  # torch raises many types for corrupt archives
            raise ModelError(f"{weights_path.name} could not be loaded as TorchScript ({type(err).__name__}).", "Check the file.") from err
        module.eval()
        return LoadedModel(module, spec_obj, "torchscript", str(root), weights_identity(module), extra=extra)
    network = build_network(config, root, trust_bundle_code=trust_bundle_code)
    state = _read_state_dict(weights_path)
    load_state_strict(
        network, state, f"The weights in {weights_path.name} do not fit the bundle's network_def",
        "Check that models/model.pt was saved from this bundle's network (network_def in the inference config).",
    )
    network.eval()
    return LoadedModel(network, spec_obj, "monai_bundle", str(root), weights_identity(network), extra=extra)


def _config_parser() -> Any:
    """MONAI's ``ConfigParser`` class, or a :class:`ModelError` saying how to install MONAI."""
    try:
        from monai.bundle import ConfigParser
    except ImportError as err:
        raise ModelError("Loading a MONAI bundle needs MONAI, which is not installed.", "pip install 'napari-xai[monai]' (or pip install monai).") from err
    return ConfigParser


def _read_config(path: Path) -> dict[str, Any]:
    ConfigParser = _config_parser()  # load_config_file reads JSON and YAML (safe_load) and evaluates nothing
    try:
        data = ConfigParser.load_config_file(path)
    except Exception as err:  # JSON / YAML syntax errors come as several types
        raise ModelError(f"The bundle config {path.name} could not be read ({type(err).__name__}: {err}).", "Fix the file's syntax.") from err
    if not isinstance(data, dict):
        raise ModelError(f"The bundle config {path.name} is not an object.", "A bundle config is a JSON/YAML mapping.")
    return data


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UntrustedModelError(
            f"{path.name} holds pickled Python objects besides tensors (e.g. a whole model saved with torch.save(model)); "
            "unpickling them would run code chosen by the file's author.",
            "Save the network's state dict (torch.save(net.state_dict(), 'models/model.pt')), or export models/model.ts.",
        ) from err
    except Exception as err:
        raise ModelError(f"{path.name} could not be read ({type(err).__name__}).", "Check that the file is complete.") from err
    # MONAI's CheckpointLoader accepts a bare state dict or {"model": state_dict} (its load_dict key).
    for _ in range(2):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = [obj[k] for k in ("model", "state_dict", "network") if isinstance(obj.get(k), Mapping)]
            if inner:
                obj = inner[0]
                continue
        break
    raise ModelError(f"{path.name} holds no state dict of tensors.", "Save torch.save(net.state_dict(), 'models/model.pt').")


# --- the network ---------------------------------------------------------------------------------------------


def build_network(config: dict[str, Any], root: Path, *, trust_bundle_code: bool = False) -> nn.Module:
    """Instantiate ``network_def`` with MONAI's ``ConfigParser``.

    Without ``trust_bundle_code`` only a checked, plain copy of ``network_def`` reaches the parser (see the module docstring).

    Raises
    ------
    ModelError
        No ``network_def``, or MONAI could not build it.
    UntrustedModelError
        ``network_def`` needs an expression or a component from outside ``monai.networks`` / ``torch.nn``.
    """
    ConfigParser = _config_parser()
    if "network_def" not in config:
        raise ModelError("The bundle's inference config has no network_def.", "Add the network's network_def, or ship models/model.ts.")
    if trust_bundle_code:
        parsed = dict(config)
        parsed["bundle_root"] = str(root)
        parser = ConfigParser(parsed)
        with _importable(root):
            try:
                if "imports" in parsed:
                    parser.get_parsed_content("imports")
                network = parser.get_parsed_content("network_def", instantiate=True)
            except Exception as err:  # whatever the bundle's own code raises
                raise ModelError(f"MONAI could not build the bundle's network_def ({type(err).__name__}: {err}).", "Check the bundle's config and scripts.") from err
    else:
        clean = _checked_network_def(config)
        try:
            network = ConfigParser({"network_def": clean}).get_parsed_content("network_def", instantiate=True)
        except Exception as err:  # MONAI wraps constructor errors in RuntimeError
            raise ModelError(f"MONAI could not build the bundle's network_def ({type(err).__name__}: {err}).", "Check network_def's arguments.") from err
    if not isinstance(network, nn.Module):
        raise ModelError(f"The bundle's network_def built a {type(network).__name__}, not a torch.nn.Module.", "Point network_def at the network class.")
    return network


@contextlib.contextmanager
def _importable(root: Path) -> Iterator[None]:
    # MONAI's bundle runner puts the bundle folder on sys.path so that "scripts.x" imports.
    sys.path.insert(0, str(root))
    before = set(sys.modules)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))
        # Forget the bundle's own modules (e.g. "scripts"), so that another bundle's same-named package is not this one.
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin and Path(origin).resolve().is_relative_to(root.resolve()):
                del sys.modules[name]


def _untrusted(what: str) -> UntrustedModelError:
    return UntrustedModelError(
        f"The bundle's network_def {what}; building it would run code chosen by the bundle's author.",
        "Write network_def with plain values and a MONAI network class, or, only if you trust the bundle, "
        "load it with trust_bundle_code=True.",
    )


def _checked_network_def(config: dict[str, Any]) -> Any:
    clean = _plain(config, config["network_def"], ("network_def",), lambda v: _untrusted(f"uses the expression {v!r}"))
    from monai.bundle.config_item import ComponentLocator

    locator = ComponentLocator()

    def check(node: Any) -> None:
        if isinstance(node, dict):
            if "_target_" in node:
                for key in ("_mode_", "_requires_"):
                    if key in node:
                        raise _untrusted(f"sets {key}")
                _check_target(node["_target_"], locator)
                if node.get("pretrained") not in (None, False):
                    raise ModelError(
                        "The bundle's network_def asks for pretrained weights, which would be downloaded.",
                        'Set "pretrained": false in network_def: the bundle\'s models/model.pt holds the weights.',
                    )
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                check(value)

    check(clean)
    if not (isinstance(clean, dict) and "_target_" in clean):
        raise ModelError("The bundle's network_def is not a component (no _target_).", 'Write it as {"_target_": "UNet", ...}.')
    return clean


def _check_target(target: Any, locator: Any) -> None:
    if not isinstance(target, str):
        raise _untrusted(f"names the component {target!r}")
    module = locator.get_component_module_name(target)
    if isinstance(module, list):
        module = module[0]  # MONAI's own choice when a name is ambiguous
    full = f"{module}.{target}" if module else target
    if not full.startswith(ALLOWED_TARGET_PREFIXES):
        raise _untrusted(f"names the component {target!r} ({full}), which is not a network from monai.networks or torch.nn")
    mod_name, _, attr = full.rpartition(".")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"The bundle's network_def names {target!r}, which this MONAI does not have ({err}).", "Install the MONAI version the bundle was made with (metadata.json's monai_version).") from err
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise _untrusted(f"names {full}, which is not a torch.nn.Module class")


_MISSING = object()


def _lookup(config: Any, ref: str) -> Any:
    node = config
    for part in ref.replace("#", "::").split("::"):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _plain(config: dict[str, Any], value: Any, trail: tuple[str, ...], on_expr: Any) -> Any:
    """``value`` with ``"@id"`` references replaced by what they name; ``on_expr(v)`` is raised for expressions and macros."""
    if isinstance(value, str):
        if value.startswith("@"):
            ref = value[1:]
            if ref in trail or ref.startswith(("#", "::")):
                raise on_expr(value)
            target = _lookup(config, ref)
            if target is _MISSING:
                raise ModelError(f"The bundle config refers to {value!r}, which it does not define.", "Fix the reference in the config.")
            return _plain(config, target, trail + (ref,), on_expr)
        if value.startswith(("$", "%")):
            raise on_expr(value)
        return value
    if isinstance(value, Mapping):
        return {k: _plain(config, v, trail, on_expr) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(config, v, trail, on_expr) for v in value]
    return value


# --- preprocessing, inferer and metadata as a spec --------------------------------------------------------------


class _Untranslatable(Exception):
    pass


def bundle_spec(config: dict[str, Any], meta: dict[str, Any], name: str | None = None) -> ModelSpec:
    """Translate a bundle's preprocessing, inferer and metadata into a :class:`ModelSpec`.

    Raises
    ------
    ModelError
        Naming every transform (or inferer) that has no spec equivalent.
    """

    def expr(v: str) -> _Untranslatable:
        return _Untranslatable(f"the expression {v!r}")

    fmt = meta.get("network_data_format", {}) if isinstance(meta.get("network_data_format"), Mapping) else {}
    inputs = fmt.get("inputs", {}) or {}
    outputs = fmt.get("outputs", {}) or {}
    image_key = config.get("image_key") if isinstance(config.get("image_key"), str) else next(iter(inputs), "image")
    inp = inputs.get(image_key) or next(iter(inputs.values()), {}) or {}
    out = next(iter(outputs.values()), {}) or {}
    problems: list[str] = []
    fields: dict[str, Any] = {"name": (meta.get("name") or name or "MONAI bundle") + (f" {meta['version']}" if meta.get("version") else "")}
    kind = str(out.get("format", "")).lower()
    fields["task"] = "segmentation" if kind == "segmentation" else "classification" if kind in ("classification", "probabilities", "labels") else "auto"
    net_def = config.get("network_def")
    dims = None
    with contextlib.suppress(_Untranslatable, ModelError):
        dims = _plain(config, net_def.get("spatial_dims"), (), expr) if isinstance(net_def, Mapping) else None
    if not isinstance(dims, int):
        shape = inp.get("spatial_shape")
        dims = len(shape) if isinstance(shape, list) and len(shape) in (2, 3) else None
    if dims is None:
        problems.append("the number of spatial dimensions (neither network_def's spatial_dims nor metadata's spatial_shape)")
        dims = 3
    fields["spatial_dims"] = dims
    fields["transpose"] = list(range(dims))[::-1]  # MONAI's arrays are (x, y, z): the reverse of numpy's order
    if isinstance(inp.get("num_channels"), int):
        fields["in_channels"] = inp["num_channels"]
    channel_def = out.get("channel_def")
    if isinstance(channel_def, Mapping) and channel_def:
        with contextlib.suppress(ValueError):
            fields["labels"] = [str(channel_def[k]) for k in sorted(channel_def, key=int)]
    try:
        transforms = _transform_list(config, expr)
    except _Untranslatable as err:
        problems.append(f"preprocessing ({err})")
        transforms = []
    intensity = []
    for t in transforms:
        try:
            _translate_transform(t, image_key, dims, fields, intensity, expr)
        except _Untranslatable as err:
            problems.append(str(err))
    if len(intensity) > 1:
        problems.append(f"{' then '.join(n for n, _ in intensity)} (more than one intensity transform)")
    elif intensity:
        fields["intensity"] = intensity[0][1]
    try:
        sw = _translate_inferer(config, dims, expr)
    except _Untranslatable as err:
        problems.append(str(err))
        sw = None
    if sw is not None:
        fields["sliding_window"] = sw
    if problems:
        raise ModelError(
            "The bundle's preprocessing cannot be translated into a napari-xai spec: " + "; ".join(problems) + ".",
            "Pass spec=... describing the model's input (orientation, input_spacing, intensity, sliding_window; "
            "see ModelSpec) and napari-xai uses it instead of translating the bundle's transforms.",
        )
    return ModelSpec.from_dict(fields)


def _transform_list(config: dict[str, Any], expr: Any) -> list[dict[str, Any]]:
    pre = config.get("preprocessing")
    if pre is None:
        return []
    pre = _plain(config, pre, ("preprocessing",), expr)
    if isinstance(pre, Mapping) and isinstance(pre.get("transforms"), list):
        items = pre["transforms"]
    elif isinstance(pre, list):
        items = pre
    else:
        raise _Untranslatable("not a Compose of transforms")
    flat: list[dict[str, Any]] = []
    for t in items:
        if isinstance(t, Mapping) and _short(t.get("_target_")) == "Compose" and isinstance(t.get("transforms"), list):
            flat.extend(_transform_list({"preprocessing": t}, expr))
        elif isinstance(t, Mapping) and "_target_" in t:
            flat.append(dict(t))
        else:
            raise _Untranslatable(f"the item {t!r}")
    return flat


def _short(target: Any) -> str:
    return str(target).rpartition(".")[2] if target is not None else ""


def _translate_transform(
    t: dict[str, Any], image_key: str, dims: int, fields: dict[str, Any], intensity: list[tuple[str, dict]], expr: Any
) -> None:
    name = _short(t.get("_target_"))
    if t.get("_disabled_") in (True, "true", "True"):
        return
    keys = t.get("keys", image_key)
    keys = [keys] if isinstance(keys, str) else list(keys) if isinstance(keys, (list, tuple)) else [image_key]
    if name.endswith("d") and image_key not in keys:
        return  # acts on another key (labels, metadata)
    if name in _NO_OPS:
        return
    if name in ("Orientationd", "Orientation"):
        if t.get("labels") not in (None, [["L", "R"], ["P", "A"], ["I", "S"]]) or not isinstance(t.get("axcodes"), str):
            raise _Untranslatable(f"{name} with axcodes {t.get('axcodes')!r} and labels {t.get('labels')!r}")
        fields["orientation"] = t["axcodes"]
        return
    if name in ("Spacingd", "Spacing"):
        pixdim = t.get("pixdim")
        pixdim = [pixdim] * dims if isinstance(pixdim, (int, float)) else pixdim
        mode = t.get("mode", "bilinear")
        mode = mode[0] if isinstance(mode, list) and mode else mode
        if not isinstance(pixdim, list) or len(pixdim) < dims or any(not isinstance(v, (int, float)) or v <= 0 for v in pixdim[:dims]):
            raise _Untranslatable(f"{name} with pixdim {t.get('pixdim')!r} (one positive spacing per axis is translatable)")
        if mode not in ("bilinear", "linear", 1) or t.get("diagonal") or t.get("scale_extent"):
            raise _Untranslatable(f"{name} with mode {mode!r} (the engine resamples linearly, diagonal and scale_extent off)")
        fields["input_spacing"] = [float(v) for v in pixdim[:dims]]
        return
    if name in ("ScaleIntensityRanged", "ScaleIntensityRange"):
        intensity.append((name, {"type": "range", "a_min": t.get("a_min"), "a_max": t.get("a_max"),
                                 "b_min": t.get("b_min"), "b_max": t.get("b_max"), "clip": bool(t.get("clip", False))}))
        return
    if name in ("NormalizeIntensityd", "NormalizeIntensity"):
        sub, div, nonzero = t.get("subtrahend"), t.get("divisor"), bool(t.get("nonzero", False))
        if sub is None and div is None:
            if t.get("channel_wise") is not True and fields.get("in_channels", 1) > 1:
                raise _Untranslatable(f"{name} over all channels together (channel_wise false on a multi-channel input)")
            intensity.append((name, {"type": "zscore", "nonzero": nonzero, "keep_zeros": nonzero}))
            return
        if isinstance(sub, (int, float)) and isinstance(div, (int, float)) and div != 0 and not nonzero:
            intensity.append((name, {"type": "scale", "offset": float(sub), "scale": 1.0 / float(div)}))
            return
        raise _Untranslatable(f"{name} with subtrahend {sub!r}, divisor {div!r}, nonzero {nonzero}")
    if name in ("ScaleIntensityd", "ScaleIntensity"):
        if t.get("minv", 0.0) == 0.0 and t.get("maxv", 1.0) == 1.0 and t.get("factor") is None and t.get("channel_wise", False) is False:
            intensity.append((name, {"type": "minmax"}))
            return
        raise _Untranslatable(f"{name} with minv {t.get('minv')!r}, maxv {t.get('maxv')!r} (only the default [0, 1] is translatable)")
    raise _Untranslatable(name or repr(t))


def _translate_inferer(config: dict[str, Any], dims: int, expr: Any) -> dict[str, Any] | None:
    inferer = config.get("inferer")
    if inferer is None:
        return None
    try:
        inferer = _plain(config, inferer, ("inferer",), expr)
    except _Untranslatable:
        # expressions in arguments that do not change the result (e.g. "device") are fine
        raw = inferer if isinstance(inferer, Mapping) else {}
        inferer = {k: _plain(config, v, ("inferer",), expr) for k, v in raw.items() if k not in _SW_IGNORED}
        inferer.update({k: None for k in raw if k in _SW_IGNORED})
    name = _short(inferer.get("_target_")) if isinstance(inferer, Mapping) else ""
    if name == "SimpleInferer":
        return None
    if name != "SlidingWindowInferer":
        raise _Untranslatable(f"the inferer {name or inferer!r} (SimpleInferer and SlidingWindowInferer are translatable)")
    unknown = sorted(set(inferer) - _SW_KEYS - _SW_IGNORED - {"_target_"})
    if unknown:
        raise _Untranslatable(f"SlidingWindowInferer's {', '.join(unknown)}")
    sw = {k: inferer[k] for k in _SW_KEYS if k in inferer}
    roi = sw.get("roi_size")
    if isinstance(roi, int):
        sw["roi_size"] = [roi] * dims
    if isinstance(sw.get("roi_size"), list) and any(isinstance(v, int) and v <= 0 for v in sw["roi_size"]):
        raise _Untranslatable(f"SlidingWindowInferer's roi_size {roi!r} (non-positive entries mean 'whole image' in MONAI)")
    if isinstance(sw.get("overlap"), (int, float)) and not isinstance(sw.get("overlap"), bool):
        sw["overlap"] = float(sw["overlap"])
    return sw
