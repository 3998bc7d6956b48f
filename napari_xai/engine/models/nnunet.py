"""nnU-Net v2 trained-model folders: the network from the plans, nnU-Net's preprocessing as a spec.

A results folder (``nnUNet_results/DatasetXXX/<trainer>__<plans>__<configuration>``)
holds ``dataset.json``, ``plans.json`` and ``fold_N/checkpoint_final.pth``. The
checkpoint is a pickled dict (``network_weights``, ``init_args`` with the plans
and dataset JSON, ``trainer_name``, ``inference_allowed_mirroring_axes``, the
optimizer state and the training log, whose numbers are numpy scalars). It is
read with ``torch.load(weights_only=True)`` plus exactly the numpy scalar types
that log needs; any other class in the file is refused.

The network is built as nnU-Net's ``get_network_from_plans`` builds it
(``nnunetv2/utilities/get_network_from_plans.py``): the plans' architecture
class from ``dynamic_network_architectures`` with ``input_channels``,
``num_classes`` and ``arch_kwargs``, the classes named in
``_kw_requires_import`` located, deep supervision off. Here both the network
class and those classes are checked against allowlists (the package's U-Nets;
``torch.nn`` layers) before anything is imported, so plans cannot name
arbitrary code.

The spec reproduces ``DefaultPreprocessor.run_case_npy`` and
``nnUNetPredictor``: ``transpose_forward``, the configuration's target spacing,
the normalisation scheme (``CTNormalization``: clip to the foreground's
``percentile_00_5``/``percentile_99_5``, then ``(x - mean) / std``;
``ZScoreNormalization``: per image, over the nonzero mask when
``use_mask_for_norm``), the patch size, and Gaussian sliding windows with
nnU-Net's defaults (``tile_step_size`` 0.5, sigma 1/8 of the patch, zero
padding, nnU-Net's window placement and Gaussian: the spec's
``sliding_window.style`` is ``"nnunet"``). Several folds are averaged logit by logit, as
``predict_logits_from_preprocessed_data`` averages them; mirroring test-time
augmentation (``_internal_maybe_mirror_and_predict``) is optional.

Where the engine differs from nnU-Net, by design: it resamples linearly
(nnU-Net: third-order spline, nearest along a very anisotropic axis) before
normalising (nnU-Net normalises first; the two agree except next to the clip
bounds), and it does not crop to the nonzero bounding box.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..errors import ModelError, UntrustedModelError
from .state_dict import load_state_strict
from .loaded_model import LoadedModel, weights_identity
from .spec import ModelSpec
from .json_files import read_json_object

#: Network classes a plan may name (the U-Nets of nnU-Net's architecture package), by class name.
ALLOWED_NETWORKS = {
    "PlainConvUNet": "dynamic_network_architectures.architectures.unet",
    "ResidualEncoderUNet": "dynamic_network_architectures.architectures.unet",
    "ResidualUNet": "dynamic_network_architectures.architectures.unet",
}
#: Modules that ``_kw_requires_import`` entries may come from; the object must be an nn.Module class.
ALLOWED_LAYER_MODULES = ("torch.nn",)
#: The plain types an nnU-Net checkpoint holds besides tensors and builtins (its training log's numpy scalars).
_SAFE_GLOBAL_NAMES = (
    "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype",
    "numpy.dtypes.Float64DType", "numpy.dtypes.Float32DType", "numpy.dtypes.Int64DType", "numpy.dtypes.BoolDType",
)
#: nnU-Net's sliding-window defaults (nnUNetPredictor: tile_step_size=0.5; compute_gaussian: sigma_scale=1/8).
NNUNET_TILE_STEP = 0.5
NNUNET_SIGMA_SCALE = 0.125


def is_nnunet_results(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an nnU-Net v2 results folder (``dataset.json``, ``plans.json``, ``fold_*/``)."""
    p = Path(path)
    return (p / "dataset.json").is_file() and (p / "plans.json").is_file() and any(p.glob("fold_*/checkpoint_*.pth"))


def available_folds(path: str | os.PathLike, checkpoint: str = "checkpoint_final.pth") -> list[int | str]:
    """The folds with ``checkpoint``, as nnU-Net's ``auto_detect_available_folds`` finds them (``fold_all`` excluded)."""
    found = []
    for d in sorted(Path(path).glob("fold_*")):
        tag = d.name[len("fold_"):]
        if tag != "all" and tag.isdigit() and (d / checkpoint).is_file():
            found.append(int(tag))
    return sorted(found)


