"""``python -m napari_xai``: napari with the sample brain, the saliency widget docked and the sample model selected.

Press Run and an aligned saliency map appears over the scan. Options make it
scriptable: ``--run`` presses Run, ``--screenshot PATH`` saves the window
(widget and canvas) once done, ``--no-show`` closes instead of entering the
event loop.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

#: Printed instead of Qt's abort (signal 6) when there is no screen to open napari on.
NO_DISPLAY_MESSAGE = """python -m napari_xai: there is no display to open napari's window on (DISPLAY and WAYLAND_DISPLAY are unset).
Fix: run it on a desktop, or under a virtual screen:
    xvfb-run -a python -m napari_xai --run --screenshot shot.png --no-show
or explain headless, writing maps and figures to files:
    napari-xai-explain --sample --out demo_output"""


def display_missing(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """True on Linux/BSD when Qt would find no screen: no X11 or Wayland display and no headless Qt platform chosen."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform.startswith(("win", "darwin", "cygwin")):
        return False
    if env.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return False
    return not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def prefer_supported_qt(environ: dict[str, str] | None = None) -> None:
    """Pick PyQt6 (else PySide6) for qtpy when the user has not chosen: napari 0.9 deprecates its PyQt5 backend.

    qtpy tries PyQt5 first when several bindings are installed; ``QT_API``
    set by the user is left alone.
    """
    env = os.environ if environ is None else environ
    if env.get("QT_API"):
        return
    for module, api in (("PyQt6", "pyqt6"), ("PySide6", "pyside6")):
        if importlib.util.find_spec(module) is not None:
            env["QT_API"] = api
            return


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
    if display_missing():
        print(NO_DISPLAY_MESSAGE, file=sys.stderr)
        return 2
    prefer_supported_qt()
    import napari

    from napari_xai.session.models import default_sample_model

    viewer = napari.Viewer(title="napari-xai", show=not args.no_show or args.screenshot is not None)
    if args.path:
        viewer.open(args.path, plugin="napari-xai")
    else:
        viewer.open_sample("napari-xai", "sample_brain")
    _, widget = viewer.window.add_plugin_dock_widget("napari-xai", "Saliency maps (XAI)")
    model = args.model or default_sample_model()
    if model is not None:
        widget.set_model(model)
    else:
        widget.status.setText("No sample model found: open a model file under 'model'.")
    if args.method:
        widget.set_method(args.method)
    _fit_when_shown(viewer)
    if args.run or args.compare:
        from qtpy.QtWidgets import QApplication

        def announce(summary: str) -> bool:  # --run asked for the run: say what it costs instead of a modal question
            print(summary.replace("\n", " "))
            return True

        widget.confirm_long_run = announce

        if args.compare:
            widget.set_checked_compare_methods(args.compare)
            widget.run_compare()
        else:
            widget.run()
        deadline = time.monotonic() + args.timeout
        while widget.busy and time.monotonic() < deadline:  # the run, then the steps that show its result
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
        _settle()
        viewer.reset_view()  # fit the scan (or the compare grid) to the resized canvas; the slice stays at the peak
        _settle()
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(args.screenshot), canvas_only=False, flash=False)
        print("screenshot:", args.screenshot)
    if args.no_show:
        viewer.close()
        return 0
    napari.run()
    return 0


def _settle(rounds: int = 20) -> None:
    """Let Qt lay out and paint (the canvas gets its final size only once the window is shown)."""
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.02)


def _fit_when_shown(viewer) -> None:
    """Fit the scan to the canvas once the window (with the docked widget) has its size.

    The sample is opened before the widget is docked, and docking narrows the
    canvas: fitted at open time, the brain's sides touch or leave the canvas.
    """
    from qtpy.QtCore import QTimer

    _settle(5)
    viewer.reset_view()
    QTimer.singleShot(300, viewer.reset_view)  # once more after the window manager's first resize


if __name__ == "__main__":
    sys.exit(main())
