"""Perturbation methods: LIME, KernelSHAP, RISE, HiPe, Meaningful and Extremal Perturbation.

Each method runs on a 2D and a 3D network with BatchNorm, for a class target
and a region target (shape, finite, non-trivial, reproducible by seed). The
hand-written methods are checked against references with the same
definition: Captum's ``Lime`` and ``KernelShap`` fed the same supervoxels and
the same coalitions, exact Shapley values by enumeration, and Captum's
``FeatureAblation`` on a grid for a one-depth HiPe. RISE's own checks are in
``test_rise.py``.
"""

from __future__ import annotations

import itertools
import math

import captum.attr as captum_attr
import numpy as np
import pytest
import torch

from napari_xai.engine import explain, explain_iter, get_method
from napari_xai.engine.errors import MethodError
from napari_xai.engine.methods.perturbation.supervoxels import grid_labels, slic_labels
from napari_xai.engine.methods.perturbation.extremal_perturbation import SmoothMax
from napari_xai.engine.methods.perturbation.kernel_shap import shap_coalitions
from napari_xai.engine.methods.perturbation.lime import lime_coalitions

from tests.conftest import make_net

from captum._utils.models.model import Model  # noqa: E402

#: Small settings: every run takes well under a second on these inputs.
FAST = {
    "lime": {"n_samples": 200, "n_segments": 30},
    "kernel_shap": {"n_samples": 200, "n_segments": 30},
    "rise": {"n_masks": 200, "grid": 4},
    "hipe": {"min_cell": 3},
    "meaningful_perturbation": {"iterations": 15, "mask_stride": 3},
    "extremal_perturbation": {"iterations": 15, "mask_stride": 3, "sigma_cells": 0.5},
}
METHODS = list(FAST)
STOCHASTIC = ["lime", "kernel_shap", "rise"]


