"""The trust dock's decisions without Qt: which maps, which model, which scan."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from napari_xai._napari import _trust
from napari_xai._napari._layers import PROVENANCE_KEY
from napari_xai.engine import XAIError


def _layer(source: str) -> SimpleNamespace:
    return SimpleNamespace(name="map", metadata={PROVENANCE_KEY: {"model": {"source": source}}})


def test_the_model_comes_from_the_provenance_only_when_it_is_a_file_that_exists(tmp_path):
    model = tmp_path / "net.pt"
    model.write_bytes(b"x")
    assert _trust.model_from_provenance(_layer(str(model))) == str(model)
    assert _trust.model_from_provenance(_layer(str(tmp_path / "gone.pt"))) is None
    assert _trust.model_from_provenance(_layer("<in-process Sequential>")) is None


def test_a_job_needs_a_map_and_a_model_it_can_open(tmp_path):
    with pytest.raises(XAIError, match="No saliency map is selected"):
        _trust.make_job(SimpleNamespace(layers=[]), [], None)
    with pytest.raises(XAIError, match="not a file this dock can open"):
        _trust.make_job(SimpleNamespace(layers=[]), [_layer("<in-process Sequential>")], None)
