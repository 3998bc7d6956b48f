"""The application-only steps: they need Slicer's layout manager (``slicer.app``).

Kept apart from :mod:`.nodes` so that everything else runs on plain MRML;
the module's self-test (``SaliencyMapsTest.runTest``) exercises these inside
the application.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import slicer


def app_available() -> bool:
    """True inside the Slicer application (a layout manager exists)."""
    app = getattr(slicer, "app", None)
    return app is not None and app.layoutManager() is not None


def fit_slice_views(volume_node: Any | None = None) -> None:
    """Fit every slice view to its background volume (and rotate to its axes if given)."""
    layout_manager = slicer.app.layoutManager()
    for name in layout_manager.sliceViewNames():
        widget = layout_manager.sliceWidget(name)
        if volume_node is not None:
            widget.mrmlSliceNode().RotateToVolumePlane(volume_node)
        widget.sliceLogic().FitSliceToAll()


def capture_slice_views(path: str | os.PathLike) -> Path:
    """Save a screenshot of the current view layout (all slice and 3D views) as PNG/JPG for a report."""
    import ScreenCapture  # Slicer's own module

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    slicer.util.forceRenderAllViews()
    slicer.app.processEvents()
    capture = ScreenCapture.ScreenCaptureLogic()
    capture.captureImageFromView(None, str(p))  # None: the whole layout
    return p
