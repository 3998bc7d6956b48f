"""``python -m napari_xai`` without a screen, and its choice of Qt binding."""

from __future__ import annotations

from napari_xai import __main__ as entry


def test_no_display_gives_a_clear_message_instead_of_a_qt_abort(monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert entry.main(["--no-show"]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "xvfb-run -a" in err and "napari-xai-explain --sample" in err


def test_display_detection():
    assert entry.display_missing({}, "linux")
    assert not entry.display_missing({"DISPLAY": ":99"}, "linux")
    assert not entry.display_missing({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not entry.display_missing({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not entry.display_missing({}, "darwin") and not entry.display_missing({}, "win32")


def test_a_supported_qt_binding_is_preferred():
    env: dict[str, str] = {}
    entry.prefer_supported_qt(env)
    assert env["QT_API"] in ("pyqt6", "pyside6")
    env = {"QT_API": "pyqt5"}
    entry.prefer_supported_qt(env)
    assert env == {"QT_API": "pyqt5"}  # the user's choice stands
