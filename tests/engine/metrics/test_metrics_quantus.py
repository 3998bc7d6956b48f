"""The engine's metrics agree with Quantus on 2D cases where the definitions match.

Quantus (Hedstroem et al., JMLR 24, 2023) computes its metrics on batches
of 2D images. Where its definition is the engine's: relevance mass and rank
accuracy and the pointing game on non-negative maps without ties, and pixel
flipping (Quantus) = the deletion curve (engine) with a constant baseline,
the class probability and ``n / steps`` voxels per step.
CI installs Quantus without its dependency on opencv-python (which bundles
a Qt of its own): see ``.ci/run``.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_xai.engine import evaluate
from napari_xai.engine.metrics.localisation import localisation

from tests.conftest import make_net

quantus = pytest.importorskip("quantus")

SHAPE = (12, 14)


def _batch(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1) + SHAPE).astype(np.float32)
    a = rng.random((n, 1) + SHAPE).astype(np.float32)  # non-negative, no ties
    s = np.zeros((n, 1) + SHAPE, dtype=np.float32)
    for i in range(n):
        y0, x0 = rng.integers(0, 8, size=2)
        s[i, 0, y0 : y0 + 4, x0 : x0 + 5] = 1
    return x, a, s


def _ours(a, s, key):
    return np.array([localisation(a[i, 0], s[i, 0] > 0, (1.0, 1.0))[key] for i in range(len(a))], dtype=float)


@pytest.mark.parametrize(
    "metric, key",
    [("RelevanceMassAccuracy", "mass_in_mask"), ("RelevanceRankAccuracy", "relevance_rank"), ("PointingGame", "pointing_game")],
)
def test_localisation_agrees_with_quantus(metric, key):
    x, a, s = _batch()
    a[0, 0][s[0, 0] > 0] += 1.0  # one map with its peak surely in the mask
    net = make_net(2, seed=0)
    theirs = getattr(quantus, metric)(disable_warnings=True, display_progressbar=False)(
        model=net, x_batch=x, y_batch=np.zeros(len(x), dtype=int), a_batch=a, s_batch=s, device="cpu", channel_first=True
    )
    np.testing.assert_allclose(_ours(a, s, key), np.asarray(theirs, dtype=float), rtol=1e-6, atol=1e-9)


def test_deletion_curve_is_quantus_pixel_flipping():
    net = make_net(2, seed=1)
    rng = np.random.default_rng(2)
    image = rng.normal(size=SHAPE).astype(np.float32)
    values = rng.random(SHAPE).astype(np.float32)
    steps = 12  # 168 pixels: 14 per step
    ours = evaluate(net, image, values, target=2, metrics=["faithfulness"], steps=steps, removal="baseline", baseline="zeros", score="probability")
    metric = quantus.PixelFlipping(
        features_in_step=image.size // steps, perturb_baseline=0.0, normalise=False, abs=False, disable_warnings=True, display_progressbar=False
    )
    theirs = metric(
        model=net, x_batch=image[None, None], y_batch=np.array([2]), a_batch=values[None, None], device="cpu", channel_first=True, softmax=True
    )
    np.testing.assert_allclose(ours["deletion_curve"]["score"][1:], np.asarray(theirs[0], dtype=float), rtol=1e-5, atol=1e-6)