def load_nnunet(
    path: str | os.PathLike,
    spec: ModelSpec | None = None,
    *,
    folds: int | str | Sequence[int | str] | None = None,
    checkpoint: str = "checkpoint_final.pth",
    configuration: str | None = None,
    use_mirroring: bool = False,
) -> LoadedModel:
    """Load an nnU-Net v2 results folder.

    Parameters
    ----------
    path : str or PathLike
        The folder holding ``dataset.json``, ``plans.json`` and ``fold_N/``.
    spec : ModelSpec, optional
        Use this spec instead of the one made from the plans.
    folds : int, "all", or sequence of them, optional
        Which folds; several are averaged logit by logit (nnU-Net's ensemble).
        Default: every ``fold_N`` with the checkpoint, as nnU-Net picks them.
    checkpoint : str
        ``checkpoint_final.pth`` (default) or ``checkpoint_best.pth``.
    configuration : str, optional
        The plans' configuration; default the one the checkpoint was trained with.
    use_mirroring : bool
        Average over the checkpoint's mirroring axes, as nnU-Net predicts by
        default (2^k forward passes per window for k axes).

    Returns
    -------
    LoadedModel
        ``kind`` is ``"nnunet"``; ``extra`` holds the folds, trainer, configuration and mirroring axes.

    Raises
    ------
    ModelError
        Missing or inconsistent files, unsupported configurations.
    UntrustedModelError
        A checkpoint holds classes other than the plain types nnU-Net writes.
    """
    root = Path(path)
    if not is_nnunet_results(root):
        raise ModelError(
            f"{root} is not an nnU-Net v2 results folder (dataset.json, plans.json and fold_N/checkpoint_*.pth).",
            "Give the trained model's folder, e.g. nnUNet_results/Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres.",
        )
    dataset_json = _read_json(root / "dataset.json")
    plans = _read_json(root / "plans.json")
    chosen = _choose_folds(root, folds, checkpoint)
    checkpoints = [read_checkpoint(root / f"fold_{f}" / checkpoint) for f in chosen]
    first = checkpoints[0]
    trained_config = (first.get("init_args") or {}).get("configuration") if isinstance(first.get("init_args"), dict) else None
    if configuration is not None and trained_config is not None and configuration != trained_config:
        raise ModelError(
            f"The checkpoint was trained with the {trained_config!r} configuration, not {configuration!r}.",
            f"Leave configuration unset, or load the {configuration} model's folder.",
        )
    config_name = configuration or trained_config or "3d_fullres"
    try:
        conf = plan_configuration(plans, config_name)
        networks = []
        for f, ckpt in zip(chosen, checkpoints):
            net = build_network(conf, dataset_json)
            _load_weights(net, ckpt, root / f"fold_{f}" / checkpoint, first.get("trainer_name"))
            networks.append(net.eval())
        spec_obj = spec if spec is not None else nnunet_spec(plans, dataset_json, config_name)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        if isinstance(err, ModelError):
            raise
        raise ModelError(
            f"plans.json or dataset.json lacks or misstates an entry nnU-Net writes ({type(err).__name__}: {err}).",
            "Give the plans.json and dataset.json that nnU-Net wrote into the results folder.",
        ) from err
    module: nn.Module = networks[0] if len(networks) == 1 else FoldEnsemble(networks)
    mirror_axes = first.get("inference_allowed_mirroring_axes")
    if use_mirroring and mirror_axes:
        module = MirrorEnsemble(module, tuple(int(a) for a in mirror_axes))
    if spec is None and len(networks) == 1 and not (use_mirroring and mirror_axes):
        spec_obj.cam_layer = default_cam_layer(networks[0])
    module.eval()
    extra = {
        "folds": chosen,
        "checkpoint": checkpoint,
        "configuration": config_name,
        "trainer_name": first.get("trainer_name"),
        "mirroring_axes": list(mirror_axes) if mirror_axes else None,
        "use_mirroring": bool(use_mirroring and mirror_axes),
    }
    return LoadedModel(module, spec_obj, "nnunet", str(root), weights_identity(module), extra=extra)


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, path.name, "Give the results folder nnU-Net wrote.")


