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


def test_the_memory_layout_reads_as_one_line():
    chosen = {"layout": "channels_last", "contiguous_s": 0.2, "channels_last_s": 0.125, "batch": 2, "max_score_difference": 1.9e-6, "gradients": "channels_last"}
    assert checks.format_checks({"layout": chosen}) == ["memory layout: channels-last copy, 0.62 x the time of the network's own, scores within 2e-06"]
    kept = {"layout": "contiguous", "channels_last": "gave other scores"}
    assert checks.format_checks({"layout": kept}) == ["memory layout: the network's own (channels-last gave other scores)"]
    dropped = {"layout": "channels_last", "gradients": "contiguous: channels-last gave other gradients"}
    assert checks.format_checks({"layout": dropped}) == ["memory layout: channels-last copy; gradient passes: contiguous: channels-last gave other gradients"]
