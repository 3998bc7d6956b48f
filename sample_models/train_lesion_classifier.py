"""Train the sample 3D lesion classifier on simulated white-matter lesions (one CPU core, a few minutes).

    python sample_models/train_lesion_classifier.py

Writes ``napari_xai/samples/lesion_classifier_3d.safetensors`` and its spec
``lesion_classifier_3d.json``, and prints the held-out accuracy on whole
volumes that the model card (``sample_models/lesion_classifier_3d.md``)
reports. Seeded, one thread: the same torch/numpy versions give the same weights.

The network is a detector that slides over the volume (a lesion-evidence map
and its maximum), so it trains on patches and applies to whole volumes. An
image-level label alone was too weak a signal to learn from in minutes on a
CPU (tried: plain CNNs with average- or max-pooled heads, and an evidence map
with an image-level loss, all stayed at chance on whole volumes), so the
backbone is trained as a voxel-wise lesion segmenter, with the segmenter's
data, patches and loss (``train_lesion_segmenter.py``: cross-entropy plus
soft Dice on 24^3 patches of whole z-scored simulator volumes). Then the
decision threshold on the maximum evidence is calibrated on whole training
volumes, half of them lesion-free: over a whole brain the maximum has many
more chances of a false alarm than in a patch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from train_lesion_segmenter import BATCH, INTENSITY, WIDTH, loss_fn, make_volumes, sample_patches
from training import optimise, report_every, write_model

from napari_xai.samples import LESION_CLASSIFIER_SPEC, load_sample_scan
from napari_xai.samples.architectures import LesionClassifier3D

TRAIN_SEED = 1
VALIDATION_SEED = 2


def max_evidence(model: LesionClassifier3D, images: np.ndarray) -> np.ndarray:
    """The maximum smoothed lesion evidence of each whole volume."""
    model.eval()
    with torch.inference_mode():
        return np.concatenate([model.evidence_map(torch.from_numpy(images[i : i + 8])[:, None]).amax(dim=(1, 2, 3, 4)).numpy() for i in range(0, len(images), 8)])


def calibrate_threshold(evidence: np.ndarray, labels: np.ndarray) -> float:
    """The threshold on the maximum evidence with the best accuracy (midpoint between neighbouring values)."""
    values = np.sort(evidence)
    candidates = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2, [values[-1] + 1.0]])
    accuracies = [((evidence > t) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def accuracy(model: LesionClassifier3D, images: np.ndarray, labels: np.ndarray) -> float:
    """Whole-volume accuracy of the classifier's output."""
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(images[i : i + 8])[:, None]).argmax(1) for i in range(0, len(images), 8)])
    return float((pred.numpy() == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=240, help="training volumes")
    parser.add_argument("--steps", type=int, default=800, help="patch steps of %d patches" % BATCH)
    parser.add_argument("--out", type=Path, default=LESION_CLASSIFIER_SPEC)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(TRAIN_SEED)
    t0 = time.time()
    x_train, m_train = make_volumes(args.train, TRAIN_SEED, lesion_fraction=0.5)
    x_val, m_val = make_volumes(200, VALIDATION_SEED, lesion_fraction=0.5)
    y_val = m_val.reshape(len(m_val), -1).any(1).astype(int)
    brain = np.argwhere(x_train[0] > x_train[0].min() + 0.5)
    print(f"data: {len(x_train)} train, {len(x_val)} validation volumes of {x_train.shape[1:]} in {time.time() - t0:.0f} s", flush=True)
    model = LesionClassifier3D(1, 2, WIDTH)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=args.steps)
    rng = np.random.default_rng(TRAIN_SEED)
    patches = (sample_patches(rng, x_train, m_train, brain, BATCH) for _ in range(args.steps))
    report_every(optimise(model, opt, patches, lambda m, xb, yb: loss_fn(m.backbone(xb), yb), sched), 200, t0)
    y_train = m_train.reshape(len(m_train), -1).any(1)
    threshold = calibrate_threshold(max_evidence(model, x_train), y_train)
    model.threshold.fill_(threshold)
    acc = accuracy(model, x_val, y_val)
    print(f"threshold {threshold:.3f}; whole-volume validation accuracy {acc:.3f} ({time.time() - t0:.0f} s)", flush=True)
    scan = load_sample_scan()
    weights = write_model(
        model,
        args.out,
        name="Lesion classifier 3D (napari-xai sample)",
        task="classification",
        spatial_dims=3,
        in_channels=1,
        input_size=scan.spatial_shape,
        input_spacing=(3.0, 3.0, 3.0),
        orientation="RAS",
        intensity=INTENSITY,
        labels=["no lesion", "lesion"],
        cam_layer="backbone.dec1",
        architecture={"factory": "lesion_classifier_3d", "kwargs": {"in_channels": 1, "n_classes": 2, "width": WIDTH}},
        model_card="sample_models/lesion_classifier_3d.md",
    )
    print(f"wrote {weights} and {args.out}; whole-volume validation accuracy {acc:.3f} (200 volumes, seed {VALIDATION_SEED}) ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