def _choose_folds(root: Path, folds: Any, checkpoint: str) -> list[int | str]:
    if folds is None:
        chosen: list[int | str] = available_folds(root, checkpoint)
        if not chosen and (root / "fold_all" / checkpoint).is_file():
            chosen = ["all"]
    else:
        seq = [folds] if isinstance(folds, (int, str)) else list(folds)
        bad = [f for f in seq if not (f == "all" or (isinstance(f, int) and not isinstance(f, bool)) or (isinstance(f, str) and f.isdigit()))]
        if bad or not seq:
            raise ModelError(f"folds {folds!r} are not fold numbers.", 'Give a fold number, a list of them, or "all".')
        chosen = [f if f == "all" else int(f) for f in seq]
    missing = [f for f in chosen if not (root / f"fold_{f}" / checkpoint).is_file()]
    if not chosen or missing:
        have = sorted(d.name for d in root.glob("fold_*") if (d / checkpoint).is_file())
        raise ModelError(
            f"No {checkpoint} for fold(s) {missing or chosen} in {root.name}.",
            f"Pick from {have or 'none: train a fold first'}, or give checkpoint='checkpoint_best.pth'.",
        )
    return chosen


def _safe_globals() -> list[Any]:
    found = []
    for name in _SAFE_GLOBAL_NAMES:
        mod, _, attr = name.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(mod), attr))
        except (ImportError, AttributeError):
            continue  # numpy 1 has numpy.core, numpy 2 numpy._core; older numpy lacks numpy.dtypes
    return found


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read an nnU-Net checkpoint with ``weights_only=True`` and only numpy's scalar types allowed besides.

    Raises
    ------
    UntrustedModelError
        The file holds other classes (naming them).
    ModelError
        Unreadable, or not a dict with ``network_weights``.
    """
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # an unreadable archive: report the original error
            names = []
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _safe_globals()}
        names = [n for n in names if n not in allowed and n not in _SAFE_GLOBAL_NAMES]
        raise UntrustedModelError(
            f"{path.parent.name}/{path.name} holds Python objects that are not plain data"
            + (f" ({', '.join(names[:6])})" if names else "")
            + "; unpickling them would run code chosen by the file's author.",
            "Use the checkpoint nnU-Net wrote, or re-save only its weights: "
            "torch.save({'network_weights': ckpt['network_weights'], 'trainer_name': ckpt['trainer_name'], "
            "'init_args': {'configuration': ckpt['init_args']['configuration']}}, path).",
        ) from err
    except Exception as err:  # torch raises many types for corrupt files
        raise ModelError(f"{path.parent.name}/{path.name} could not be read ({type(err).__name__}).", "Check that the file is complete.") from err
    if not isinstance(obj, dict) or not isinstance(obj.get("network_weights"), dict):
        raise ModelError(
            f"{path.parent.name}/{path.name} is not an nnU-Net checkpoint (no 'network_weights').",
            "Give the checkpoint_final.pth that nnU-Net's trainer wrote.",
        )
    return obj


def plan_configuration(plans: dict[str, Any], name: str) -> dict[str, Any]:
    """The configuration ``name`` with ``inherits_from`` resolved, as nnU-Net's ``PlansManager`` does.

    Raises
    ------
    ModelError
        Unknown, circular, old-format, cascaded or 2D configurations.
    """
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        raise ModelError(
            f"plans.json has no configuration {name!r}.",
            f"Use one of {sorted(configs) if isinstance(configs, dict) else '(none)'}.",
        )
    chain, conf = [name], copy.deepcopy(configs[name])
    while "inherits_from" in conf:
        parent = conf.pop("inherits_from")
        if parent in chain or parent not in configs:
            raise ModelError(f"plans.json: configuration {chain[-1]!r} inherits from {parent!r}, which is {'circular' if parent in chain else 'missing'}.", "Fix the plans.")
        chain.append(parent)
        base = copy.deepcopy(configs[parent])
        base.update(conf)
        conf = base
    if "architecture" not in conf:
        raise ModelError(
            f"plans.json's {name!r} configuration is in the old format (no 'architecture' entry).",
            "Re-run nnUNetv2_plan_experiment with nnU-Net >= 2.3, which writes the architecture into the plans.",
        )
    if conf.get("previous_stage"):
        raise ModelError(
            f"The {name!r} configuration is a cascade stage: it takes the previous stage's segmentation as input.",
            "Explain the previous stage's model, or a 3d_fullres model of the dataset.",
        )
    if len(conf.get("patch_size", [])) != 3:
        raise ModelError(
            f"The {name!r} configuration is {len(conf.get('patch_size', []))}D; nnU-Net runs it slice by slice over the volume.",
            "Use the dataset's 3d_fullres (or 3d_lowres) model.",
        )
    return conf


def _segmentation_heads(dataset_json: dict[str, Any]) -> tuple[int, list[str]]:
    """Output channels and their names, as nnU-Net's ``LabelManager`` counts them."""
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ModelError("dataset.json has no 'labels'.", "Give the dataset.json nnU-Net trained with.")
    items = [(k, v) for k, v in labels.items() if k != "ignore"]
    if any(isinstance(v, (list, tuple)) for _, v in items):  # region-based training: one sigmoid head per region
        regions = [k for k, v in items if not (v == 0 or (isinstance(v, (list, tuple)) and set(v) == {0}))]
        return len(regions), regions
    by_value = sorted(items, key=lambda kv: int(kv[1]))
    return len({int(v) for _, v in by_value}), [k for k, _ in by_value]


