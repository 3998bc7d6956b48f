"""The module computes off Slicer's main thread through the shared job layer (issue 13 item 1, issue 11's Slicer item).

Apply and Evaluate run the engine in a Python thread (``napari_xai.session.background``) polled by a
``qt.QTimer`` on the main thread (``SaliencyMapsLib.runs``); the stand-in timer of tests/slicer/standins.py
fires on the test's thread, as Qt fires a timer on the thread that owns it. Checked here: the engine runs on
another thread and every MRML call on the main one; progress, Cancel and errors reach the dialogs; a 2D model
explains the slice the Red view shows and its map lands on that slice of the input's grid, as SimpleITK
places it; the predicted class and the method's checks are shown.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import slicer
import slicer.util
import torch

from napari_xai.engine.progress import Progress
from napari_xai.session import jobs
from SaliencyMapsLib import nodes
from tests.conftest import make_net, oblique_sitk
from tests.slicer import standins
from tests.slicer.test_module import oblique_volume
from tests.slicer.test_widget import gui510, model_file, ready  # noqa: F401  (fixtures)


def test_the_engine_runs_off_the_main_thread_and_the_scene_is_touched_only_on_it(gui510, model_file, monkeypatch):
    gui = gui510
    main = threading.get_ident()
    engine_threads, scene_threads = [], []
    real_iter, real_scan, real_create = jobs.explain_iter, nodes.scan_from_volume_node, nodes.create_map_volume

    def watched(*args, **kwargs):
        engine_threads.append(threading.get_ident())
        return (yield from real_iter(*args, **kwargs))

    monkeypatch.setattr(jobs, "explain_iter", watched)
    monkeypatch.setattr(nodes, "scan_from_volume_node", lambda v: scene_threads.append(threading.get_ident()) or real_scan(v))
    monkeypatch.setattr(nodes, "create_map_volume", lambda *a, **k: scene_threads.append(threading.get_ident()) or real_create(*a, **k))
    ready(gui, model_file, "integrated_gradients")
    gui.widget.onApplyButton()
    run = gui.widget._run
    assert run is not None and run.running  # Apply returned while the work goes on
    gui.wait()
    assert engine_threads and all(t != main for t in engine_threads), "the engine ran on the main thread"
    assert len(scene_threads) == 2 and set(scene_threads) == {main}  # the scan read, the map written
    assert gui.pn.outputVolume is not None and not gui.dialogs.kinds("error")
    # progress reached the dialog, with the engine's messages; the checks are shown
    dialog = gui.dialogs.progress[-1]
    assert dialog.value == 100 and not dialog.visible
    assert "completeness" in gui.ui.checksLabel.text
    assert gui.ui.predictionLabel.text.startswith("predicted")


def test_cancel_stops_the_run_and_writes_nothing(gui510, model_file, monkeypatch):
    gui = gui510
    real_iter = jobs.explain_iter

    def until_cancelled(*args, **kwargs):
        # The real run's first event, then events until the run is cancelled (at most ~30 s): on an idle
        # machine the tiny model's real run can end before the cancel is pressed.
        run = real_iter(*args, **kwargs)
        yield next(run)
        run.close()
        for i in range(3000):
            time.sleep(0.01)
            yield Progress(1 + i, 10_000, "waiting for Cancel")

    monkeypatch.setattr(jobs, "explain_iter", until_cancelled)
    ready(gui, model_file, "occlusion")
    before = gui.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    gui.widget.onApplyButton()
    standins.run_timers(until=lambda: len(gui.dialogs.progress) == 2 and gui.dialogs.progress[1].value > 0)
    gui.dialogs.progress[1].cancel()
    gui.wait()
    assert any("cancelled" in text for text in gui.dialogs.kinds("status"))
    assert gui.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before and gui.pn.outputVolume is None
    assert not gui.dialogs.kinds("error") and gui.ui.applyButton.enabled


def test_an_error_in_the_worker_is_a_dialog_and_the_scene_is_unchanged(gui510, model_file):
    gui = gui510
    ready(gui, model_file)
    gui.pn.targetClass = "9"  # the model has 3 classes
    before = gui.scene.GetNumberOfNodes()
    gui.widget.onApplyButton()
    gui.wait()
    (error,) = gui.dialogs.kinds("error")
    assert error.startswith("Failed to") and "class" in error.lower()
    assert gui.scene.GetNumberOfNodes() == before and gui.ui.applyButton.enabled


def _model_2d(folder):
    path = folder / "slice_net.pt"
    torch.jit.script(make_net(2)).save(str(path))
    (folder / "slice_net.json").write_text(json.dumps({"name": "2D net", "spatial_dims": 2, "labels": ["a", "b", "c"]}))
    return str(path)


def test_a_2d_model_explains_the_slice_the_red_view_shows_on_its_geometry(gui510, tmp_path):
    import SimpleITK as sitk

    gui = gui510
    shape = (7, 9, 11)
    volume = ready(gui, _model_2d(tmp_path))
    reference = oblique_sitk(shape)  # the geometry the input volume was made from
    k = 4
    lps = reference.TransformContinuousIndexToPhysicalPoint((5.0, 4.0, float(k)))
    red = gui.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetLayoutName("Red")
    matrix = np.eye(4)
    matrix[:3, 3] = [-lps[0], -lps[1], lps[2]]  # the view's centre, in RAS
    red.GetSliceToRAS().DeepCopy(slicer.util.vtkMatrixFromArray(matrix))
    assert gui.widget.logic.sliceShown(volume) == reference.TransformPhysicalPointToIndex(lps)[2] == k
    gui.widget.onApplyButton()
    gui.wait()
    assert not gui.dialogs.kinds("error"), gui.dialogs.kinds("error")
    out = gui.pn.outputVolume
    values = slicer.util.arrayFromVolume(out)
    assert values.shape == shape
    assert np.flatnonzero(np.abs(values).reshape(shape[0], -1).sum(axis=1)).tolist() == [k]
    np.testing.assert_allclose(nodes.ijk_to_ras(out), nodes.ijk_to_ras(volume), atol=1e-9)
    assert nodes.get_provenance(out)["target"]["slice"] == k
    assert f"K={k}" in gui.ui.predictionLabel.text
    # the same slice explained directly by the engine, placed as SimpleITK places slice k
    from napari_xai.engine import explain
    from napari_xai.session.slices import slice_scan

    direct = explain(make_net(2), slice_scan(nodes.scan_from_volume_node(volume), k), "vanilla_gradient")
    np.testing.assert_allclose(values[k], direct.values, rtol=1e-5, atol=1e-7)
    # an explicit slice index overrides the view
    gui.pn.sliceIndex = 1
    gui.widget.onApplyButton()
    gui.wait()
    values = slicer.util.arrayFromVolume(gui.pn.outputVolume)
    assert np.flatnonzero(np.abs(values).reshape(shape[0], -1).sum(axis=1)).tolist() == [1]
    assert sitk  # imported for the reference geometry


def _weights_model(folder):
    """Weights + a JSON spec (the trust metrics' randomisation check copies the module, which TorchScript and export archives refuse)."""
    from safetensors.torch import save_file

    from napari_xai.engine import register_architecture
    from tests.conftest import SmallNet

    register_architecture("tests.conftest:SmallNet", SmallNet)
    save_file({k: v.contiguous() for k, v in make_net(3).state_dict().items()}, str(folder / "net.safetensors"))
    spec = {"labels": ["a", "b", "c"], "task": "classification", "weights": "net.safetensors",
            "architecture": {"factory": "tests.conftest:SmallNet", "kwargs": {"dim": 3, "n_classes": 3}}}
    (folder / "net.json").write_text(json.dumps(spec))
    return str(folder / "net.json")


def test_evaluate_runs_off_the_main_thread_and_fills_the_table(gui510, tmp_path, monkeypatch):
    from napari_xai.engine import metrics

    gui = gui510
    main = threading.get_ident()
    threads = []
    real = metrics.evaluate_maps_iter

    def watched(*args, **kwargs):
        threads.append(threading.get_ident())
        return (yield from real(*args, **kwargs))

    monkeypatch.setattr(metrics, "evaluate_maps_iter", watched)
    ready(gui, _weights_model(tmp_path))
    gui.widget.onApplyButton()
    gui.wait()
    assert gui.pn.outputVolume is not None
    gui.widget.onEvaluateButton()
    assert gui.widget._run is not None
    gui.wait()
    assert not gui.dialogs.kinds("error"), gui.dialogs.kinds("error")
    assert threads and all(t != main for t in threads)
    assert "<table" in gui.widget.trustTableLabel.text
    assert "metrics" in nodes.get_provenance(gui.pn.outputVolume)
    assert gui.widget.trustTableNode is not None
