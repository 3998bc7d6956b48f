"""Cohorts on Dask: LocalCluster in threads and in processes, an existing scheduler, failures, resuming, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

pytest.importorskip("distributed")

from napari_xai.cohort import ALL_COLUMNS, COLUMNS, collect_inputs, plan_cluster, read_table, run_cohort  # noqa: E402
from napari_xai.cohort.cli import main  # noqa: E402
from napari_xai.cohort.task import MARKER  # noqa: E402
from napari_xai.engine import ImageError, MethodError, explain, load_model, predict, read_image  # noqa: E402
from napari_xai.engine.trust import METRIC_ORDER  # noqa: E402

from tests.conftest import make_net, oblique_sitk  # noqa: E402

METHODS = ["vanilla_gradient", "integrated_gradients"]
PARAMS = {"steps": 4}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four small oblique scans with labels, one file that is not an image, a tiny exported model."""
    root = tmp_path_factory.mktemp("cohort")
    # TorchScript: seconds faster to make and load than a torch.export archive; gradient methods need no hooks
    torch.jit.save(torch.jit.trace(make_net(3), torch.randn(2, 1, 7, 9, 11)), str(root / "net.pt"))
    (root / "net.json").write_text(json.dumps({"labels": ["a", "b", "c"], "task": "classification"}))
    (root / "scans").mkdir()
    lines = ["image,label"]
    for i in range(4):
        sitk.WriteImage(oblique_sitk(seed=10 + i), str(root / "scans" / f"case{i}.nrrd"))
        lines.append(f"scans/case{i}.nrrd,{'abc'[i % 3]}")
    (root / "scans" / "broken.nrrd").write_text("not an image")
    lines.append("scans/broken.nrrd,a")
    (root / "cohort.csv").write_text("\n".join(lines) + "\n")
    return root


def _assert_same_as_explain(rows, model_path, params):
    model = load_model(model_path)
    for row in rows:
        if row["status"] == "failed":
            continue
        scan = read_image(row["image"])
        direct = explain(model, scan, row["method"], **{k: v for k, v in params.items() if row["method"] == "integrated_gradients"})
        written = read_image(row["map_path"])
        np.testing.assert_allclose(written.array, direct.values, rtol=1e-5, atol=1e-7)
        assert written.geometry == scan.geometry or np.allclose(written.geometry.origin, scan.geometry.origin, atol=1e-4)
        assert row["score"] == pytest.approx(direct.target["score"], rel=1e-6)
        p = predict(model, scan)
        assert row["prediction"] == p.class_index and row["probability"] == pytest.approx(p.score, rel=1e-6)


def test_cohort_in_threads_matches_explain_lists_the_failure_and_resumes(cohort, tmp_path):
    out = tmp_path / "out"
    result = run_cohort([cohort / "cohort.csv"], cohort / "net.pt", METHODS, out, params=PARAMS, workers=2, processes=False, progress=False)
    assert result.count("done") == 4 and result.count("failed") == 1
    assert len(result.rows) == 5 * len(METHODS)
    failed = [r for r in result.rows if r["status"] == "failed"]
    assert {r["scan_id"] for r in failed} == {"broken"} and "could not be read as an image" in failed[0]["error"]
    _assert_same_as_explain(result.rows, cohort / "net.pt", PARAMS)
    # model loaded once per worker, not per task
    loads = sum(bool(r["model_loaded"]) for r in result.rows)
    assert 1 <= loads <= 2 < 4
    # labels and their probabilities
    done = [r for r in result.rows if r["status"] == "done"]
    for r in done:
        assert r["label_agrees"] == (r["prediction"] == "abc".index(r["label"]))
        assert 0 <= r["label_probability"] <= 1
    assert all(r["completeness_error"] is not None for r in done if r["method"] == "integrated_gradients")
    # unique map names per input, all in the output folder
    paths = [r["map_path"] for r in done]
    assert len(set(Path(p).name for p in paths)) == len(paths)
    # one table, CSV and Parquet, with the documented columns
    import pyarrow.parquet as pq

    table = pq.read_table(result.table_parquet)
    assert table.num_rows == len(result.rows)
    assert list(table.column_names[: len(ALL_COLUMNS)]) == list(ALL_COLUMNS)
    back = read_table(result.table_csv)
    assert [r["scan_id"] for r in back] == [r["scan_id"] for r in result.rows]
    assert back[0]["time_method_s"] == pytest.approx(result.rows[0]["time_method_s"])
    assert result.summary_png.stat().st_size > 20_000 and result.summary_pdf.stat().st_size > 5_000
    # a rerun skips the complete scans and tries the failed one again
    stamp = {p: Path(p).stat().st_mtime_ns for p in paths}
    again = run_cohort([cohort / "cohort.csv"], cohort / "net.pt", METHODS, out, params=PARAMS, workers=2, processes=False, progress=False)
    assert again.count("skipped") == 4 and again.count("failed") == 1 and again.count("done") == 0
    assert {p: Path(p).stat().st_mtime_ns for p in paths} == stamp
    # a scan whose run stopped before its marker is redone; the others stay skipped
    (out / "scans" / "case2" / MARKER).unlink()
    third = run_cohort([cohort / "cohort.csv"], cohort / "net.pt", METHODS, out, params=PARAMS, workers=1, processes=False, progress=False)
    assert {r["scan_id"] for r in third.rows if r["status"] == "done"} == {"case2"}
    # another request (other parameters) redoes everything
    other = run_cohort([cohort / "scans" / "case0.nrrd"], cohort / "net.pt", ["integrated_gradients"], tmp_path / "out", params={"steps": 6}, workers=1, processes=False, progress=False)
    assert other.count("done") == 1


