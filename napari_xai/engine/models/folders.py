"""What a model folder holds and the ways to load it, for the hosts' folder pickers.

A folder is a MONAI bundle (``configs/metadata.json``), an nnU-Net v2
results folder (``dataset.json``, ``plans.json``, ``fold_N/``), or an nnU-Net
dataset folder holding several results folders, one per trained
configuration (``{trainer}__{plans}__{configuration}``, nnU-Net's layout
under ``nnUNet_results/DatasetXXX_Name``). :func:`folder_choices` lists every
way to load it (for nnU-Net: the average of the folds, as nnU-Net predicts,
or one fold; per configuration) with a line saying what will load, read from
the JSON files only (no checkpoint is opened). napari and Slicer show these
choices and call :meth:`FolderChoice.load`; neither knows the formats.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from . import monai_bundle, nnunet
from .json_files import read_json_object

#: The label of the choice that averages every fold's logits.
AVERAGE_OF_FOLDS = "average of folds"


@dataclass(frozen=True)
class FolderChoice:
    """One way to load a model folder.

    Attributes
    ----------
    label : str
        What a host shows in its menu, e.g. ``"3d_fullres: fold 0"``.
    path : str
        The folder :func:`~napari_xai.engine.load_model` gets.
    options : tuple of (str, value)
        Its keyword arguments (e.g. ``(("folds", 0),)``).
    description : str
        What will load: format, dataset, configuration, folds, patch, spacing, labels.
    """

    label: str
    path: str
    options: tuple[tuple[str, Any], ...]
    description: str

    def load(self):
        """Load the model this choice names (:func:`~napari_xai.engine.load_model`)."""
        from .loading import load_model

        return load_model(self.path, **dict(self.options))


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder :func:`folder_choices` can list."""
    p = Path(path)
    return p.is_dir() and (monai_bundle.is_monai_bundle(p) or nnunet.is_nnunet_results(p) or bool(_results_folders(p)))


def folder_choices(path: str | os.PathLike) -> list[FolderChoice]:
    """Every way to load the model folder ``path``, the default first.

    Raises
    ------
    ModelError
        ``path`` is neither a MONAI bundle nor an nnU-Net results or dataset folder, or its JSON cannot be read.
    """
    p = Path(path)
    if monai_bundle.is_monai_bundle(p):
        return [FolderChoice("MONAI bundle", str(p), (), _bundle_description(p))]
    if nnunet.is_nnunet_results(p):
        return _nnunet_choices(p, prefix="")
    folders = _results_folders(p)
    if folders:
        return [c for f in folders for c in _nnunet_choices(f, prefix=f"{_configuration_of(f) or f.name}: ")]
    raise ModelError(
        f"{p} is not a MONAI bundle (configs/metadata.json) or an nnU-Net results folder (dataset.json, plans.json, fold_N/).",
        "Choose the bundle's folder, or nnUNet_results/DatasetXXX_Name or one of its Trainer__Plans__configuration folders; "
        "for a single model file use the file picker.",
    )


def choice_by_label(path: str | os.PathLike, label: str) -> FolderChoice:
    """The choice of ``path`` labelled ``label`` (the first when ``label`` is empty), e.g. from a saved scene.

    Raises
    ------
    ModelError
        No choice has that label (the folder changed since it was saved).
    """
    choices = folder_choices(path)
    if not label:
        return choices[0]
    for choice in choices:
        if choice.label == label:
            return choice
    raise ModelError(f"{Path(path).name} has no {label!r}.", f"Choose one of: {', '.join(c.label for c in choices)}.")


def _results_folders(p: Path) -> list[Path]:
    if not p.is_dir():
        return []
    return sorted(d for d in p.iterdir() if d.is_dir() and nnunet.is_nnunet_results(d))


def _configuration_of(folder: Path) -> str | None:
    """The configuration nnU-Net names the results folder after (``Trainer__Plans__configuration``)."""
    parts = folder.name.split("__")
    return parts[2] if len(parts) == 3 else None


def _read(path: Path) -> dict[str, Any]:
    return read_json_object(path, f"{path.parent.name}/{path.name}", "Give the file the tool wrote.")


def _nnunet_choices(folder: Path, prefix: str) -> list[FolderChoice]:
    folds = nnunet.available_folds(folder)
    plans, dataset = _read(folder / "plans.json"), _read(folder / "dataset.json")
    config = _configuration_of(folder)
    described = _nnunet_description(folder, plans, dataset, config)
    options: tuple[tuple[str, Any], ...] = ()  # the configuration is the checkpoint's (the loader reads it; the name is nnU-Net's convention)
    choices = []
    if len(folds) > 1:
        names = ", ".join(str(f) for f in folds)
        choices.append(FolderChoice(f"{prefix}{AVERAGE_OF_FOLDS} ({names})", str(folder), options + (("folds", tuple(folds)),),
                                    f"{described}; the mean of the logits of folds {names}, as nnU-Net predicts"))
    for f in folds:
        choices.append(FolderChoice(f"{prefix}fold {f}", str(folder), options + (("folds", f),), f"{described}; fold {f}"))
    if not folds and (folder / "fold_all" / "checkpoint_final.pth").is_file():
        choices.append(FolderChoice(f"{prefix}fold all", str(folder), options + (("folds", "all"),), f"{described}; fold all"))
    if not choices:
        raise ModelError(f"{folder.name} has no fold_N/checkpoint_final.pth.", "Finish training a fold (checkpoint_final.pth), or pick another folder.")
    return choices


def _nnunet_description(folder: Path, plans: dict[str, Any], dataset: dict[str, Any], config: str | None) -> str:
    parts = [f"nnU-Net {plans.get('dataset_name') or folder.parent.name}"]
    confs = plans.get("configurations") or {}
    if config in confs:
        trainer = folder.name.split("__")[0]
        parts.append(f"{config} ({trainer})")
        try:
            conf = nnunet.plan_configuration(plans, config)
            parts.append("patch " + " x ".join(str(v) for v in conf.get("patch_size", [])))
            parts.append("spacing " + " x ".join(f"{float(v):g}" for v in conf.get("spacing", [])) + " mm")
        except ModelError as err:
            parts.append(f"not loadable: {err.problem}")
    else:
        parts.append("configuration from the checkpoint")
    labels = [k for k in (dataset.get("labels") or {}) if k != "ignore"]
    if labels:
        parts.append("labels " + ", ".join(labels))
    return "; ".join(parts)


def _bundle_description(p: Path) -> str:
    meta = _read(p / "configs" / "metadata.json")
    name = meta.get("name") or p.name
    parts = [f"MONAI bundle {name}" + (f" {meta['version']}" if meta.get("version") else "")]
    weights = [n for n in ("model.pt", "model.ts") if (p / "models" / n).is_file()]
    parts.append(f"weights models/{weights[0]}" if weights else "no models/model.pt")
    labels = ((meta.get("network_data_format") or {}).get("outputs") or {}).get("pred", {}).get("channel_def")
    if isinstance(labels, dict) and labels:
        parts.append("labels " + ", ".join(str(v) for v in labels.values()))
    return "; ".join(parts)
