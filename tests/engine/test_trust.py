"""The trust metrics a report and a cohort carry: the methods' checks, plus the engine's evaluation where it exists."""

from __future__ import annotations

import numpy as np
import pytest

import napari_xai.engine as engine
from napari_xai.engine import explain
from napari_xai.engine.trust import check_metrics, evaluator, format_metric, ordered_names, scalar_metrics, trust_metrics

from tests.conftest import make_net


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
    assert out == {"deletion_auc": pytest.approx(0.25), "shortcut_flag": True, "sanity_spearman": 0.1, "sanity_ssim": 0.4, "mass_in_mask": None}
    assert type(out["deletion_auc"]) is float and type(out["shortcut_flag"]) is bool
    assert ordered_names([out])[:2] == ["deletion_auc", "sanity_spearman"]
    assert [format_metric(v) for v in (None, True, 0.123456, float("nan"))] == ["-", "yes", "0.123", "-"]


def test_report_cohort_and_hosts_share_one_ordered_list_of_metric_columns():
    from napari_xai.cohort.table import METRIC_COLUMNS as cohort_columns
    from napari_xai.engine.metrics import METRIC_COLUMNS, TABLE_KEYS, column_doc, table_row
    from napari_xai.engine.trust import METRIC_ORDER, metric_label, metric_reading

    keys = tuple(doc.key for doc in METRIC_COLUMNS)
    assert keys == TABLE_KEYS == METRIC_ORDER == cohort_columns
    assert len(set(keys)) == len(keys)
    for doc in METRIC_COLUMNS:  # every column has its label, definition and reference
        assert doc.title and doc.definition and doc.reference and doc.better
        assert metric_label(doc.key) == doc.title and metric_reading(doc.key)
        assert column_doc(doc.key) is doc
    result = {"sanity_similarity": {"spearman": 0.2, "ssim": 0.7}, "deletion_auc": 0.1}
    assert scalar_metrics(result) == {k: v for k, v in table_row(None, result).items() if k in ("deletion_auc", "sanity_spearman", "sanity_ssim")}


def test_the_old_cohort_sanity_column_names_are_read_as_aliases(tmp_path):
    from napari_xai.cohort import read_table
    from napari_xai.cohort.table import normalise_row, write_table
    from napari_xai.engine.metrics import METRIC_ALIASES, column_doc

    assert METRIC_ALIASES == {"sanity_similarity_spearman": "sanity_spearman", "sanity_similarity_ssim": "sanity_ssim"}
    assert column_doc("sanity_similarity_spearman").key == "sanity_spearman"
    old = tmp_path / "old.csv"  # a table written before the rename
    old.write_text("scan_id,method,sanity_similarity_spearman,sanity_similarity_ssim,sanity_passed\na,vanilla_gradient,0.125,0.5,True\n", encoding="utf-8")
    (row,) = read_table(old)
    assert row["sanity_spearman"] == 0.125 and row["sanity_ssim"] == 0.5 and row["sanity_passed"] is True
    assert "sanity_similarity_spearman" not in row
    # a resumed run's skipped rows (from an old marker) are written under the new names
    csv_path, _ = write_table([normalise_row({"scan_id": "a", "sanity_similarity_spearman": 0.25})], tmp_path / "new")
    header = csv_path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "sanity_spearman" in header and "sanity_similarity_spearman" not in header
    assert read_table(csv_path)[0]["sanity_spearman"] == 0.25


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
