"""The engine's prediction on the unperturbed image, as hosts show it before a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xai.engine import TargetError, predict

from tests.conftest import make_net, random_volume


def test_classifier_prediction_is_the_softmax_argmax(net3d):
    image = random_volume((8, 9, 10))
    p = predict(net3d, image, spec={"labels": ["a", "b", "c"]})
    with torch.no_grad():
        probs = net3d(torch.from_numpy(image)[None, None]).softmax(1)[0]
    assert p.task == "classification" and p.class_index == int(probs.argmax())
    assert p.label == ["a", "b", "c"][p.class_index] and p.labels == ["a", "b", "c"]
    assert p.score == pytest.approx(float(probs.max()), rel=1e-5)
    assert p.describe() == f"predicted: {p.label} (p = {p.score:.2f})"


def test_segmentation_prediction_counts_the_predicted_voxels():
    net = make_net(3, segmentation=True, seed=0)  # predicts classes 0 and 2 on this image
    image = random_volume((8, 9, 10))
    with torch.no_grad():
        counts = np.bincount(net(torch.from_numpy(image)[None, None]).argmax(1)[0].flatten().numpy(), minlength=3)
    assert counts[1] == 0 and counts[2] > 0
    p = predict(net, image)
    assert p.task == "segmentation" and p.class_index == 2 and p.score == counts[2]
    with pytest.raises(TargetError, match="predicts no voxel of class 1"):
        from napari_xai.engine import explain

        explain(net, image, "vanilla_gradient", target=1)