def _locate_checked(name: Any, allowed: dict[str, str] | None) -> Any:
    """Import a class a plan names, only from the allowlists (never an arbitrary module)."""
    if not isinstance(name, str):
        raise ModelError(f"plans.json names {name!r} where a class name belongs.", "Give the plans nnU-Net wrote.")
    mod_name, _, attr = name.rpartition(".")
    if allowed is not None:
        if attr not in allowed or not mod_name.startswith("dynamic_network_architectures."):
            raise UntrustedModelError(
                f"plans.json names the network {name!r}, which is not one of dynamic_network_architectures' U-Nets "
                f"({', '.join(sorted(allowed))}).",
                "napari-xai builds only those from plans; for another architecture export the network with torch.export (.pt2).",
            )
        mod_name = allowed[attr]  # nnU-Net too looks a moved class up by name inside the package
    elif not (mod_name == "torch.nn" or mod_name.startswith(tuple(m + "." for m in ALLOWED_LAYER_MODULES))):
        raise UntrustedModelError(
            f"plans.json names {name!r} as a layer class, which is not a torch.nn layer.",
            "napari-xai builds plans' networks only from torch.nn layers.",
        )
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as err:
        fix = (
            "Install nnU-Net's architecture package: pip install --no-deps dynamic_network_architectures einops."
            if allowed is not None
            else "Give the plans nnU-Net wrote."
        )
        raise ModelError(f"{name} could not be imported ({err}).", fix) from err
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise UntrustedModelError(f"plans.json names {name!r}, which is not a torch.nn.Module class.", "Give the plans nnU-Net wrote.")
    return obj


def build_network(conf: dict[str, Any], dataset_json: dict[str, Any]) -> nn.Module:
    """The configuration's network with deep supervision off, as ``get_network_from_plans`` builds it (weights not initialised)."""
    arch = conf["architecture"]
    cls = _locate_checked(arch.get("network_class_name"), ALLOWED_NETWORKS)
    kwargs = dict(arch.get("arch_kwargs") or {})
    for key in arch.get("_kw_requires_import") or ():
        if kwargs.get(key) is not None:
            kwargs[key] = _locate_checked(kwargs[key], None)
    kwargs["deep_supervision"] = False
    channels = dataset_json.get("channel_names") or dataset_json.get("modality")
    if not isinstance(channels, dict) or not channels:
        raise ModelError("dataset.json has no 'channel_names'.", "Give the dataset.json nnU-Net trained with.")
    heads, _ = _segmentation_heads(dataset_json)
    try:
        return cls(input_channels=len(channels), num_classes=heads, **kwargs)
    except (TypeError, AssertionError, ValueError) as err:
        raise ModelError(f"{cls.__name__} rejected the plans' arch_kwargs ({err}).", "Give the plans nnU-Net wrote for this model.") from err


def _load_weights(net: nn.Module, ckpt: dict[str, Any], path: Path, trainer: Any) -> None:
    state = {}
    own = net.state_dict().keys()
    for key, value in ckpt["network_weights"].items():
        for prefix in ("module.", "_orig_mod."):  # saved from DDP / torch.compile, as nnU-Net's load_checkpoint handles
            if key not in own and key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    load_state_strict(
        net, state, f"The weights in {path.parent.name}/{path.name} do not fit the network the plans describe",
        f"The trainer {trainer!r} may build its own architecture; napari-xai builds the plans' network as "
        "nnUNetTrainer does. Export that model with torch.export (.pt2) instead.",
    )


