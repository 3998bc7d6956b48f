"""Overlay figures and map display: clipping shown, readable ticks, equal panels at physical aspect, print resolution, captions."""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest
from captum.attr._utils.visualization import _cumulative_sum_threshold
from matplotlib.image import imread

from napari_xai.engine import Attribution, Geometry, ScanImage, explain
from napari_xai.engine.display import clipped_ends, default_limit, display_settings, display_sign
from napari_xai.engine.overlay import NOT_CLINICAL, caption_lines, is_sample_model, overlay_figure, render_overlay, tick_scale

from tests.conftest import make_net

#: Anisotropic voxels (x 1 mm, y 2 mm, z 4 mm), axis-aligned.
ANISO = Geometry((0.0, 0.0, 0.0), (1.0, 2.0, 4.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def _attribution(values: np.ndarray, sign: str = "signed", **extra) -> Attribution:
    fields = dict(
        values=values.astype(np.float32),
        geometry=ANISO,
        method="vanilla_gradient",
        method_title="Vanilla Gradient",
        family="backpropagation",
        sign=sign,
        target={"task": "classification", "class_index": 1, "label": "lesion", "score": 17.8, "probability": 0.93, "description": "class 1 'lesion'"},
        params={"absolute": True},
        model={"name": "test net", "source": "<SmallNet>"},
        image_name="case_042",
        package_version="0.1.0",
    )
    fields.update(extra)
    return Attribution(**fields)


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    scan = ScanImage(rng.normal(size=(12, 30, 60)).astype(np.float32), ANISO, None, "case_042")
    values = np.zeros((12, 30, 60), dtype=np.float32)
    values[3:9, 8:22, 15:45] = rng.exponential(size=(6, 14, 30)) ** 2 * 1e-5  # heavy-tailed: the strongest voxels are clipped
    return scan, values


def test_default_limit_is_captums_cumulative_sum_threshold():
    rng = np.random.default_rng(1)
    sparse = np.zeros((20, 20, 20))
    sparse[8:11, 8:11, 8:11] = rng.random((3, 3, 3))
    for v in (rng.normal(size=(9, 9, 9)), sparse, rng.exponential(size=1000) ** 3):
        assert default_limit(v) == pytest.approx(float(_cumulative_sum_threshold(np.abs(v), 98.0)), rel=1e-6)
    assert default_limit(np.zeros(5)) == 1.0


def test_display_follows_the_values_sign_where_the_declared_sign_allows_both():
    v = np.abs(np.random.default_rng(2).normal(size=(6, 6)))
    assert display_sign(v, "signed") == "non-negative"
    assert display_settings(v, "signed").colormap == "inferno" and display_settings(v, "signed").contrast_limits[0] == 0
    assert display_sign(v - 0.5, "signed") == "signed" and display_settings(v - 0.5, "signed").colormap == "bwr"
    assert display_sign(np.zeros((3, 3)), "signed") == "signed"
    assert display_sign(v, "non-negative") == "non-negative"


def test_user_limits_and_clipped_ends():
    v = np.linspace(-2, 3, 50)
    assert display_settings(v, "signed", limits=(-1, 1)).contrast_limits == (-1.0, 1.0)
    assert clipped_ends(v, (-1, 1)) == "both" and clipped_ends(v, (-2, 1)) == "max" and clipped_ends(v, (-3, 3)) == "neither"
    with pytest.raises(ValueError):
        display_settings(v, "signed", limits=(1, 1))


def test_figure_has_equal_square_panels_a_clipping_colour_bar_and_plain_ticks(volume):
    scan, values = volume
    a = _attribution(values, "non-negative")
    fig = overlay_figure(scan, a, dpi=100)
    *panels, cax = fig.axes
    assert len(panels) == 3
    sizes = {tuple(np.round(ax.get_position().size * fig.get_size_inches(), 3)) for ax in panels}
    assert len(sizes) == 1 and len(set(next(iter(sizes)))) == 1, sizes  # equal squares
    # every panel shows the same millimetre square (one scale bar reads for all)
    spans = {(round(abs(np.diff(ax.get_xlim())[0]), 6), round(abs(np.diff(ax.get_ylim())[0]), 6)) for ax in panels}
    assert spans == {(60.0, 60.0)}  # the largest extent: x, 60 voxels of 1 mm
    # physical aspect: the axial slice (30 x 60 voxels of 2 x 1 mm) is 60 mm wide and 60 mm tall
    axial = panels[0].images[0]
    assert tuple(axial.get_extent()) == (0.0, 60.0, 60.0, 0.0)
    coronal = panels[1].images[0]
    assert tuple(coronal.get_extent()) == (0.0, 60.0, 48.0, 0.0)  # z: 12 voxels of 4 mm
    texts = [t.get_text() for ax in panels for t in ax.texts]
    assert any(t.endswith(" mm") for t in texts), texts  # scale bar
    bar = next(c for c in fig.axes[-1:])
    lo, hi = display_settings(values, "non-negative").contrast_limits
    assert hi < values.max()
    assert "arrows on the colour bar" in fig.texts[-1].get_text() or "arrows on the colour bar" in " ".join(t.get_text() for t in fig.texts)
    assert bar._colorbar.extend == "max"  # the arrow: values above the limit are clipped
    e = tick_scale((lo, hi))
    assert e != 0 and f"10^{{{e}}}" in bar.get_ylabel()
    labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert labels and all("e" not in s and len(s) <= 5 for s in labels), labels
    assert bar.yaxis.get_offset_text().get_text() == ""


def test_figure_caption_score_scan_date_range_and_clinical_warning(volume):
    scan, values = volume
    a = _attribution(values)
    lines = caption_lines(a, (-1e-5, 1e-5), date=datetime.date(2026, 12, 1))
    text = "\n".join(lines)
    assert "p(lesion) = 0.930" in text and "raw score (logit) 17.8" in text
    assert "case_042" in text and "2026-12-01" in text
    assert f"Map range 0 to {values.max():.3g}" in text and "clipped" in text
    assert NOT_CLINICAL not in text
    from napari_xai.samples import LESION_CLASSIFIER_SPEC

    sample = dataclasses.replace(a, model={"name": "sample", "source": str(LESION_CLASSIFIER_SPEC)})
    assert is_sample_model(sample.model) and NOT_CLINICAL in caption_lines(sample, (-1, 1))


def test_figure_prints_at_300_dpi_and_outlines_the_mask(volume, tmp_path):
    scan, values = volume
    mask = np.zeros(values.shape, dtype=bool)
    mask[5:8, 13:17, 27:33] = True
    a = _attribution(values, "non-negative")
    fig = overlay_figure(scan, a, mask=mask, mask_label="lesion")
    assert fig.dpi == 300
    assert any(len(ax.collections) for ax in fig.axes[:3])  # the contour of the mask
    assert "Outline: lesion" in " ".join(t.get_text() for t in fig.texts)
    p = render_overlay(scan, a, tmp_path / "fig.png", mask=mask, limits=(0, 5e-4))
    img = imread(p)
    assert img.shape[1] >= 2400  # ~9 inches wide at 300 dpi
    with pytest.raises(ValueError):
        render_overlay(scan, a, tmp_path / "bad.png", mask=mask[:-1])


def test_montage_and_2d_figures(tmp_path):
    net = make_net(2)
    scan2d = ScanImage(np.random.default_rng(4).normal(size=(16, 20)).astype(np.float32), Geometry((0.0, 0.0), (0.5, 1.5), (1.0, 0.0, 0.0, 1.0)), None, "slice")
    a = explain(net, scan2d, "vanilla_gradient")
    fig = overlay_figure(scan2d, a, dpi=72)
    assert len(fig.axes) == 2 and tuple(fig.axes[0].images[0].get_extent()) == (0.0, 10.0, 24.0, 0.0)
    vol = np.random.default_rng(5).normal(size=(12, 30, 60)).astype(np.float32)
    v = np.random.default_rng(6).normal(size=vol.shape).astype(np.float32)
    fig = overlay_figure(ScanImage(vol, ANISO, None, "v"), _attribution(v), layout="montage", slices=9, dpi=72)
    panels = fig.axes[:-1]
    assert len(panels) == 9
    assert len({tuple(np.round(ax.get_position().size * fig.get_size_inches(), 3)) for ax in panels}) == 1
