"""The trust metrics a report and a cohort carry: the methods' checks, plus the engine's evaluation where it exists."""

from __future__ import annotations

import numpy as np
import pytest

import napari_xai.engine as engine
from napari_xai.engine import explain
from napari_xai.engine.trust import check_metrics, evaluator, format_metric, ordered_names, scalar_metrics, trust_metrics

from .conftest import make_net


@pytest.fixture(scope="module")
def ig_map():
    image = np.random.default_rng(0).random((7, 9, 11)).astype(np.float32)
    return make_net(3), image, explain(make_net(3), image, "integrated_gradients", steps=8)


def test_checks_give_the_completeness_error(ig_map):
    _, _, a = ig_map
    assert check_metrics(a)["completeness_error"] == pytest.approx(a.checks["completeness"]["relative_delta"])
    assert trust_metrics(a, evaluate=False) == check_metrics(a)


def test_scalar_metrics_flatten_records_and_drop_curves_and_run_details():
    result = {
        "deletion_auc": np.float32(0.25),
        "shortcut_flag": np.bool_(True),
        "sanity_similarity": {"spearman": 0.1, "ssim": 0.4, "cascading": [{"layer": "a"}]},
        "deletion_curve": {"fraction": [0, 1], "score": [1, 0]},
        "method": "grad_cam",
        "timings": {"total_s": 1.0},
        "mass_in_mask": None,
    }
    out = scalar_metrics(result)
    assert out == {"deletion_auc": pytest.approx(0.25), "shortcut_flag": True, "sanity_similarity_spearman": 0.1, "sanity_similarity_ssim": 0.4, "mass_in_mask": None}
    assert type(out["deletion_auc"]) is float and type(out["shortcut_flag"]) is bool
    assert ordered_names([out])[:2] == ["deletion_auc", "sanity_similarity_spearman"]
    assert [format_metric(v) for v in (None, True, 0.123456, float("nan"))] == ["-", "yes", "0.123", "-"]


def test_an_engine_evaluate_is_found_and_called_with_the_mask(ig_map, monkeypatch):
    model, image, a = ig_map
    calls = []

    def evaluate(model, image, attribution, *, mask=None, anatomy=None):
        calls.append(mask)
        return {"outside_anatomy_share": 0.5, "shortcut_flag": False, "settings": {"steps": 3}}

    monkeypatch.setattr(engine, "evaluate", evaluate, raising=False)
    assert evaluator() is evaluate
    mask = np.zeros((7, 9, 11), bool)
    out = trust_metrics(a, model=model, image=image, mask=mask, unknown_option=3)
    assert calls[0] is mask
    assert out["outside_anatomy_share"] == 0.5 and "settings" not in out and "completeness_error" in out
    assert trust_metrics(a, model=model, image=image, evaluate=False) == check_metrics(a)
    def broken(model, image, attribution, **kwargs):
        raise RuntimeError("get_submodule is not supported")

    monkeypatch.setattr(engine, "evaluate", broken)
    with pytest.raises(RuntimeError):
        trust_metrics(a, model=model, image=image)
    kept = trust_metrics(a, model=model, image=image, on_error="record")
    assert kept["metrics_error"] == "RuntimeError: get_submodule is not supported" and "completeness_error" in kept
    monkeypatch.delattr(engine, "evaluate")
    assert evaluator() is None
    assert trust_metrics(a, model=model, image=image) == check_metrics(a)


@pytest.mark.skipif(evaluator() is None, reason="this engine has no evaluate()")
def test_the_real_evaluation_fills_the_trust_table(ig_map):
    model, image, a = ig_map
    out = trust_metrics(a, model=model, image=image, mask=image > 0.9)
    for key in ("deletion_auc", "insertion_auc", "outside_anatomy_share", "shortcut_flag", "completeness_error"):
        assert key in out
    assert all(v is None or isinstance(v, (bool, int, float)) for v in out.values())
