"""Train the sample 3D lesion segmenter on simulated white-matter lesions (one CPU core, about 4 minutes of CPU).

    python sample_models/train_lesion_segmenter.py

Writes ``napari_xai/samples/lesion_segmenter_3d.safetensors`` and its spec
``lesion_segmenter_3d.json``, and prints the held-out Dice that the model
card (``sample_models/lesion_segmenter_3d.md``) reports. Everything is
seeded and runs on one thread: the same torch/numpy versions give the same
weights.

Data: whole volumes drawn from :class:`~napari_xai.samples.lesions.LesionSimulator`
on the shipped 3 mm MNI152 anatomy (augmentation on), z-scored over the whole
volume as the spec says (so patches see the same intensities as a whole scan
in the engine), then 24^3-voxel patches are cut from them, most of them
around a lesion, with random left-right flips. The loss is cross-entropy
plus a soft Dice loss on the lesion class.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from training import optimise, report_every, write_model

from napari_xai.engine.model_space import apply_intensity
from napari_xai.samples import LESION_SEGMENTER_SPEC, lesion_simulator, load_sample_scan
from napari_xai.samples.architectures import LesionSegmenter3D

TRAIN_SEED = 11
VALIDATION_SEED = 12
INTENSITY = {"type": "zscore"}
WIDTH = 8
PATCH = 24
BATCH = 8
LESION_FRACTION = 0.85  # share of training volumes with lesions
LESION_PATCH_FRACTION = 0.7  # share of patches that contain a lesion voxel


def make_volumes(n: int, seed: int, lesion_fraction: float = LESION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """``n`` augmented, z-scored volumes and their lesion masks.

    Parameters
    ----------
    n : int
        Number of volumes.
    seed : int
        Seed of the simulator's random generator.
    lesion_fraction : float
        Share of volumes with 1-3 lesions (the rest have none).

    Returns
    -------
    images : numpy.ndarray
        float32 ``(n, z, y, x)``.
    masks : numpy.ndarray
        bool ``(n, z, y, x)``.
    """
    sim = lesion_simulator()
    rng = np.random.default_rng(seed)
    has = rng.random(n) < lesion_fraction
    samples = [sim.sample(rng, bool(h)) for h in has]
    images = np.stack([apply_intensity(s.image, INTENSITY) for s in samples]).astype(np.float32)
    masks = np.stack([s.lesion_mask for s in samples])
    return images, masks


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Lesion masks (argmax of the logits) of whole volumes, one at a time."""
    model.eval()
    out = []
    with torch.inference_mode():
        for img in images:
            out.append(model(torch.from_numpy(img)[None, None]).argmax(1)[0].numpy().astype(bool))
    return np.stack(out)


def evaluate(model: nn.Module, images: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Mean per-volume Dice on lesion-positive volumes, pooled Dice, and false-positive voxels on lesion-free ones."""
    pred = predict(model, images)
    pos = masks.reshape(len(masks), -1).any(1)
    per_volume = [dice(p, t) for p, t in zip(pred[pos], masks[pos])]
    return {
        "mean_dice": float(np.mean(per_volume)) if per_volume else float("nan"),
        "pooled_dice": dice(pred[pos], masks[pos]),
        "fp_voxels_on_negatives": float(pred[~pos].reshape(int((~pos).sum()), -1).sum(1).mean()) if (~pos).any() else 0.0,
    }


def sample_patches(
    rng: np.random.Generator, images: np.ndarray, masks: np.ndarray, brain: np.ndarray, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random ``PATCH^3`` patches, most around a lesion, others anywhere in the brain, randomly flipped left-right."""
    shape = np.array(images.shape[1:])
    lesion_vols = np.flatnonzero(masks.reshape(len(masks), -1).any(1))
    xs, ys = [], []
    for _ in range(n):
        if rng.random() < LESION_PATCH_FRACTION:
            v = int(lesion_vols[rng.integers(len(lesion_vols))])
            voxels = np.argwhere(masks[v])
            centre = voxels[rng.integers(len(voxels))] + rng.integers(-PATCH // 3, PATCH // 3 + 1, size=3)
        else:
            v = int(rng.integers(len(images)))
            centre = brain[rng.integers(len(brain))]
        lo = np.clip(centre - PATCH // 2, 0, shape - PATCH)
        sl = tuple(slice(int(a), int(a) + PATCH) for a in lo)
        x, y = images[v][sl], masks[v][sl]
        if rng.random() < 0.5:  # the anatomy is symmetric
            x, y = x[..., ::-1], y[..., ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)).long()


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice of the lesion class (over the batch)."""
    ce = F.cross_entropy(logits, target)
    prob = logits.softmax(1)[:, 1]
    fg = (target == 1).float()
    soft_dice = (2 * (prob * fg).sum() + 1.0) / (prob.sum() + fg.sum() + 1.0)
    return ce + (1.0 - soft_dice)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=240, help="training volumes")
    parser.add_argument("--validation", type=int, default=40, help="held-out volumes (seed %d)" % VALIDATION_SEED)
    parser.add_argument("--steps", type=int, default=800, help="optimiser steps of %d patches" % BATCH)
    parser.add_argument("--out", type=Path, default=LESION_SEGMENTER_SPEC)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(TRAIN_SEED)
    t0 = time.time()
    x_train, y_train = make_volumes(args.train, TRAIN_SEED)
    x_val, y_val = make_volumes(args.validation, VALIDATION_SEED)
    brain = np.argwhere(x_train[0] > x_train[0].min() + 0.5)
    print(f"data: {len(x_train)} train, {len(x_val)} validation volumes of {x_train.shape[1:]} in {time.time() - t0:.0f} s")
    model = LesionSegmenter3D(1, 2, WIDTH)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=args.steps)
    rng = np.random.default_rng(TRAIN_SEED)
    patches = (sample_patches(rng, x_train, y_train, brain, BATCH) for _ in range(args.steps))
    report_every(optimise(model, opt, patches, lambda m, xb, yb: loss_fn(m(xb), yb), sched), 100, t0)
    model.eval()
    metrics = evaluate(model, x_val, y_val)
    scan = load_sample_scan()
    weights = write_model(
        model,
        args.out,
        name="Lesion segmenter 3D (napari-xai sample)",
        task="segmentation",
        spatial_dims=3,
        in_channels=1,
        input_size=scan.spatial_shape,
        input_spacing=(3.0, 3.0, 3.0),
        orientation="RAS",
        intensity=INTENSITY,
        labels=["background", "lesion"],
        cam_layer="dec1",
        architecture={"factory": "lesion_segmenter_3d", "kwargs": {"in_channels": 1, "n_classes": 2, "width": WIDTH}},
        model_card="sample_models/lesion_segmenter_3d.md",
    )
    print(
        f"wrote {weights} and {args.out}; held-out ({args.validation} volumes, seed {VALIDATION_SEED}): "
        f"mean Dice {metrics['mean_dice']:.3f}, pooled Dice {metrics['pooled_dice']:.3f}, "
        f"false-positive voxels per lesion-free volume {metrics['fp_voxels_on_negatives']:.1f} "
        f"(total {time.time() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
