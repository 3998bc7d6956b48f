"""Deletion and insertion curves (Petsiuk, Das & Saenko, BMVC 2018), batched under the memory budget.

The curves run in model space: the map is brought onto the model's grid,
its voxels are ranked, and each step of a curve is one forward pass of the
input with the top-ranked voxels swapped for a reference image. Every
curve's steps (the map's order and the random order, deletion and
insertion) go through one queue, so batches fill across curves; batches
are sized from the memory budget and a time slice, and a progress event
follows each batch (closing the generator there cancels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator

import numpy as np
import torch

from ..budget import BatchPlanner, batches
from ..methods.toolkit import baseline_value, blend, gaussian_blur
from ..progress import Progress

REMOVALS = ("blur", "noise", "baseline")
CURVES = ("deletion", "insertion")


def removal_reference(x: torch.Tensor, removal: str, blur_sigma: float, baseline: str, seed: int) -> torch.Tensor:
    """The image a removed voxel takes, shaped like ``x`` ``(1, C, *spatial)``.

    ``blur``: ``x`` blurred by a Gaussian of ``blur_sigma`` voxels (Petsiuk
    et al.'s insertion start); ``noise``: the input's mean plus Gaussian
    noise of its standard deviation (seeded); ``baseline``: a constant
    (``zeros``, ``min`` or ``mean`` of the model-space input).
    """
    if removal == "blur":
        return gaussian_blur(x, blur_sigma)
    if removal == "noise":
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        return float(x.mean()) + float(x.std()) * noise
    return torch.full_like(x, baseline_value(x, baseline))


def voxel_ranks(values: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Rank of every voxel (0 = removed first): by descending value, ties in ``rng``'s random order (index order without one).

    A constant map with an ``rng`` gives a purely random order.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    tie_break = rng.permutation(flat.size) if rng is not None else np.arange(flat.size)
    order = np.lexsort((tie_break, -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(np.shape(values))


def step_counts(n_voxels: int, steps: int) -> np.ndarray:
    """Voxels removed (inserted) at each of the ``steps + 1`` points, 0 .. n."""
    return np.round(np.linspace(0, n_voxels, steps + 1)).astype(np.int64)


def auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Trapezoid area under a curve over [0, 1]."""
    f, s = np.asarray(fractions, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    return float(np.sum((f[1:] - f[:-1]) * (s[1:] + s[:-1]) / 2))


@dataclass
class CurveJob:
    """One curve to trace: ``name`` (e.g. ``deletion`` or ``random_insertion``), the ranks, deletion or insertion."""

    name: str
    ranks: torch.Tensor
    kind: str


def trace_curves(
    x: torch.Tensor,
    reference: torch.Tensor,
    jobs: list[CurveJob],
    steps: int,
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    planner: BatchPlanner,
    label: str = "faithfulness",
) -> Generator[Progress, None, dict[str, dict[str, Any]]]:
    """Trace every curve of ``jobs``; returns ``{name: {"fraction": [...], "score": [...], "auc": float}}``.

    Parameters
    ----------
    x, reference : torch.Tensor
        Model-space input and the reference image, ``(1, C, *spatial)``.
    jobs : list of CurveJob
        The curves; ranks are ``(*spatial)`` int64 on ``x``'s device.
    steps : int
        Steps per curve (``steps + 1`` forward passes each).
    score_fn : callable
        Model output of a batch -> one score per sample, under inference mode.
    planner : BatchPlanner
        Sizes the batches.
    """
    n_vox = int(np.prod(x.shape[2:]))
    counts = step_counts(n_vox, steps)
    queue = [(j, i) for j in range(len(jobs)) for i in range(len(counts))]
    scores = np.zeros((len(jobs), len(counts)), dtype=np.float64)
    for lo, hi in batches(len(queue), planner):
        chunk = queue[lo:hi]
        keep = torch.stack([_keep_mask(jobs[j], int(counts[i])) for j, i in chunk])
        with torch.inference_mode():
            batch_scores = score_fn(blend(x, reference, keep)).double().cpu().numpy()
        for (j, i), s in zip(chunk, batch_scores):
            scores[j, i] = s
        yield Progress(hi, len(queue), f"{label}: {hi}/{len(queue)} perturbed passes")
    fractions = counts / n_vox
    return {
        job.name: {"fraction": fractions.tolist(), "score": scores[j].tolist(), "auc": auc(fractions, scores[j])}
        for j, job in enumerate(jobs)
    }


def _keep_mask(job: CurveJob, count: int) -> torch.Tensor:
    """``keep = 1`` where the voxel shows the input: deletion keeps the unremoved, insertion the inserted."""
    if job.kind == "deletion":
        return job.ranks >= count
    return job.ranks < count
