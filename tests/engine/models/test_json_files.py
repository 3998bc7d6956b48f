"""The JSON files a model comes with: one object, or a ModelError that names the file and the fix."""

from __future__ import annotations

import pytest

from napari_xai.engine import ModelError
from napari_xai.engine.models.json_files import read_json_object


def test_a_json_object_is_read_and_anything_else_is_refused_with_the_fix(tmp_path):
    good = tmp_path / "plans.json"
    good.write_text('{"a": 1}', encoding="utf-8")
    assert read_json_object(good, "plans.json", "Give the folder nnU-Net wrote.") == {"a": 1}
    for name, content in (("list.json", b"[1, 2]"), ("bad.json", b"{not json"), ("binary.json", b"\xff\xfe\x00")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError, match=name) as info:
            read_json_object(tmp_path / name, name, "Give the folder nnU-Net wrote.", "Write an object.")
        assert ("Write an object." if name == "list.json" else "Give the folder nnU-Net wrote.") in str(info.value)
    with pytest.raises(ModelError, match="could not be read as JSON"):
        read_json_object(tmp_path / "missing.json", "missing.json", "Give the file.")
