"""The model's decision on an unperturbed image: what hosts show before anything is explained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .call_hooks import shared_eval_mode
from .prepare import forward_once
from .scan_input import as_scan
from .model_space import to_model_space
from .models.loading import as_loaded_model
from .targets import resolve_target


@dataclass
class Prediction:
    """The model's decision on the unperturbed image (e.g. for a host's target menu).

    Parameters
    ----------
    task : str
        ``classification``, ``segmentation`` or ``regression``.
    class_index : int or None
        The predicted (dominant) class.
    label : str or None
        Its name from the spec.
    score : float
        Probability (classification, softmax), predicted voxel count (segmentation) or output (regression).
    n_classes : int
        Number of output classes.
    labels : list of str
        Class names (from the spec, else ``class k``).
    probabilities : list of float
        Softmax probability of every class (classification only, else empty).
    """

    task: str
    class_index: int | None
    label: str | None
    score: float
    n_classes: int
    labels: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)

    def describe(self) -> str:
        """E.g. ``predicted: lesion (p = 0.93)``."""
        if self.task == "regression":
            return f"output = {self.score:.4g}"
        name = self.label or f"class {self.class_index}"
        if self.task == "segmentation":
            return f"predicted: {name} ({int(self.score)} voxels of the model grid)"
        return f"predicted: {name} (p = {self.score:.2f})"


def predict(model: Any, image: Any, spec: Any = None) -> Prediction:
    """Run the model once on ``image`` (as :func:`explain` feeds it) and report the predicted class.

    Parameters
    ----------
    model : torch.nn.Module, LoadedModel, str or PathLike
        As for :func:`explain`.
    image : numpy.ndarray, ScanImage, SimpleITK.Image, str or PathLike
        As for :func:`explain`.
    spec : ModelSpec, dict or path, optional
        Overrides the model's spec.

    Returns
    -------
    Prediction

    Raises
    ------
    XAIError
        The model does not fit the image (the same messages as a run).
    """
    loaded = as_loaded_model(model, spec)
    msi = to_model_space(as_scan(image), loaded.spec)
    with shared_eval_mode(loaded.module):
        output = forward_once(loaded.module, msi.tensor)
    resolved = resolve_target(output, msi.tensor, loaded.spec, None, None)
    n = int(output.shape[1]) if output.ndim >= 2 else 1
    labels = list(loaded.spec.labels) if loaded.spec.labels else [f"class {k}" for k in range(n)]
    probabilities: list[float] = []
    if resolved.task == "classification":
        probabilities = [float(p) for p in torch.softmax(output[0].double(), dim=0)]
        score = probabilities[resolved.class_index]
    elif resolved.task == "segmentation":
        score = float(resolved.region.sum())
    else:
        score = float(output.reshape(-1)[0])
    return Prediction(resolved.task, resolved.class_index, resolved.label, score, n, labels, probabilities)