def _image(dim: int, seed: int = 0) -> np.ndarray:
    shape = (12, 14, 16) if dim == 3 else (20, 24)
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 0.3, size=shape).astype(np.float32)
    img[tuple(slice(s // 3, s // 3 + s // 3) for s in shape)] += 1.5
    return img


def _case(dim: int, region: bool):
    net = make_net(dim, segmentation=region)
    image = _image(dim)
    kwargs = {}
    if region:
        mask = np.zeros(image.shape, bool)
        mask[tuple(slice(s // 4, s // 2) for s in image.shape)] = True
        kwargs["region"] = mask
    return net, image, kwargs


# ---------------------------------------------------------------- every method


@pytest.mark.parametrize("region", [False, True], ids=["class", "region"])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_shape_finite_nontrivial_reproducible(method, dim, region):
    net, image, kwargs = _case(dim, region)
    a = explain(net, image, method, target=1, **kwargs, **FAST[method])
    assert a.values.shape == image.shape and a.values.dtype == np.float32
    assert np.isfinite(a.values).all()
    assert np.ptp(a.values) > 0, "the map is constant"
    spec = get_method(method)
    assert a.sign == spec.sign
    if spec.sign == "non-negative":
        assert a.values.min() >= -1e-6
    again = explain(net, image, method, target=1, **kwargs, **FAST[method])
    # batches are sized by wall time, so sums may run in another order: equal up to rounding. A perturbation
    # map holds differences of scores, whose float32 rounding scales with the score, not with the (small)
    # difference: the tolerance is 1e-5 of the map's range (a changed seed differs by the order of the range)
    np.testing.assert_allclose(a.values, again.values, rtol=1e-5, atol=1e-5 * np.abs(a.values).max())
    if method in STOCHASTIC:
        other = explain(net, image, method, target=1, seed=1, **kwargs, **FAST[method])
        assert not np.array_equal(a.values, other.values)
    assert torch.is_grad_enabled(), "a method left grad mode switched off"
    assert all(p.grad is None for p in net.parameters()), "a method left gradients on the model"


@pytest.mark.parametrize("method", METHODS)
def test_multichannel_input(method):
    net = make_net(2, in_channels=2)
    image = np.stack([_image(2), _image(2, seed=1)])
    a = explain(net, image, method, target=0, channel_axis=0, **FAST[method])
    assert a.values.shape == image.shape[1:] and np.isfinite(a.values).all() and np.ptp(a.values) > 0


def test_registry_entries():
    for name in METHODS:
        spec = get_method(name)
        assert spec.family == "perturbation"
        assert "review ref. [" in spec.reference
        assert spec.stochastic == ("seed" in spec.defaults())
        for p in spec.params:
            assert p.help and p.default is not None
    assert get_method("rise").model_agnostic and not get_method("extremal_perturbation").model_agnostic


@pytest.mark.parametrize("method", ["lime", "rise", "meaningful_perturbation"])
def test_cancel_between_batches_leaves_grad_mode(method):
    net, image, kwargs = _case(3, False)
    params = dict(FAST[method])
    params.update({"lime": {"n_samples": 5000}, "rise": {"n_masks": 5000}, "meaningful_perturbation": {"iterations": 500}}[method])
    gen = explain_iter(net, image, method, target=1, memory_budget_mb=1, **params)
    for _ in range(3):
        next(gen)
    gen.close()
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in net.parameters())


# ---------------------------------------------------------------- supervoxels


def test_grid_labels_cover_cells():
    labels = grid_labels((5, 7), (2, 3))
    assert labels.max() + 1 == 3 * 3
    assert np.array_equal(np.unique(labels), np.arange(9))
    assert labels[0, 0] == labels[1, 2] != labels[2, 0]


@pytest.mark.parametrize("shape,edge", [((12, 14, 16), 7), ((48, 40, 48), 24)], ids=["full", "subsampled"])
def test_slic_follows_intensity_edges_and_is_connected(shape, edge):
    from scipy import ndimage

    img = np.zeros(shape, np.float32)
    img[:, :, edge:] = 1.0
    img += np.random.default_rng(0).normal(0, 0.05, img.shape).astype(np.float32)
    gen = slic_labels(img[None], n_segments=24, compactness=0.1)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        labels = stop.value
    m = labels.max() + 1
    assert 8 <= m <= 60
    for k in range(m):
        sel = labels == k
        assert ndimage.label(sel)[1] == 1, "a supervoxel is not connected"
        side = img[sel] > 0.5
        assert side.all() or not side.any(), "a supervoxel straddles the intensity edge"


# ---------------------------------------------------------------- LIME vs Captum


class _WeightedRidge(Model):
    """Closed-form weighted ridge with an unpenalised intercept (scikit-learn's Ridge), for Captum's Lime."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.coef: torch.Tensor | None = None

    def fit(self, train_data, **kwargs):
        xs, ys, ws = zip(*list(train_data))
        x = torch.cat(xs).double().numpy()
        y = torch.cat(ys).double().numpy().ravel()
        w = torch.cat(ws).double().numpy().ravel()
        a = np.hstack([x, np.ones((len(x), 1))])
        pen = np.diag([self.alpha] * x.shape[1] + [0.0])
        sol = np.linalg.lstsq(a.T @ (a * w[:, None]) + pen, a.T @ (w * y), rcond=None)[0]
        self.coef = torch.as_tensor(sol[:-1], dtype=torch.float32)[None]
        return {}

    def representation(self) -> torch.Tensor:
        return self.coef

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() @ self.coef.T


def _replay(rows: np.ndarray):
    def gen(original_inp, **kwargs):
        for r in rows:
            yield torch.as_tensor(r[None].astype(np.int64))

    return gen


def test_lime_matches_captum_lime_on_same_coalitions():
    net = make_net(2)
    image = _image(2)
    cell, n, seed, width = 6, 150, 3, 0.25
    a = explain(net, image, "lime", target=2, segmentation="grid", cell=cell, n_samples=n, seed=seed, baseline="mean", kernel_width=width)
    labels = grid_labels(image.shape, (cell, cell))
    rows = lime_coalitions(int(labels.max()) + 1, n, seed)

    def similarity(original, perturbed, interp, **kwargs):
        z = interp.double().ravel()
        cos = torch.nn.functional.cosine_similarity(z, torch.ones_like(z), dim=0)  # 0 for the empty coalition
        return torch.exp(-((1 - cos) ** 2) / (2 * width**2))

    lime = captum_attr.Lime(net, interpretable_model=_WeightedRidge(1.0), similarity_func=similarity, perturb_func=_replay(rows))
    x = torch.as_tensor(image)[None, None]
    ref = lime.attribute(x, target=2, baselines=float(image.mean()), feature_mask=torch.as_tensor(labels)[None, None], n_samples=n, perturbations_per_eval=50)
    ref = ref[0, 0].detach().numpy()
    np.testing.assert_allclose(a.values, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


# ---------------------------------------------------------------- KernelSHAP


def _coalition_scores(net, image, labels, target, base):
    """v(S) for every coalition S of the supervoxels, by running the model."""
    m = int(labels.max()) + 1
    x = torch.as_tensor(image)[None, None]
    all_bits = list(itertools.product((0, 1), repeat=m))
    keep = torch.as_tensor(np.asarray(all_bits)[:, labels], dtype=torch.float32)[:, None]
    with torch.no_grad():
        scores = net(x * keep + base * (1 - keep))[:, target].double().numpy()
    return dict(zip(all_bits, scores))


def _exact_shapley(v, m):
    phi = np.zeros(m)
    for i in range(m):
        for bits, val in v.items():
            if bits[i]:
                continue
            s = sum(bits)
            with_i = bits[:i] + (1,) + bits[i + 1 :]
            phi[i] += math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) * (v[with_i] - val)
    return phi


def test_kernel_shap_is_exact_shapley_when_all_coalitions_fit():
    net = make_net(2)
    image = _image(2)[:12, :18]
    labels = grid_labels(image.shape, (6, 6))  # 2 x 3 = 6 players, 64 coalitions
    a = explain(net, image, "kernel_shap", target=0, segmentation="grid", cell=6, n_samples=64)
    assert a.checks["kernel_shap"]["exact_enumeration"]
    phi = _exact_shapley(_coalition_scores(net, image, labels, 0, 0.0), 6)
    got = np.array([a.values[labels == k].mean() for k in range(6)])
    np.testing.assert_allclose(got, phi, rtol=1e-4, atol=1e-5 * np.abs(phi).max())
    assert got.sum() == pytest.approx(a.checks["kernel_shap"]["f_x"] - a.checks["kernel_shap"]["f_reference"], rel=1e-4)


def test_kernel_shap_sampled_converges_to_exact_shapley():
    net = make_net(2)
    image = _image(2)[:12, :24]
    labels = grid_labels(image.shape, (6, 4))  # 2 x 6 = 12 players, 4096 coalitions
    phi = _exact_shapley(_coalition_scores(net, image, labels, 1, 0.0), 12)
    a = explain(net, image, "kernel_shap", target=1, segmentation="grid", cell=(6, 4), n_samples=2000, seed=0)
    assert not a.checks["kernel_shap"]["exact_enumeration"]
    got = np.array([a.values[labels == k].mean() for k in range(12)])
    assert np.corrcoef(got, phi)[0, 1] > 0.99
    assert got.sum() == pytest.approx(phi.sum(), rel=1e-4)  # efficiency holds exactly, sampled or not


class _WeightedLinear(_WeightedRidge):
    def __init__(self) -> None:
        super().__init__(0.0)


def test_kernel_shap_matches_captum_kernel_shap_on_same_coalitions():
    net = make_net(2, segmentation=True)
    image = _image(2)
    region = torch.zeros(image.shape, dtype=torch.bool)
    region[5:12, 6:15] = True

    def forward(x):  # class 1 summed over the region, as the engine's region target
        return (net(x)[:, 1] * region).flatten(1).sum(1)

    cell, n, seed = 5, 300, 4
    a = explain(net, image, "kernel_shap", target=1, region=region.numpy(), segmentation="grid", cell=cell, n_samples=n, seed=seed, baseline="min")
    labels = grid_labels(image.shape, (cell, cell))
    rows, _, exact = shap_coalitions(int(labels.max()) + 1, n, seed)
    assert not exact
    ks = captum_attr.KernelShap(forward)
    ks.interpretable_model = _WeightedLinear()  # Captum's default needs scikit-learn
    ks.perturb_func = _replay(rows)
    ref = ks.attribute(torch.as_tensor(image)[None, None], baselines=float(image.min()), feature_mask=torch.as_tensor(labels)[None, None], n_samples=n, perturbations_per_eval=50)
    ref = ref[0, 0].detach().numpy()
    # Captum weights the two end points by 1e6 where we impose the constraint exactly
    np.testing.assert_allclose(a.values, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


# ---------------------------------------------------------------- HiPe


def test_hipe_one_depth_equals_captum_feature_ablation_per_voxel():
    net = make_net(2)
    image = _image(2)[:12, :16]
    a = explain(net, image, "hipe", target=1, start_cells=(3, 4), min_cell=4)
    assert a.checks["hipe"]["depths"] == 1
    labels = grid_labels(image.shape, (4, 4))
    fa = captum_attr.FeatureAblation(net)
    ref = fa.attribute(torch.as_tensor(image)[None, None], target=1, baselines=0.0, feature_mask=torch.as_tensor(labels)[None, None])
    np.testing.assert_allclose(a.values * 16, ref[0, 0].detach().numpy(), rtol=1e-4, atol=1e-5)


def test_hipe_refines_only_salient_cells():
    from tests.planted import planted_case, positive_mass_in_box

    net, image, box, _ = planted_case(2)
    a = explain(net, image, "hipe", target=1, min_cell=1)
    full_occlusion_passes = image.size  # every 1-voxel cell at the finest depth
    assert a.checks["hipe"]["depths"] >= 4
    assert a.checks["hipe"]["forward_passes"] < full_occlusion_passes / 4
    assert positive_mass_in_box(a.values, box) > 0.7


class _Indifferent(torch.nn.Module):
    """Output does not depend on the input."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 2) + 0 * x.flatten(1).sum(1, keepdim=True)


def test_hipe_refines_nothing_when_nothing_matters():
    image = _image(3)
    a = explain(_Indifferent(), image, "hipe", target=0, min_cell=1)
    assert a.checks["hipe"] == {"forward_passes": 8, "depths": 1}
    assert not a.values.any()


# ---------------------------------------------------------------- mask optimisation


@pytest.mark.parametrize("grid,sigma,temperature", [((4, 5), 1.0, 0.0), ((3, 4, 5), 1.5, 0.0), ((3, 4, 5), 1.0, 0.2)])
def test_smooth_max_matches_its_definition(grid, sigma, temperature):
    """m(u) = smax over grid cells v within 2 sigma of u of exp(-|u - v|^2 / 2 sigma^2) m_bar(v), by brute force."""
    m_bar = torch.rand((1, 1) + grid, generator=torch.Generator().manual_seed(0))
    got = SmoothMax(grid, sigma, temperature, torch.device("cpu"))(m_bar)[0, 0]
    cells = list(itertools.product(*[range(g) for g in grid]))
    for u in cells:
        near = [v for v in cells if max(abs(a - b) for a, b in zip(u, v)) <= math.ceil(2 * sigma)]
        z = torch.tensor([math.exp(-sum((a - b) ** 2 for a, b in zip(u, v)) / (2 * sigma**2)) * float(m_bar[(0, 0) + v]) for v in near])
        want = z.max() if temperature == 0 else (z * torch.softmax(z / temperature, 0)).sum()
        assert float(got[u]) == pytest.approx(float(want), abs=1e-6)


@pytest.mark.parametrize("dim", [2, 3])
def test_extremal_mask_respects_area_and_preserves_score(dim):
    from tests.planted import planted_case

    net, image, box, _ = planted_case(dim)
    a = explain(net, image, "extremal_perturbation", target=1, iterations=150, mask_stride=2, sigma_cells=0.5, area=0.1)
    c = a.checks["extremal_perturbation"]
    assert 0.04 < c["mask_mean"] < 0.2
    assert c["normalised_score_preserved"] > 0.5  # preserving 10% keeps most of the score
    assert float(a.values[box].mean()) > 3 * float(a.values.mean())


@pytest.mark.parametrize("dim", [2, 3])
def test_meaningful_deletion_lowers_score_with_small_mask(dim):
    from tests.planted import planted_case

    net, image, box, _ = planted_case(dim)
    a = explain(net, image, "meaningful_perturbation", target=1, iterations=60, mask_stride=2)
    c = a.checks["meaningful_perturbation"]
    assert c["normalised_score_after_deletion"] < 0.9
    assert c["deleted_fraction"] < 0.2
    assert float(a.values[box].mean()) > 3 * float(a.values.mean())


@pytest.mark.parametrize("perturbation", ["noise", "constant"])
def test_mask_methods_other_operators(perturbation):
    net, image, _ = _case(2, False)
    for method in ("meaningful_perturbation", "extremal_perturbation"):
        a = explain(net, image, method, target=1, perturbation=perturbation, **FAST[method])
        assert np.isfinite(a.values).all() and a.values.min() >= -1e-6 and a.values.max() <= 1 + 1e-6


def test_mask_method_refuses_a_perturbation_that_changes_nothing():
    net, image, _ = _case(2, False)
    flat = np.full_like(image, 0.7)
    with pytest.raises(MethodError, match="does not change the target score"):
        explain(net, flat, "meaningful_perturbation", target=1, perturbation="constant", iterations=2)


def test_hipe_finds_full_occlusions_top_cell_with_5x_fewer_passes_on_the_2d_sample():
    """On the 2D sample model, HiPe's top finest cell is the top cell of full occlusion at that cell size.

    The 3D sample models are measured the same way in ``benchmarks/bench_hipe.py`` (too slow for a unit test).
    """
    import importlib.util
    from pathlib import Path

    from napari_xai.samples import load_lesion_classifier_2d, load_sample_scan_axial

    path = Path(__file__).resolve().parents[4] / "benchmarks" / "bench_hipe.py"
    spec = importlib.util.spec_from_file_location("bench_hipe", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.compare(load_lesion_classifier_2d(), load_sample_scan_axial(), 2, memory_budget_mb=64)
    assert r["same_top_cell"]
    assert r["occlusion_passes"] >= 5 * r["hipe_passes"]