def test_cohort_in_processes_matches_explain(cohort, tmp_path):
    scans = [str(cohort / "scans" / f"case{i}.nrrd") for i in range(3)]
    result = run_cohort(scans, cohort / "net.pt", ["vanilla_gradient"], tmp_path / "out", workers=2, processes=True, progress=False)
    assert result.count("done") == 3
    _assert_same_as_explain(result.rows, cohort / "net.pt", {})
    assert len({r["worker"] for r in result.rows}) <= 2
    assert sum(bool(r["model_loaded"]) for r in result.rows) <= 2


def test_cohort_on_a_given_scheduler_address_with_reports(cohort, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        result = run_cohort([cohort / "scans" / "case1.nrrd"], cohort / "net.pt", ["vanilla_gradient"], tmp_path / "out", scheduler=cluster.scheduler_address, report=True, progress=False)
    (row,) = result.rows
    assert row["status"] == "done" and Path(row["report_path"]).stat().st_size > 20_000
    assert row["worker"] in {w.address for w in cluster.workers.values()} or row["worker"].startswith("inproc") or row["worker"].startswith("tcp")


def test_cli_runs_a_folder_and_exits_1_when_a_scan_failed(cohort, tmp_path, capsys):
    code = main([str(cohort / "scans"), "--model", str(cohort / "net.pt"), "--method", "vanilla_gradient", "--out", str(tmp_path), "--threads", "--workers", "1", "--no-progress"])
    assert code == 1
    captured = capsys.readouterr()
    assert "4 scans explained" in captured.out and "failed: broken" in captured.err
    assert (tmp_path / "cohort.csv").is_file() and (tmp_path / "summary.pdf").is_file()
    assert main(["--list-columns"]) == 0
    listed = capsys.readouterr().out
    assert all(c in listed for c in ALL_COLUMNS)
    assert main([str(cohort / "scans"), "--model", str(cohort / "net.pt"), "--method", "no_such_method", "--out", str(tmp_path / "x")]) == 2
    assert "no_such_method" in capsys.readouterr().err


def test_bad_requests_fail_before_anything_runs(cohort, tmp_path):
    with pytest.raises(MethodError, match="takes the parameter"):
        run_cohort([cohort / "scans"], cohort / "net.pt", ["vanilla_gradient"], tmp_path / "o", params={"stepz": 3}, processes=False, progress=False)
    with pytest.raises(ImageError, match="matches no file"):
        run_cohort([str(cohort / "nothing" / "*.nii.gz")], cohort / "net.pt", ["vanilla_gradient"], tmp_path / "o", processes=False, progress=False)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_inputs_from_folders_globs_and_csv_get_unique_stable_ids(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        sitk.WriteImage(oblique_sitk(), str(tmp_path / sub / "t1.nii.gz"))
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "list.csv").write_text("Scan,Mask,Label\na/t1.nii.gz,b/t1.nii.gz,1\n")
    items = collect_inputs([tmp_path / "a", str(tmp_path / "b" / "*.nii.gz"), tmp_path / "list.csv"])
    assert len(items) == 2  # the CSV row repeats a/t1.nii.gz: kept once
    ids = [i.scan_id for i in items]
    assert len(set(ids)) == 2 and all(i.startswith("t1-") for i in ids)
    assert ids == [i.scan_id for i in collect_inputs([tmp_path / "a", str(tmp_path / "b" / "*.nii.gz")])]
    (row,) = collect_inputs([tmp_path / "list.csv"])
    assert row.mask == str(tmp_path / "b" / "t1.nii.gz") and row.label == "1" and row.scan_id == "t1"
    with pytest.raises(ImageError, match="no image column"):
        (tmp_path / "bad.csv").write_text("foo\nbar\n")
        collect_inputs([tmp_path / "bad.csv"])


@pytest.mark.parametrize("n_scans, workers, cores", [(10, None, 2), (10, None, 16), (3, None, 16), (10, 4, 16), (10, 5, 3)])
def test_cluster_plan_does_not_oversubscribe_the_cores(n_scans, workers, cores):
    n_workers, threads = plan_cluster(n_scans, workers, cores)
    assert n_workers >= 1 and threads >= 1
    assert n_workers <= n_scans
    assert n_workers * threads <= max(cores, n_workers)


def test_every_table_column_is_documented():
    doc = (REPO / "docs" / "cohort.md").read_text(encoding="utf-8")
    for column in ALL_COLUMNS:
        assert column in COLUMNS or column in METRIC_ORDER
        assert f"`{column}`" in doc, column
