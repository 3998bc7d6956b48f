"""Train the sample 2D lesion classifier on axial slices of simulated volumes (one CPU core, about 4 minutes of CPU).

    python sample_models/train_lesion_classifier_2d.py

Writes ``napari_xai/samples/lesion_classifier_2d.safetensors`` and its spec
``lesion_classifier_2d.json``, the 2D sample image
``sample_brain_t1_axial.nii.gz`` (the axial slice of the sample scan with the
most lesion voxels) and its mask ``sample_brain_lesions_axial.nii.gz``, and
prints the held-out accuracy that the model card
(``sample_models/lesion_classifier_2d.md``) reports. Everything is seeded
and runs on one thread: the same torch/numpy versions give the same weights.

Data: volumes drawn from :class:`~napari_xai.samples.lesions.LesionSimulator`
on the shipped 3 mm MNI152 anatomy (augmentation on); from each, axial
slices through white matter are taken. A slice is labelled "lesion" when it
holds at least one voxel of the volume's lesion mask. Every lesion slice is
kept, with as many lesion-free white-matter slices (from the same volumes and
from lesion-free ones), so the classes are balanced. Each slice is z-scored
on its own, as the engine z-scores a 2D image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from training import optimise, write_model

from napari_xai.engine.geometry import Geometry
from napari_xai.engine.image_io import read_image, write_image
from napari_xai.engine.model_space import apply_intensity
from napari_xai.samples import (
    LESION_CLASSIFIER_2D_SPEC,
    SAMPLE_LESION_MASK_AXIAL,
    SAMPLE_SCAN_AXIAL,
    TEMPLATE_WM,
    lesion_simulator,
    load_sample_lesion_mask,
    load_sample_scan,
)
from napari_xai.samples.architectures import LesionClassifier2D

TRAIN_SEED = 21
VALIDATION_SEED = 22
INTENSITY = {"type": "zscore"}
WIDTH = 8
BATCH = 32
LESION_FRACTION = 0.7
MIN_WHITE_MATTER_VOXELS = 100  # an axial slice "through white matter" has at least this many voxels of WM > 50 %


def white_matter_slices() -> np.ndarray:
    """Axial slice indices (z) of the template with at least ``MIN_WHITE_MATTER_VOXELS`` white-matter voxels."""
    wm = np.asarray(read_image(TEMPLATE_WM).array)
    return np.flatnonzero((wm > 127).reshape(wm.shape[0], -1).sum(1) >= MIN_WHITE_MATTER_VOXELS)


def make_slices(n_volumes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Balanced axial white-matter slices from ``n_volumes`` simulated volumes.

    Parameters
    ----------
    n_volumes : int
        Volumes to draw (``LESION_FRACTION`` of them with lesions).
    seed : int
        Seed of the random generator (volumes and slice choice).

    Returns
    -------
    x : torch.Tensor
        float32 ``(n, 1, y, x)``, each slice z-scored.
    y : torch.Tensor
        int64 ``(n,)``, 1 where the slice holds a lesion voxel.
    lesion_voxels : torch.Tensor
        int64 ``(n,)``, lesion voxels in the slice.
    """
    sim = lesion_simulator()
    rng = np.random.default_rng(seed)
    zs = white_matter_slices()
    pos, neg = [], []
    for _ in range(n_volumes):
        s = sim.sample(rng, bool(rng.random() < LESION_FRACTION))
        counts = s.lesion_mask[zs].reshape(len(zs), -1).sum(1)
        pos += [(s.image[z].copy(), int(c)) for z, c in zip(zs, counts) if c > 0]
        free = zs[counts == 0]
        neg += [(s.image[z].copy(), 0) for z in rng.choice(free, size=min(3, len(free)), replace=False)]
    order = rng.permutation(len(neg))[: len(pos)]
    chosen = pos + [neg[i] for i in order]
    x = np.stack([apply_intensity(img, INTENSITY) for img, _ in chosen]).astype(np.float32)
    voxels = np.array([c for _, c in chosen])
    return torch.from_numpy(x[:, None]), torch.from_numpy((voxels > 0).astype(np.int64)), torch.from_numpy(voxels)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of slices whose predicted class is the label."""
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean())


def slice_geometry(geometry: Geometry, z: int) -> Geometry:
    """2D geometry of axial slice ``z``: the 3D grid's x, y axes (origin, spacing, in-plane direction)."""
    d = geometry.direction_matrix
    origin = np.asarray(geometry.origin) + d @ (np.array([0.0, 0.0, z]) * np.asarray(geometry.spacing))
    return Geometry(tuple(origin[:2].tolist()), tuple(geometry.spacing[:2]), tuple(d[:2, :2].ravel().tolist()))


