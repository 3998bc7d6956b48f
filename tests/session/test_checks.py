"""A map's checks as text."""

from __future__ import annotations

from napari_xai.session import checks


def test_format_checks_generic_and_known():
    lines = checks.format_checks(
        {"completeness": {"attribution_sum": 1.0, "score_difference": 1.01, "relative_delta": 0.0099}, "model_grid_is_scan_grid": True, "layer": "features.3", "deletion_auc": 0.1234567}
    )
    assert lines[0].startswith("completeness") and "ok" in lines[0]
    assert "layer: features.3" in lines and "deletion auc: 0.1235" in lines
    assert not any("model grid" in line for line in lines)


def test_completeness_note_is_the_relative_error_or_nothing():
    assert checks.completeness_note({"completeness": {"relative_delta": 0.0099}}) == "completeness error 0.99%"
    assert checks.completeness_note({"layer": "features.3"}) == ""
