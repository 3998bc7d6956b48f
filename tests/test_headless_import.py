"""The engine and the session layer import and work where napari, Qt, magicgui, Slicer and Captum cannot be imported (docs/architecture.md, Layers)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# captum is a test/benchmark reference only: the engine must run without it.
BLOCKED = ["captum", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy", "slicer", "qt", "ctk", "vtk"]

SCRIPT = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {BLOCKED!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{{name}} was importable")

    import numpy as np
    import napari_xai.engine as engine
    from napari_xai.engine.overlay import render_overlay
    from napari_xai.samples import load_sample_scan
    # the hosts' shared layer is host-neutral too (docs/architecture.md, Layers)
    from napari_xai.session import background, checks, controls, jobs, methods, models, run_state, slices  # noqa: F401
    import torch.nn as nn

    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    scan = load_sample_scan()
    for spec in engine.list_methods():
        if spec.name in ("vanilla_gradient", "grad_cam"):
            a = engine.explain(net, scan, spec.name)
            assert a.values.shape == scan.spatial_shape
    import tempfile, os
    out = tempfile.mkdtemp()
    a.save(os.path.join(out, "map.nrrd"))
    render_overlay(scan, a, os.path.join(out, "map.png"))
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not loaded, loaded
    print("engine ok without", len(BLOCKED), "host packages")
    """
)


def test_engine_works_with_host_packages_unimportable():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "engine ok without" in result.stdout
