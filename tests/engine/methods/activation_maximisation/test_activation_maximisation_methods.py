"""Activation maximisation: the score rises, runs repeat, channels are kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xai.engine import explain

from tests.conftest import make_net
from tests.engine.methods.method_cases import SHAPES, case, tensor


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("method", ["class_model_visualisation", "deep_dream"])
def test_activation_maximisation_raises_the_score(method, dim, task):
    net, img, kwargs, score = case(dim, task)
    a = explain(net, img, method, target=1, steps=15, **kwargs)
    assert a.family == "activation maximisation" and a.values.shape == img.shape and np.isfinite(a.values).all()
    assert a.checks["final_score"] > a.checks["start_score"]
    with torch.no_grad():
        assert float(score(net(tensor(a.values)))[0]) == pytest.approx(a.checks["final_score"], rel=1e-4, abs=1e-5)
    again = explain(net, img, method, target=1, steps=15, **kwargs)
    np.testing.assert_array_equal(a.values, again.values)
    if method == "deep_dream":
        assert a.values.min() >= img.min() - 1e-6 and a.values.max() <= img.max() + 1e-6


def test_activation_maximisation_keeps_channels_of_a_multichannel_model():
    net = make_net(2, in_channels=2)
    img = np.random.default_rng(0).normal(size=(2,) + SHAPES[2]).astype(np.float32)
    a = explain(net, img, "class_model_visualisation", target=1, steps=5, channel_axis=0)
    assert a.values.shape == img.shape
    m = explain(net, img, "input_x_gradient", target=1, channel_axis=0)
    assert m.values.shape == SHAPES[2]  # attribution maps still sum their channels
