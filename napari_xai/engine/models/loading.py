"""Loading models from Python objects and files, never unpickling arbitrary objects by default.

Formats: ``torch.export`` archives (``.pt2``), TorchScript, and weights
(state dict saved with ``torch.save`` or ``.safetensors``) paired with an
architecture named in a JSON sidecar spec. A ``torch.save`` of a whole model
needs arbitrary unpickling, which runs any code the file's author chose: it is
refused unless the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import pickletools
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ModelError, UntrustedModelError
from .architectures import ArchitectureAllowlist, resolve_architecture
from .export_archive import checked_export_bytes
from .loaded_model import LoadedModel, weights_identity
from .spec import ModelSpec, merged_spec, sidecar_path


def as_loaded_model(
    model: Any,
    spec: ModelSpec | dict | str | os.PathLike | None = None,
    *,
    architectures: ArchitectureAllowlist = None,
) -> LoadedModel:
    """Coerce what a user passes as ``model`` into a :class:`LoadedModel`.

    Parameters
    ----------
    model : LoadedModel, torch.nn.Module, str or PathLike
        A path is loaded with :func:`load_model`.
    spec : ModelSpec, dict or path, optional
        Overrides fields of the model's spec, field by field (a dict or file
        sets its keys; a ModelSpec the fields that differ from the defaults),
        for the returned object only: a given :class:`LoadedModel` is never
        changed, so the override applies to one call.
    architectures : mapping or iterable, optional
        As for :func:`load_model`.
    """
    if isinstance(model, LoadedModel):
        if spec is None:
            return model
        return dataclasses.replace(model, spec=merged_spec(model.spec, spec), extra=dict(model.extra))
    if isinstance(model, (str, os.PathLike)):
        if spec is None:
            return load_model(model, architectures=architectures)
        p = Path(model)
        base = None
        if p.suffix.lower() == ".json" and p.is_file():
            base = ModelSpec.read(p)
        elif sidecar_path(p).is_file():
            base = ModelSpec.read(sidecar_path(p))
        return load_model(model, spec=merged_spec(base, spec), architectures=architectures)
    spec_obj = merged_spec(None, spec) if spec is not None else None
    if isinstance(model, torch.jit.ScriptModule):
        return LoadedModel(model, spec_obj or ModelSpec(), "torchscript", f"<{type(model).__name__}>", weights_identity(model))
    if isinstance(model, nn.Module):
        return LoadedModel(model, spec_obj or ModelSpec(), "module", f"<{type(model).__name__}>", weights_identity(model))
    raise ModelError(
        f"The model is a {type(model).__name__}, not a torch.nn.Module or a model file.",
        "Pass an nn.Module, or the path of a .pt2 / TorchScript / weights file.",
    )


def load_model(
    path: str | os.PathLike,
    spec: ModelSpec | dict | str | os.PathLike | None = None,
    *,
    trust_pickle: bool = False,
    architectures: ArchitectureAllowlist = None,
    **options: Any,
) -> LoadedModel:
    """Load a model file (or a MONAI bundle or nnU-Net results folder) safely.

    Parameters
    ----------
    path : str or PathLike
        A ``torch.export`` archive (``.pt2``), a TorchScript file, a state
        dict (``torch.save``) or ``.safetensors`` file, a JSON spec whose
        ``weights`` field names the weights file, a MONAI bundle folder
        (see :func:`~napari_xai.engine.models.monai_bundle.load_monai_bundle`)
        or an nnU-Net v2 results folder (see
        :func:`~napari_xai.engine.models.nnunet.load_nnunet`).
    spec : ModelSpec, dict or path, optional
        The model's spec; default: the sidecar ``<stem>.json`` if it exists.
        Weights files need one (it names the architecture).
    trust_pickle : bool
        Allow arbitrary unpickling (a whole model saved with ``torch.save``).
        Only for files you trust: unpickling runs code chosen by the file's author.
    architectures : mapping or iterable, optional
        Architectures a weights file's spec may name besides those registered
        with :func:`register_architecture`: classes (matched by
        ``"module:QualName"``), ``"package.module:Class"`` strings you allow to
        be imported, or a mapping from the spec's name to either. A spec alone
        never makes napari-xai import a module.
    **options
        Options of the folder loaders: ``trust_bundle_code`` and ``weights``
        for MONAI bundles; ``folds``, ``checkpoint``, ``configuration`` and
        ``use_mirroring`` for nnU-Net folders.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelError
        Missing, unreadable or inconsistent file or spec.
    UntrustedModelError
        The file would need arbitrary unpickling and ``trust_pickle`` is False.
    """
    p = Path(path)
    if p.is_dir():
        return _load_folder(p, _as_spec(spec) if spec is not None else None, options)
    if options:
        raise ModelError(f"load_model got option(s) {sorted(options)} for the file {p.name}.", "These options are for MONAI bundle and nnU-Net folders only.")
    if p.suffix.lower() == ".json":
        spec_obj = _as_spec(spec) if spec is not None else ModelSpec.read(p)
        if not spec_obj.weights:
            raise ModelError(f"Spec {p.name} names no weights file.", 'Add "weights": "<file>" to the spec, or load the model file itself.')
        weights_path = (p.parent / spec_obj.weights).resolve()
        if weights_path.suffix.lower() == ".json":
            raise ModelError(
                f"Spec {p.name} names {spec_obj.weights!r} as its weights, which is a JSON spec, not a weights file.",
                'Set "weights" to the model file (.safetensors, .pt, .pt2), relative to the spec.',
            )
        return load_model(weights_path, spec=spec_obj, trust_pickle=trust_pickle, architectures=architectures)
    if not p.is_file():
        raise ModelError(f"No model file at {p}.", "Check the path.")
    if spec is None and sidecar_path(p).is_file():
        spec = sidecar_path(p)
    spec_obj = _as_spec(spec) if spec is not None else ModelSpec()
    kind = _sniff_kind(p)
    try:
        if kind == "export":
            module, identity = _load_export(p, trust_pickle)
        elif kind == "torchscript":
            module = torch.jit.load(str(p), map_location="cpu")
            identity = weights_identity(module)
        elif kind == "safetensors":
            from safetensors.torch import load_file

            module = _build_from_weights(load_file(str(p), device="cpu"), spec_obj, p, architectures)
            identity, kind = weights_identity(module), "weights"
        else:
            module, kind = _load_torch_save(p, spec_obj, trust_pickle, architectures)
            identity = weights_identity(module)
    except ModelError:
        raise
    except Exception as err:  # torch raises many types for corrupt files
        raise ModelError(
            f"{p.name} could not be loaded as a {kind} model ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}).",
            "Check that the file is complete and was saved with torch.export.save, torch.jit.save, "
            "torch.save(model.state_dict()) or safetensors.",
        ) from err
    module.eval()
    return LoadedModel(module, spec_obj, kind, str(p), identity)


def _load_folder(p: Path, spec: ModelSpec | None, options: dict[str, Any]) -> LoadedModel:
    """Dispatch a folder to the MONAI bundle or nnU-Net loader (their own modules)."""
    from . import monai_bundle, nnunet

    for name, is_format, load, allowed in (
        ("MONAI bundle", monai_bundle.is_monai_bundle, monai_bundle.load_monai_bundle, {"trust_bundle_code", "weights"}),
        ("nnU-Net results folder", nnunet.is_nnunet_results, nnunet.load_nnunet, {"folds", "checkpoint", "configuration", "use_mirroring"}),
    ):
        if is_format(p):
            unknown = sorted(set(options) - allowed)
            if unknown:
                raise ModelError(f"load_model got option(s) {unknown}, which a {name} does not take.", f"Use {sorted(allowed)}.")
            return load(p, spec, **options)
    raise ModelError(
        f"{p} is a folder, but neither a MONAI bundle (configs/metadata.json, configs/inference.json) "
        "nor an nnU-Net v2 results folder (dataset.json, plans.json, fold_N/checkpoint_final.pth).",
        "Give a model file, a MONAI bundle's root folder or an nnU-Net trained-model folder.",
    )


def _as_spec(spec: ModelSpec | dict | str | os.PathLike) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, dict):
        return ModelSpec.from_dict(spec)
    return ModelSpec.read(spec)


def _sniff_kind(p: Path) -> str:
    if p.suffix.lower() == ".safetensors":
        return "safetensors"
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
        if any(n.endswith("archive_format") for n in names):
            return "export"
        if any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch.save"  # whatever its suffix (e.g. a whole-model pickle renamed .pt2)
        if p.suffix.lower() == ".pt2":
            return "export"
    return "torch.save"


# torch's export deserializer keeps its state in a module global
# (``_CURRENT_DESERIALIZER``), so two loads at once in one process clash;
# loads of export archives therefore take turns. The check that makes a load
# safe (export_archive.checked_export_bytes) is per call and needs no lock.
_EXPORT_LOAD_LOCK = threading.Lock()


def _load_export(p: Path, trust_pickle: bool) -> tuple[nn.Module, str]:
    data = p.read_bytes()
    if not trust_pickle:
        checked_export_bytes(data, p.name)
    with _EXPORT_LOAD_LOCK:
        program = torch.export.load(io.BytesIO(data))
    module = torch.export.unflatten(program)
    digest = hashlib.sha256()
    for key, value in list(program.state_dict.items()) + list(program.constants.items()):
        digest.update(key.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return module, digest.hexdigest()


def _load_torch_save(
    p: Path, spec: ModelSpec, trust_pickle: bool, architectures: ArchitectureAllowlist
) -> tuple[nn.Module, str]:
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # The weights-only unpickler names the global it refused, or stops at
        # an opcode it lacks; a file that is no pickle at all is corruption.
        if "global" not in str(err).lower() and not _pickle_references_code(p):
            raise
        if not trust_pickle:
            raise UntrustedModelError(
                f"{p.name} is a pickled Python object (e.g. a whole model saved with torch.save(model)), "
                "not plain weights; unpickling it would run code chosen by the file's author.",
                "Save the weights instead (torch.save(model.state_dict()) or safetensors) with a JSON spec naming "
                "the architecture, or export with torch.export; only if you trust the file, load it with trust_pickle=True.",
            ) from err
        obj = torch.load(str(p), map_location="cpu", weights_only=False)
        if not isinstance(obj, nn.Module):
            raise ModelError(f"{p.name} holds a {type(obj).__name__}, not a model.", "Save the nn.Module or its state dict.")
        return obj, "pickle"
    if isinstance(obj, nn.Module):
        return obj, "pickle"
    return _build_from_weights(obj, spec, p, architectures), "weights"


def _pickle_references_code(p: Path) -> bool:
    """Whether the file is a pickle that imports or calls objects, found by reading opcodes (never executing them)."""
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return False
                data = zf.read(name)
        else:
            data = p.read_bytes()
        return any(op.name in _CODE_OPCODES for op, _arg, _pos in pickletools.genops(data))
    except Exception:  # not a parsable pickle stream
        return False


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def _build_from_weights(state: Any, spec: ModelSpec, p: Path, architectures: ArchitectureAllowlist = None) -> nn.Module:
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{p.name} holds no state dict of tensors.", "Save torch.save(model.state_dict()).")
    if not spec.architecture or "factory" not in spec.architecture:
        raise ModelError(
            f"{p.name} holds only weights, and no spec names the architecture they belong to.",
            f"Put a JSON spec next to it ({sidecar_path(p).name}) with "
            '"architecture": {"factory": "package.module:ClassName", "kwargs": {...}}, or pass spec=...',
        )
    cls = resolve_architecture(spec.architecture["factory"], architectures)
    try:
        module = cls(**spec.architecture.get("kwargs", {}))
    except TypeError as err:
        raise ModelError(f"Architecture {spec.architecture['factory']} rejected its kwargs ({err}).", "Fix architecture.kwargs in the spec.") from err
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        raise ModelError(
            f"The weights in {p.name} do not fit architecture {spec.architecture['factory']}: {str(err).splitlines()[0]} "
            f"{' '.join(line.strip() for line in str(err).splitlines()[1:3])}",
            "Check that architecture.kwargs match the trained model, or use the right weights file.",
        ) from err
    return module
