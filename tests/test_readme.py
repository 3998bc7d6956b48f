"""The README's Python code blocks run as written, on the sample, with the README's arguments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    assert python_blocks(), "the README has no Python example"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # files the example writes land here
    code = python_blocks()[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= 20, f"the example prints {len(out.splitlines())} lines: keep README examples quiet"
    if "ig.nii.gz" in code:
        assert (tmp_path / "ig.nii.gz").is_file() and (tmp_path / "ig.nii.gz.json").is_file()
        assert "cancelling" in out and "p(lesion)" in out
