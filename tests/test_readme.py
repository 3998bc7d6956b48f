"""The README's Python code blocks run as written, in order, on the sample, with the README's arguments.

Blocks continue each other (a later block uses the ``model`` and ``scan`` of
an earlier one), so they run in one namespace, as a reader would type them.
A block that needs data the repository does not ship (a MONAI bundle, an
nnU-Net results folder) is preceded in the README by the comment
``<!-- readme-test: skip (...) -->`` and is only compiled.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = "<!-- readme-test: skip"


def python_blocks() -> list[tuple[str, bool]]:
    """``(code, skipped)`` for every fenced Python block."""
    text = README.read_text(encoding="utf-8")
    return [(m.group(2), bool(m.group(1))) for m in re.finditer(r"(<!-- readme-test: skip[^>]*-->\s*)?```python\n(.*?)```", text, flags=re.S)]


def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    namespace: dict = {"__name__": "__readme__"}
    for i, (code, skipped) in enumerate(blocks, start=1):
        compiled = compile(code, f"README.md python block {i}", "exec")
        if skipped:
            continue
        exec(compiled, namespace)
        out = capsys.readouterr().out
        assert len(out.splitlines()) <= 20, f"block {i} prints {len(out.splitlines())} lines: keep README examples quiet"
        if "ig.nii.gz" in code:
            assert (tmp_path / "ig.nii.gz").is_file() and (tmp_path / "ig.nii.gz.json").is_file()
            assert "cancelling" in out and "p(lesion)" in out
