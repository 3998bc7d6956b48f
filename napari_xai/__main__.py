"""``python -m napari_xai``: napari with the sample brain, the saliency widget docked and the sample model selected.

Press Run and an aligned saliency map appears over the scan. Options make it
scriptable: ``--run`` presses Run, ``--screenshot PATH`` saves the window
(widget and canvas) once done, ``--no-show`` closes instead of entering the
event loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m napari_xai", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="A scan to open instead of the sample brain (NIfTI, NRRD, MHA, DICOM folder).")
    parser.add_argument("--model", help="A model file or JSON spec to select instead of the sample model.")
    parser.add_argument("--method", help="The method to select (registry name, e.g. integrated_gradients).")
    parser.add_argument("--run", action="store_true", help="Press Run once the viewer is ready.")
    parser.add_argument("--compare", nargs="+", metavar="METHOD", help="Run these methods side by side (grid).")
    parser.add_argument("--screenshot", type=Path, help="Save a screenshot of the window (after --run) to this PNG.")
    parser.add_argument("--figure", type=Path, help="Export the overlay figure of the result (after --run) to this PNG.")
    parser.add_argument("--no-show", action="store_true", help="Do not enter the event loop (scripts, tests).")
    parser.add_argument("--timeout", type=float, default=300.0, help="Seconds to wait for --run (default 300).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import napari

    if args.screenshot is not None:  # keep napari's one-off PyQt5 toast out of documentation screenshots
        try:
            import napari._qt.qt_main_window as _qmw

            _qmw.SHOW_QT_WARNING = False
        except (ImportError, AttributeError):
            pass

    from napari_xai._napari import _logic

    viewer = napari.Viewer(title="napari-xai", show=not args.no_show or args.screenshot is not None)
    if args.path:
        viewer.open(args.path, plugin="napari-xai")
    else:
        viewer.open_sample("napari-xai", "sample_brain")
    _, widget = viewer.window.add_plugin_dock_widget("napari-xai", "Saliency maps (XAI)")
    model = args.model or _logic.default_sample_model()
    if model is not None:
        widget.set_model(model)
    else:
        widget.status.setText("No sample model found: open a model file under 'model'.")
    if args.method:
        widget.set_method(args.method)
    if args.run or args.compare:
        from qtpy.QtWidgets import QApplication

        if args.compare:
            widget.set_checked_compare_methods(args.compare)
            widget.run_compare()
        else:
            widget.run()
        deadline = time.monotonic() + args.timeout
        while widget.is_running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.02)
        for _ in range(20):
            QApplication.processEvents()
            time.sleep(0.01)
        print(widget.status.text())
        if args.figure and widget.last_results:
            print("figure:", widget.export(args.figure, "orthogonal"))
    if args.screenshot:
        viewer.window._qt_window.resize(1500, 950)
        from qtpy.QtWidgets import QApplication

        for _ in range(20):
            QApplication.processEvents()
            time.sleep(0.02)
        viewer.reset_view()
        for _ in range(10):
            QApplication.processEvents()
            time.sleep(0.02)
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(args.screenshot), canvas_only=False, flash=False)
        print("screenshot:", args.screenshot)
    if args.no_show:
        viewer.close()
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
