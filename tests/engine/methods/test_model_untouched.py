"""Every backpropagation and CAM method: shape, finite, non-trivial, model untouched, reproducible by seed; closing mid-run leaves no hooks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_xai.engine import explain

from tests.engine.methods.method_cases import EXTRA, MAP_METHODS, STOCHASTIC, case, hooks_left


@pytest.mark.parametrize("task", ["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("method", MAP_METHODS)
def test_map_method_runs_and_leaves_the_model_untouched(method, dim, task):
    net, img, kwargs, _ = case(dim, task)
    state = copy.deepcopy(net.state_dict())
    a = explain(net, img, method, target=1, **kwargs, **EXTRA.get(method, {}))
    assert a.values.shape == img.shape and a.values.dtype == np.float32
    assert np.isfinite(a.values).all() and np.abs(a.values).max() > 0
    assert hooks_left(net) == 0 and not net.training
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    if method in STOCHASTIC:
        again = explain(net, img, method, target=1, **kwargs, **STOCHASTIC[method])
        other = explain(net, img, method, target=1, seed=7, **kwargs, **STOCHASTIC[method])
        # same seed, same map; batch sizes follow the clock, and a convolution's round-off depends on its batch size
        np.testing.assert_allclose(a.values, again.values, rtol=1e-5, atol=1e-7)
        assert not np.allclose(a.values, other.values)


@pytest.mark.parametrize("method", ["smoothgrad", "deeplift_shap", "score_cam", "class_model_visualisation"])
def test_closing_mid_run_leaves_model_and_grad_mode_alone(method):
    from napari_xai.engine import explain_iter

    net, img, _, _ = case(3, "class")
    gen = explain_iter(net, img, method, target=1, memory_budget_mb=1)
    for _ in range(3):
        next(gen)
    gen.close()
    assert hooks_left(net) == 0 and torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
