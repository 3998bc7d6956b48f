"""What is explained: a class score, a class over a region, or a regression output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import TargetError
from .models.spec import ModelSpec

REDUCTIONS = ("sum", "mean")


@dataclass
class ResolvedTarget:
    """A target turned into a function from model output to one score per sample.

    Parameters
    ----------
    task : str
        ``classification``, ``segmentation`` or ``regression``.
    class_index : int or None
        Output channel explained.
    label : str or None
        Its name from the spec.
    region : torch.Tensor or None
        Boolean mask on the output's spatial grid (segmentation).
    reduce : str
        ``sum`` or ``mean`` over the region.
    score_value : float
        The score on the unperturbed input.
    region_source : str
        ``given`` or ``predicted`` (segmentation only).
    probability : float or None
        Classification: the softmax probability of the class on the
        unperturbed input (the score itself is the raw output, a logit).
    """

    task: str
    class_index: int | None
    label: str | None
    region: torch.Tensor | None
    reduce: str
    score_value: float = float("nan")
    region_source: str | None = None
    probability: float | None = None

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """One scalar per sample, ``(N,)``, from the model output."""
        if self.task == "regression":
            return output.reshape(output.shape[0], -1)[:, 0]
        if self.task == "classification":
            return output[:, self.class_index]
        logits = output[:, self.class_index]
        region = self.region.to(logits.device)
        total = (logits * region).flatten(1).sum(dim=1)
        return total / region.sum() if self.reduce == "mean" else total

    def describe(self) -> str:
        """Human-readable target, for layer names and captions."""
        if self.task == "regression":
            return "regression output"
        name = f"class {self.class_index}" + (f" '{self.label}'" if self.label else "")
        if self.task == "segmentation":
            n = int(self.region.sum())
            name += f" over {'the predicted' if self.region_source == 'predicted' else 'a'} region ({n} voxels, {self.reduce})"
        return name

    def to_dict(self) -> dict[str, Any]:
        """Provenance form."""
        out: dict[str, Any] = {
            "task": self.task,
            "class_index": self.class_index,
            "label": self.label,
            "score": self.score_value,
            "description": self.describe(),
        }
        if self.probability is not None:
            out["probability"] = self.probability
        if self.task == "segmentation":
            out.update(reduce=self.reduce, region_voxels_model_space=int(self.region.sum()), region_source=self.region_source)
        return out


def infer_task(spec: ModelSpec, output: torch.Tensor, x: torch.Tensor) -> str:
    """The spec's task, or one decided from the output's shape."""
    if spec.task != "auto":
        return spec.task
    if output.ndim == x.ndim:
        return "segmentation"
    if output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1):
        return "regression"
    if output.ndim == 2:
        return "classification"
    raise TargetError(
        f"The model's output has shape {tuple(output.shape)}, which is neither class scores (N, K) nor a map (N, K, *spatial).",
        'Say the task in the model spec ("classification", "segmentation" or "regression"), or wrap the model to return one of those.',
    )


def resolve_target(
    output: torch.Tensor,
    x: torch.Tensor,
    spec: ModelSpec,
    target: int | str | None,
    region_model: np.ndarray | None,
    reduce: str = "sum",
) -> ResolvedTarget:
    """Decide the class (and region) from the user's choice and the model's output on the scan.

    Parameters
    ----------
    output : torch.Tensor
        Model output for the unperturbed input (batch of one).
    x : torch.Tensor
        Model input ``(1, C, *spatial)``.
    spec : ModelSpec
        For labels and task.
    target : int, str or None
        Class index, label name, or None for the predicted class.
    region_model : numpy.ndarray or None
        Boolean region on the model input grid (segmentation).
    reduce : str
        ``sum`` or ``mean`` of the class logits over the region.

    Raises
    ------
    TargetError
        Class out of range or unknown, empty or misplaced region, region for a classifier.
    """
    task = infer_task(spec, output, x)
    if task != "segmentation" and region_model is not None:
        raise TargetError(
            f"A region was given, but the model is a {task} model: its output has no spatial axes to reduce over.",
            "Drop the region, or use a segmentation model (output (N, K, *spatial)).",
        )
    if reduce not in REDUCTIONS:
        raise TargetError(f"Reduction {reduce!r} is unknown.", f"Use one of {REDUCTIONS}.")
    if task == "regression":
        if target not in (None, 0):
            raise TargetError(f"Target {target!r} was given for a one-output regression model.", "Leave the target unset.")
        return ResolvedTarget("regression", None, None, None, reduce)
    n_classes = int(output.shape[1])
    labels = spec.labels
    if labels is not None and len(labels) != n_classes:
        raise TargetError(
            f"The spec names {len(labels)} labels but the model outputs {n_classes} classes.",
            "Fix the spec's labels so there is one per output channel.",
        )
    if task == "classification":
        k = int(output[0].argmax()) if target is None else _class_index(target, n_classes, labels)
        return ResolvedTarget("classification", k, labels[k] if labels else None, None, reduce)
    if output.ndim != x.ndim:
        raise TargetError(
            f"The model is a segmentation model but its output has shape {tuple(output.shape)}.",
            "Segmentation outputs must be (N, K, *spatial); fix the spec's task.",
        )
    out_shape = tuple(output.shape[2:])
    if region_model is not None:
        region = torch.from_numpy(np.asarray(region_model, dtype=bool))
        if tuple(region.shape) != tuple(x.shape[2:]):
            raise TargetError(
                f"The region has shape {tuple(region.shape)} but the image has {tuple(x.shape[2:])}.",
                "Draw the region on the same grid as the image (a Labels layer or segment made from it).",
            )
        if tuple(region.shape) != out_shape:
            region = F.interpolate(region[None, None].float(), size=out_shape, mode="nearest")[0, 0] > 0.5
        if not region.any():
            raise TargetError("The region is empty.", "Paint at least one voxel of the region, or leave it unset to use the predicted mask.")
        k = _class_index(target, n_classes, labels) if target is not None else _dominant_class(output, region)
        return ResolvedTarget("segmentation", k, labels[k] if labels else None, region, reduce, region_source="given")
    k = _class_index(target, n_classes, labels) if target is not None else _dominant_class(output, None)
    predicted = _predicted_mask(output, k)
    if not predicted.any():
        raise TargetError(
            f"The model predicts no voxel of class {k}{' ' + repr(labels[k]) if labels else ''} on this image, so there is no region to explain.",
            "Give a region (a Labels layer / segment), or choose a class the model does predict.",
        )
    return ResolvedTarget("segmentation", k, labels[k] if labels else None, predicted, reduce, region_source="predicted")


def _class_index(target: int | str, n_classes: int, labels: list[str] | None) -> int:
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        names = [label.lower() for label in labels or []]
        if target.strip().lower() not in names:
            raise TargetError(
                f"The model has no class called {target!r}.",
                f"Use one of {labels} or a class index 0..{n_classes - 1}." if labels else f"Use a class index 0..{n_classes - 1} (the spec names no labels).",
            )
        return names.index(target.strip().lower())
    try:
        if isinstance(target, bool) or float(target) != int(float(target)):
            raise ValueError
        k = int(float(target))
    except (TypeError, ValueError):
        raise TargetError(f"Target {target!r} is not a class index or name.", f"Use an index 0..{n_classes - 1}.") from None
    if not 0 <= k < n_classes:
        raise TargetError(
            f"Class {k} is out of range: the model outputs {n_classes} classes (0..{n_classes - 1}).",
            f"Choose a class between 0 and {n_classes - 1}" + (f" ({', '.join(labels)})." if labels else "."),
        )
    return k


def _predicted_mask(output: torch.Tensor, k: int) -> torch.Tensor:
    if output.shape[1] == 1:
        return output[0, 0] > 0
    return output[0].argmax(dim=0) == k


def _dominant_class(output: torch.Tensor, region: torch.Tensor | None) -> int:
    """The foreground class predicted most often (in the region, if given)."""
    if output.shape[1] == 1:
        return 0
    pred = output[0].argmax(dim=0)
    if region is not None:
        pred = pred[region]
    counts = torch.bincount(pred.flatten(), minlength=output.shape[1])
    counts[0] = -1  # class 0 is background by convention
    if counts[1:].max() <= 0:
        return 1
    return int(counts.argmax())
