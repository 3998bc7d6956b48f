"""The static method catalogue (napari_xai/method_catalogue.json) matches the registry and needs no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from napari_xai import catalogue
from napari_xai.engine import list_methods


def test_catalogue_file_matches_the_registry():
    expected = catalogue.catalogue_text(catalogue.catalogue_from_registry())
    current = catalogue.CATALOGUE_FILE.read_text(encoding="utf-8")
    assert current == expected, "napari_xai/method_catalogue.json is stale: run python -m napari_xai.catalogue --write"
    entries = catalogue.read_catalogue()
    specs = list_methods()
    assert [e.name for e in entries] == [s.name for s in specs]
    for entry, spec in zip(entries, specs):
        assert (entry.title, entry.family, entry.sign, entry.summary, entry.reference) == (
            spec.title, spec.family, spec.sign, spec.summary, spec.reference)
        assert entry.label == f"{spec.title} ({spec.family})"
    assert catalogue.main(["--check"]) == 0


def test_reading_the_catalogue_imports_neither_torch_nor_the_engine():
    script = textwrap.dedent(
        """
        import sys
        from napari_xai import catalogue
        entries = catalogue.read_catalogue()
        assert entries and entries[0].name
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "scipy") or m.startswith("napari_xai.engine"))
        assert not loaded, loaded
        print(len(entries))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) == len(list_methods())


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"methods": []}), json.dumps({"methods": [{"name": "x"}]}),
     json.dumps({"methods": [dict.fromkeys(catalogue.FIELDS, "a")] * 2})],
)
def test_a_broken_catalogue_is_refused(tmp_path, content):
    path = tmp_path / "c.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError):
        catalogue.read_catalogue(path)
