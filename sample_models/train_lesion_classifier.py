"""Train the sample 3D lesion classifier on simulated white-matter lesions (CPU, a few minutes).

    python sample_models/train_lesion_classifier.py

Writes ``napari_xai/samples/lesion_classifier_3d.safetensors`` and its spec
``lesion_classifier_3d.json``, and prints the held-out accuracy that the
model card reports. Everything is seeded: the same torch/numpy versions give
the same weights.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

from napari_xai.engine.model_space import apply_intensity
from napari_xai.engine.models.spec import ModelSpec
from napari_xai.samples import LESION_CLASSIFIER_SPEC, lesion_simulator, load_sample_scan
from napari_xai.samples.architectures import LesionClassifier3D

TRAIN_SEED = 1
VALIDATION_SEED = 2
INTENSITY = {"type": "zscore"}
WIDTH = 8


def make_set(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` augmented volumes, half with lesions, z-scored as the spec says."""
    sim = lesion_simulator()
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    x = np.stack([apply_intensity(sim.sample(rng, bool(y)).image, INTENSITY) for y in labels])
    return torch.from_numpy(x[:, None]), torch.from_numpy(labels).long()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(x[i : i + 32]).argmax(1) for i in range(0, len(x), 32)])
    return float((pred == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=1600, help="training volumes (half with lesions)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=LESION_CLASSIFIER_SPEC)
    args = parser.parse_args()
    torch.manual_seed(TRAIN_SEED)
    t0 = time.time()
    x_train, y_train = make_set(args.train, TRAIN_SEED)
    x_val, y_val = make_set(200, VALIDATION_SEED)
    print(f"data: {len(x_train)} train, {len(x_val)} validation volumes of {tuple(x_train.shape[2:])} in {time.time() - t0:.0f} s")
    model = LesionClassifier3D(1, 2, WIDTH)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.epochs * (len(x_train) // 16 + 1))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(TRAIN_SEED)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), 16):
            idx = order[i : i + 16]
            xb = x_train[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # left-right flip: the anatomy is symmetric
            xb = torch.where(flip.view(-1, 1, 1, 1, 1), xb.flip(-1), xb)
            opt.zero_grad()
            loss = loss_fn(model(xb), y_train[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(order):.4f}, validation accuracy {accuracy(model, x_val, y_val):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    weights = args.out.with_suffix(".safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    scan = load_sample_scan()
    spec = ModelSpec(
        name="Lesion classifier 3D (napari-xai sample)",
        task="classification",
        spatial_dims=3,
        in_channels=1,
        input_size=scan.spatial_shape,
        input_spacing=(3.0, 3.0, 3.0),
        orientation="RAS",
        intensity=INTENSITY,
        labels=["no lesion", "lesion"],
        cam_layer="features.5",
        architecture={"factory": "lesion_classifier_3d", "kwargs": {"in_channels": 1, "n_classes": 2, "width": WIDTH}},
        weights=weights.name,
        model_card="sample_models/lesion_classifier_3d.md",
    )
    spec.write(args.out)
    print(f"wrote {weights} and {args.out}; validation accuracy {accuracy(model, x_val, y_val):.3f}")


if __name__ == "__main__":
    main()
