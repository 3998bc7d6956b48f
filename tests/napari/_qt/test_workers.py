"""Closing napari (or removing the dock) while the widget's workers run must not abort the process (issue 8, item 12).

Each case runs in a fresh interpreter: the failure being guarded against is
Qt aborting the whole process when a worker emits into a deleted object, which
no in-process assertion could catch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication

    case = sys.argv[1]
    viewer = napari.Viewer(show=False)
    viewer.add_image(np.random.default_rng(3).normal(size=(8, 10, 12)).astype(np.float32), name="scan")
    _, widget = viewer.window.add_plugin_dock_widget("napari-xai", "Saliency maps (XAI)")
    widget.set_method("occlusion")
    widget.run()  # beside the prediction the widget started for the new image
    assert widget.busy
    if case == "remove dock":
        viewer.window.remove_dock_widget(widget)
        assert not widget.busy
    viewer.close()
    assert not widget.busy
    QApplication.processEvents()
    print("closed cleanly", flush=True)
    """
)


@pytest.mark.parametrize("case", ["close viewer at once", "remove dock"])
def test_closing_while_a_worker_runs_does_not_abort(tmp_path, case):
    script = tmp_path / "close.py"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    env.pop("NAPARI_XAI_NO_THREADS", None)
    proc = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "closed cleanly" in proc.stdout
    assert "has been deleted" not in output and "Aborted" not in output