def write_axial_sample(out_image: Path = SAMPLE_SCAN_AXIAL, out_mask: Path = SAMPLE_LESION_MASK_AXIAL) -> int:
    """Write the axial slice of the sample scan with the most lesion voxels, and its mask, with 2D geometry.

    Returns
    -------
    int
        The slice index ``z`` in the 3D sample scan.
    """
    scan, mask = load_sample_scan(), load_sample_lesion_mask()
    m = np.asarray(mask.array) > 0
    z = int(m.reshape(m.shape[0], -1).sum(1).argmax())
    geometry = slice_geometry(scan.geometry, z)
    write_image(np.asarray(scan.array[z], dtype=np.float32), geometry, out_image)
    write_image(m[z].astype(np.uint8), geometry, out_mask)
    print(f"wrote {out_image} and {out_mask} (axial slice z={z} of the sample scan, {int(m[z].sum())} lesion voxels)")
    return z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=1200, help="training volumes")
    parser.add_argument("--validation", type=int, default=150, help="held-out volumes (seed %d)" % VALIDATION_SEED)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=LESION_CLASSIFIER_2D_SPEC)
    parser.add_argument("--sample-only", action="store_true", help="only write the 2D sample image and mask")
    args = parser.parse_args()
    write_axial_sample()
    if args.sample_only:
        return
    torch.set_num_threads(1)
    torch.manual_seed(TRAIN_SEED)
    t0 = time.time()
    x_train, y_train, _ = make_slices(args.train, TRAIN_SEED)
    x_val, y_val, _ = make_slices(args.validation, VALIDATION_SEED)
    print(f"data: {len(x_train)} train, {len(x_val)} validation slices of {tuple(x_train.shape[2:])} in {time.time() - t0:.0f} s")
    model = LesionClassifier2D(1, 2, WIDTH)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = (len(x_train) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(TRAIN_SEED)

    def epoch_batches():
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # left-right flip: the anatomy is symmetric
            yield torch.where(flip.view(-1, 1, 1, 1), x_train[idx].flip(-1), x_train[idx]), y_train[idx]

    for epoch in range(args.epochs):
        total = sum(loss * n for loss, n in optimise(model, opt, epoch_batches(), lambda m, xb, yb: loss_fn(m(xb), yb), sched))
        print(f"epoch {epoch + 1}: loss {total / len(x_train):.4f}, validation accuracy {accuracy(model, x_val, y_val):.3f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    sample = read_image(SAMPLE_SCAN_AXIAL)
    weights = write_model(
        model,
        args.out,
        name="Lesion classifier 2D, axial slices (napari-xai sample)",
        task="classification",
        spatial_dims=2,
        in_channels=1,
        input_size=sample.spatial_shape,
        input_spacing=(3.0, 3.0),
        intensity=INTENSITY,
        labels=["no lesion", "lesion"],
        cam_layer="features.5",
        architecture={"factory": "lesion_classifier_2d", "kwargs": {"in_channels": 1, "n_classes": 2, "width": WIDTH}},
        model_card="sample_models/lesion_classifier_2d.md",
    )
    print(
        f"wrote {weights} and {args.out}; held-out accuracy {accuracy(model, x_val, y_val):.3f} "
        f"on {len(x_val)} balanced slices from {args.validation} volumes (seed {VALIDATION_SEED}) (total {time.time() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