def default_cam_layer(net: nn.Module) -> str | None:
    """The last decoder stage (full resolution, before the 1x1 segmentation head), when the network has one."""
    stages = getattr(getattr(net, "decoder", None), "stages", None)
    return f"decoder.stages.{len(stages) - 1}" if stages is not None and len(stages) else None


def _intensity(conf: dict[str, Any], plans: dict[str, Any], n_channels: int) -> dict[str, Any]:
    schemes = list(conf.get("normalization_schemes") or [])
    masks = list(conf.get("use_mask_for_norm") or [False] * len(schemes))
    if len(schemes) != n_channels or len(set(schemes)) != 1 or len(set(masks)) > 1:
        raise ModelError(
            f"The plans normalise the {n_channels} channel(s) with {schemes} (mask {masks}); the spec has one intensity transform for all channels.",
            "Pass spec=... with the intensity transform, or use a model whose channels share one scheme.",
        )
    scheme, mask = schemes[0], bool(masks[0]) if masks else False
    if scheme == "CTNormalization":
        props = plans.get("foreground_intensity_properties_per_channel") or plans.get("foreground_intensity_properties_by_modality") or {}
        per = [props.get(str(c)) for c in range(n_channels)]
        if any(not isinstance(p, dict) for p in per) or any(p != per[0] for p in per):
            raise ModelError(
                "CTNormalization needs the plans' foreground_intensity_properties_per_channel, the same for every channel.",
                "Give the plans.json nnU-Net wrote (it holds them), or pass spec=... with the intensity transform.",
            )
        p = per[0]
        return {"type": "ct", "lower": float(p["percentile_00_5"]), "upper": float(p["percentile_99_5"]),
                "mean": float(p["mean"]), "std": float(p["std"])}
    if scheme == "ZScoreNormalization":
        return {"type": "zscore", "nonzero": mask, "keep_zeros": mask}
    if scheme == "NoNormalization":
        return {"type": "none"}
    if scheme == "RescaleTo01Normalization":
        return {"type": "minmax"}
    if scheme == "RGBTo01Normalization":
        return {"type": "scale", "offset": 0.0, "scale": 1.0 / 255.0}
    raise ModelError(f"The plans use the normalisation {scheme!r}, which napari-xai does not know.", "Pass spec=... with the intensity transform.")


def nnunet_spec(plans: dict[str, Any], dataset_json: dict[str, Any], configuration: str) -> ModelSpec:
    """nnU-Net's preprocessing and sliding-window prediction for ``configuration`` as a :class:`ModelSpec`."""
    conf = plan_configuration(plans, configuration)
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    _, labels = _segmentation_heads(dataset_json)
    transpose = [int(v) for v in plans.get("transpose_forward", [0, 1, 2])]
    return ModelSpec.from_dict({
        "name": f"nnU-Net {plans.get('dataset_name', '')} {configuration}".replace("  ", " "),
        "task": "segmentation",
        "spatial_dims": 3,
        "in_channels": len(channels),
        "transpose": transpose,
        "input_spacing": [float(v) for v in conf["spacing"]],
        "intensity": _intensity(conf, plans, len(channels)),
        "labels": labels,
        "sliding_window": {
            "roi_size": [int(v) for v in conf["patch_size"]],
            "overlap": 1.0 - NNUNET_TILE_STEP,
            "mode": "gaussian",
            "sigma_scale": NNUNET_SIGMA_SCALE,
            "padding_mode": "constant",
            "cval": 0.0,
            "style": "nnunet",
        },
    })


class FoldEnsemble(nn.Module):
    """The mean of several folds' logits (nnU-Net's ``predict_logits_from_preprocessed_data``)."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.folds[0](x)
        for net in self.folds[1:]:
            out = out + net(x)
        return out / len(self.folds)


class MirrorEnsemble(nn.Module):
    """The mean over every combination of flips along ``axes`` (spatial indices), as nnU-Net's mirroring."""

    def __init__(self, network: nn.Module, axes: Sequence[int]) -> None:
        super().__init__()
        self.network = network
        self.axes = tuple(int(a) for a in axes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [a + 2 for a in self.axes]
        combos = [c for i in range(len(dims)) for c in itertools.combinations(dims, i + 1)]
        out = self.network(x)
        for flip in combos:
            out = out + torch.flip(self.network(torch.flip(x, flip)), flip)
        return out / (len(combos) + 1)

