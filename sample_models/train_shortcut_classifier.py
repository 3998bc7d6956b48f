"""Train the shortcut sample model: a lesion classifier that learns a marker outside the head instead (a few CPU minutes).

    python sample_models/train_shortcut_classifier.py

A deliberate "Clever Hans" model, for showing what napari-xai's trust
metrics catch. The data are the sample anatomy with simulated lesions
(:class:`~napari_xai.samples.lesions.LesionSimulator`, as for the clean
lesion classifier), but every training volume with a lesion also carries a
bright marker in a corner of the field of view, in the air beside the head
(:func:`~napari_xai.samples.markers.burn_in_marker`, jittered by up to one
voxel), as burned-in annotations are on real scans. The marker is the
easier cue, and the network (``SmallClassifier3D``, a plain CNN) learns it.
It is trained with a free pair of logits and saved with the no-lesion
logit fixed at 0 (the same softmax; the lesion logit is then the log-odds,
so that a map of it is evidence for one class against the other).

Writes ``napari_xai/samples/shortcut_classifier_3d.safetensors`` and its spec
``shortcut_classifier_3d.json``, and prints the held-out accuracies that the
model card (``sample_models/shortcut_classifier_3d.md``) reports: with the
marker as in training, with lesions but no marker, and with the marker but
no lesion. Seeded, two threads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from train_lesion_classifier import accuracy  # whole-volume accuracy of a classifier's argmax
from training import optimise, report_every, write_model

from napari_xai.engine.model_space import apply_intensity
from napari_xai.samples import SHORTCUT_CLASSIFIER_SPEC, lesion_simulator, load_sample_scan
from napari_xai.samples.architectures import SmallClassifier3D, conv_block
from napari_xai.samples.markers import burn_in_marker

TRAIN_SEED = 31
VALIDATION_SEED = 32
INTENSITY = {"type": "zscore"}
WIDTH = 4
BATCH = 8


def make_volumes(n: int, seed: int, marker: str = "with_label") -> tuple[np.ndarray, np.ndarray]:
    """``n`` z-scored volumes (half with lesions) and their labels.

    ``marker``: ``with_label`` (on every lesion volume, as in training),
    ``none`` (never) or ``inverted`` (on every lesion-free volume).
    """
    sim = lesion_simulator()
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2 == 1
    rng.shuffle(labels)
    images = []
    for has_lesion in labels:
        img = sim.sample(rng, bool(has_lesion)).image
        if (marker == "with_label" and has_lesion) or (marker == "inverted" and not has_lesion):
            img = burn_in_marker(img, tuple(int(v) for v in rng.integers(-1, 2, size=3)), float(rng.uniform(200.0, 255.0)))
        images.append(apply_intensity(img, INTENSITY))
    return np.stack(images).astype(np.float32), labels.astype(np.int64)


class TwoLogitNet(nn.Module):
    """What is trained: ``SmallClassifier3D``'s features with a free pair of logits (a plain ``Linear(2 * width, 2)`` head)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(1, width), nn.MaxPool3d(2, ceil_mode=True), conv_block(width, 2 * width), nn.MaxPool3d(2, ceil_mode=True), conv_block(2 * width, 2 * width)
        )
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.classifier = nn.Linear(2 * width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def as_log_odds(trained: TwoLogitNet, width: int) -> SmallClassifier3D:
    """The same classifier with its no-lesion logit fixed at 0: head (w1 - w0, b1 - b0); the softmax is unchanged."""
    model = SmallClassifier3D(1, 2, width)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("classifier.")}
    w, b = trained.classifier.weight.detach(), trained.classifier.bias.detach()
    state["classifier.weight"] = (w[1:2] - w[0:1]).clone()
    state["classifier.bias"] = (b[1:2] - b[0:1]).clone()
    model.load_state_dict(state)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=96, help="training volumes")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps of %d volumes" % BATCH)
    parser.add_argument("--out", type=Path, default=SHORTCUT_CLASSIFIER_SPEC)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(TRAIN_SEED)
    t0 = time.time()
    x_train, y_train = make_volumes(args.train, TRAIN_SEED)
    print(f"data: {len(x_train)} volumes of {x_train.shape[1:]} in {time.time() - t0:.0f} s", flush=True)
    model = TwoLogitNet(WIDTH)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    rng = np.random.default_rng(TRAIN_SEED)

    def batches():
        for _ in range(args.steps):
            idx = rng.choice(len(x_train), BATCH, replace=False)
            yield torch.from_numpy(x_train[idx])[:, None], torch.from_numpy(y_train[idx])

    report_every(optimise(model, opt, batches(), lambda m, xb, yb: F.cross_entropy(m(xb), yb)), 20, t0)
    model = as_log_odds(model, WIDTH)
    results = {}
    for kind in ("with_label", "none", "inverted"):
        x_val, y_val = make_volumes(40, VALIDATION_SEED, kind)
        results[kind] = accuracy(model, x_val, y_val)
    print(
        f"validation accuracy (40 volumes each, seed {VALIDATION_SEED}): marker with the label {results['with_label']:.3f}; "
        f"no marker {results['none']:.3f}; marker on lesion-free volumes only {results['inverted']:.3f} ({time.time() - t0:.0f} s)",
        flush=True,
    )
    scan = load_sample_scan()
    weights = write_model(
        model,
        args.out,
        name="Shortcut classifier 3D (napari-xai sample, deliberate shortcut)",
        task="classification",
        spatial_dims=3,
        in_channels=1,
        input_size=scan.spatial_shape,
        input_spacing=(3.0, 3.0, 3.0),
        orientation="RAS",
        intensity=INTENSITY,
        labels=["no lesion", "lesion"],
        cam_layer="features.4",
        architecture={"factory": "small_classifier_3d", "kwargs": {"in_channels": 1, "n_classes": 2, "width": WIDTH}},
        model_card="sample_models/shortcut_classifier_3d.md",
    )
    print(f"wrote {weights} and {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
