"""Trust metrics: faithfulness, the model-randomisation sanity check, localisation, anatomy, Compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_xai.engine import Cancelled, MethodError, TargetError, evaluate, evaluate_iter, explain
from napari_xai.engine import compare as compare_methods
from napari_xai.engine.metrics import METRICS, derive_anatomy
from napari_xai.engine.metrics.definitions import SANITY_SPEARMAN_THRESHOLD, shortcut_rule
from napari_xai.engine.metrics.evaluation import make_setup
from napari_xai.engine.metrics.localisation import localisation, pointing_game, relevance_rank
from napari_xai.engine.metrics.randomisation import cascade_checkpoints, independent_layers, weight_layers
from napari_xai.engine.metrics.similarity import ssim, unit_range
from napari_xai.engine.models.loading import weights_identity
from napari_xai.engine.progress import Progress
from napari_xai.engine.registry import MethodSpec, register_method, unregister_method

from tests.conftest import make_net
from tests.planted import planted_case

FAST = {"integrated_gradients": {"steps": 8}, "occlusion": {"window": 3, "stride": 2}}


# ---------------------------------------------------------------- localisation against hand-computed values


def test_localisation_metrics_match_hand_computed_values():
    values = np.zeros((4, 5), dtype=np.float32)
    values[1, 1] = 4.0  # the peak, inside
    values[1, 2] = 2.0  # inside
    values[3, 4] = 3.0  # outside
    values[0, 0] = -5.0  # negative: not in the positive mass
    mask = np.zeros((4, 5), dtype=bool)
    mask[1, 1:3] = True
    mask[2, 2] = True
    out = localisation(values, mask, (1.0, 1.0))
    assert out["mass_in_mask"] == pytest.approx(6.0 / 9.0)
    assert out["pointing_game"] is True
    # K = 3 mask voxels; the three highest voxels are 4 (in), 3 (out), 2 (in)
    assert out["relevance_rank"] == pytest.approx(2.0 / 3.0)


def test_pointing_game_misses_outside_and_tolerance_is_in_millimetres():
    values = np.zeros((10, 10), dtype=np.float32)
    values[5, 8] = 1.0
    mask = np.zeros((10, 10), dtype=bool)
    mask[5, 2:5] = True  # peak is 4 voxels right of the mask
    assert pointing_game(values, mask) is False
    assert pointing_game(values, mask, (2.0, 2.0), tolerance_mm=7.9) is False  # 4 voxels = 8 mm
    assert pointing_game(values, mask, (2.0, 2.0), tolerance_mm=8.0) is True
    assert relevance_rank(values, mask) == 0.0


# ---------------------------------------------------------------- anatomy


def test_derived_anatomy_keeps_the_largest_body_fills_holes_and_drops_a_separate_marker():
    img = np.zeros((20, 40, 40), dtype=np.float32)
    zz, yy, xx = np.indices(img.shape)
    head = (zz - 10) ** 2 / 64 + (yy - 22) ** 2 / 196 + (xx - 22) ** 2 / 196 <= 1
    img[head] = 100.0
    hole = (zz - 10) ** 2 + (yy - 22) ** 2 + (xx - 22) ** 2 <= 9
    img[hole] = 2.0  # a dark ventricle
    img[1:4, 1:4, 1:4] = 250.0  # a bright marker in the air
    img += np.random.default_rng(0).normal(0, 1, img.shape).astype(np.float32)
    body = derive_anatomy(img_scan(img))
    assert body[hole].all() and not body[1:4, 1:4, 1:4].any()
    assert (body == head).mean() > 0.99


def img_scan(arr):
    from napari_xai.engine import as_scan

    return as_scan(arr)


def test_outside_anatomy_keys_and_the_shortcut_rule():
    net, image, box, region = planted_case(2)
    values = np.zeros(image.shape, dtype=np.float32)
    values[0, 0] = 5.0  # the peak in a corner, outside
    values[box] = 1.0
    anatomy = np.zeros(image.shape, dtype=bool)
    anatomy[box] = True
    r = evaluate(net, image, values, target=1, anatomy=anatomy, metrics=["anatomy"], top_fraction=0.01)
    n_top = round(0.01 * image.size)
    assert r["outside_anatomy_share"] == pytest.approx(5.0 / (5.0 + anatomy.sum()))
    assert r["outside_anatomy_peak"] is True
    assert r["outside_anatomy_top_share"] == pytest.approx(1.0 / n_top)
    assert r["shortcut_flag"] is shortcut_rule(True, 1.0 / n_top)
    assert shortcut_rule(True, 1.0) is True and shortcut_rule(False, 1.0) is False and shortcut_rule(True, 0.0) is False


# ---------------------------------------------------------------- faithfulness


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("method", ["vanilla_gradient", "integrated_gradients", "occlusion"])
def test_faithful_maps_beat_a_random_order_on_planted_evidence(method, dim):
    net, image, box, region = planted_case(dim)
    a = explain(net, image, method, target=1, **FAST.get(method, {}))
    r = evaluate(net, image, a, metrics=["faithfulness"], score="logit", steps=10, removal="baseline")
    assert r["deletion_auc"] < r["random_deletion_auc"]
    assert r["insertion_auc"] > r["random_insertion_auc"]
    assert r["faithfulness_gain"] > 0
    curve = r["deletion_curve"]
    assert len(curve["fraction"]) == 11 and curve["fraction"][0] == 0.0 and curve["fraction"][-1] == 1.0
    assert curve["score"][0] == pytest.approx(a.target["score"], rel=1e-5)  # nothing removed: the model's own score
    assert r["sanity_passed"] is None and r["mass_in_mask"] is None  # groups not asked for stay None


def test_curves_do_not_depend_on_the_batch_size():
    net, image, _, _ = planted_case(3)
    a = explain(net, image, "vanilla_gradient", target=1)
    kwargs = dict(metrics=["faithfulness"], steps=6, removal="noise", seed=3)
    big = evaluate(net, image, a, memory_budget_mb=4096, **kwargs)
    small = evaluate(net, image, a, memory_budget_mb=1, **kwargs)  # one sample per batch
    np.testing.assert_allclose(big["deletion_curve"]["score"], small["deletion_curve"]["score"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(big["random_insertion_curve"]["score"], small["random_insertion_curve"]["score"], rtol=1e-5, atol=1e-6)


def test_segmentation_target_over_a_given_region():
    net, image, box, region = planted_case(3, segmentation=True)
    a = explain(net, image, "vanilla_gradient", target=1, region=region)
    with pytest.raises(TargetError, match="region"):
        evaluate(net, image, a, metrics=["faithfulness"])
    r = evaluate(net, image, a, region=region, mask=region, metrics=["faithfulness", "localisation"], score="logit", steps=8)
    assert r["deletion_auc"] < r["random_deletion_auc"]
    assert r["pointing_game"] is True and r["mass_in_mask"] > 0.4
    with pytest.raises(MethodError, match="classifier"):
        evaluate(net, image, a, region=region, metrics=["faithfulness"], score="probability")


# ---------------------------------------------------------------- the model-randomisation sanity check


def _edge_filter_run(ctx, params):
    """An input-only 'method': the gradient magnitude of the image (Sobel), blind to the model."""
    yield Progress(0, 1, "edges")
    img = ctx.x[0, 0].cpu().numpy().astype(np.float64)
    edges = np.sqrt(sum(ndimage.sobel(img, axis=k) ** 2 for k in range(img.ndim)))
    yield Progress(1, 1, "edges: done")
    return edges.astype(np.float32)


@pytest.fixture
def edge_filter():
    spec = register_method(
        MethodSpec(
            name="edge_filter_test",
            title="Edge filter (test)",
            family="backpropagation",
            reference="test only",
            summary="Sobel gradient magnitude of the input; ignores the model.",
            needs=frozenset({"forward"}),
            sign="non-negative",
            params=(),
            run=_edge_filter_run,
        )
    )
    yield spec.name
    unregister_method(spec.name)


@pytest.mark.parametrize("dim", [2, 3])
def test_sanity_check_passes_gradients_and_fails_an_edge_filter(dim, edge_filter):
    net = make_net(dim, seed=4)
    shape = (28, 30) if dim == 2 else (14, 16, 15)
    image = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    image[tuple(slice(s // 3, s // 3 + 5) for s in shape)] += 3.0
    identity, training = weights_identity(net), net.training
    grad = explain(net, image, "vanilla_gradient", target=1)
    r = evaluate(net, image, grad, metrics=["sanity"], sanity_steps=2)
    sim = r["sanity_similarity"]
    assert sim["layers"] == len(weight_layers(net)) == 3
    assert len(sim["cascading"]) == len(cascade_checkpoints(3, 2)) and len(sim["independent"]) == len(independent_layers(3, 2))
    assert sim["spearman"] < SANITY_SPEARMAN_THRESHOLD and r["sanity_passed"] is True
    edges = explain(net, image, edge_filter, target=1)
    e = evaluate(net, image, edges, metrics=["sanity"], sanity_steps=2)
    assert e["sanity_similarity"]["spearman"] == pytest.approx(1.0) and e["sanity_similarity"]["ssim"] == pytest.approx(1.0)
    assert e["sanity_passed"] is False
    # the user's model is never changed: same weights, same mode, same object
    assert weights_identity(net) == identity and net.training == training


def test_user_model_is_unchanged_even_in_train_mode():
    net = make_net(2, seed=1).train()
    image = np.random.default_rng(2).normal(size=(20, 22)).astype(np.float32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = explain(net, image, "vanilla_gradient", target=0)
    evaluate(net, image, a, sanity_steps=1, steps=4)
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---------------------------------------------------------------- the dict, provenance, progress and cancel


def test_every_documented_key_is_returned_and_stored_in_provenance():
    net, image, box, region = planted_case(2)
    a = explain(net, image, "integrated_gradients", target=1, steps=8)
    r = evaluate(net, image, a, mask=region, steps=4, sanity_steps=1)
    assert set(METRICS) <= set(r)
    for key, doc in METRICS.items():
        assert doc.definition and doc.reference and doc.title, key
    assert r["completeness_error"] == pytest.approx(a.checks["completeness"]["relative_delta"])
    assert r["mass_in_mask"] is not None and isinstance(r["sanity_passed"], bool)
    assert r["anatomy_source"] == "derived" and 0 < r["anatomy_fraction"] < 1
    json.dumps(r)  # plain JSON types
    prov = a.provenance()
    assert prov["metrics"]["deletion_auc"] == r["deletion_auc"]


def test_progress_is_monotone_and_closing_cancels():
    net, image, _, _ = planted_case(2)
    a = explain(net, image, "vanilla_gradient", target=1)
    gen = evaluate_iter(net, image, a, steps=4, sanity_steps=1)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration:
            break
    fractions = [e.fraction for e in events if e.total > 0]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    b = explain(net, image, "vanilla_gradient", target=1)
    gen = evaluate_iter(net, image, b, steps=4, sanity_steps=1)
    for _ in range(3):
        next(gen)
    gen.close()
    assert b.metrics == {}
    with pytest.raises(Cancelled):
        evaluate(net, image, b, steps=4, should_cancel=lambda: True)
    assert b.metrics == {}


def test_bad_input_is_an_xai_error():
    net, image, _, region = planted_case(2)
    a = explain(net, image, "vanilla_gradient", target=1)
    with pytest.raises(TargetError, match="mask"):
        evaluate(net, image, a, mask=region[:-1])
    with pytest.raises(TargetError, match="map"):
        evaluate(net, image, a.values[:-1])
    with pytest.raises(MethodError, match="setting"):
        evaluate(net, image, a, step=3)
    with pytest.raises(MethodError, match="metric or group"):
        evaluate(net, image, a, metrics=["beauty"])
    with pytest.raises(MethodError, match="removal"):
        evaluate(net, image, a, removal="erase")


# ---------------------------------------------------------------- SSIM against scikit-image


@pytest.mark.parametrize("shape", [(40, 36), (16, 18, 17)])
def test_ssim_matches_scikit_image(shape):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = ndimage.gaussian_filter(rng.random(shape), 2)
    b = 0.6 * a + 0.4 * ndimage.gaussian_filter(rng.random(shape), 1)
    a, b = unit_range(a), unit_range(b)
    expected = skimage_metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- Compare


def test_compare_ranks_methods_and_shares_the_random_curves(edge_filter):
    net = make_net(2, seed=4)
    image = np.random.default_rng(5).normal(size=(28, 30)).astype(np.float32)
    image[8:14, 9:15] += 3.0
    methods = {"vanilla_gradient": {}, "integrated_gradients": {"steps": 8}, edge_filter: {}}
    c = compare_methods(net, image, methods, target=1, steps=5, sanity_steps=1)
    assert set(c.maps) == set(methods) and [row["method"] for row in c.table] == c.ranking
    assert c.ranking[-1] == edge_filter  # fails the sanity check: ranked last
    assert len({row["random_deletion_auc"] for row in c.table}) == 1  # traced once, shared
    assert all(a.metrics for a in c.maps.values())
    assert all(a.target["class_index"] == 1 for a in c.maps.values())
    json.dumps(c.to_dict())


def test_setup_reports_a_bad_anatomy_before_any_work():
    net, image, _, _ = planted_case(2)
    with pytest.raises(Exception, match="anatomy"):
        make_setup(net, image, anatomy=np.zeros((3, 3), dtype=bool))
