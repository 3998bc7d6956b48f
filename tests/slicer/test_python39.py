"""Item 1: on Slicer 5.8 (Python 3.9.10) the module must still load, so that it can say it needs Slicer 5.10.

What Slicer imports when it loads the module (the module file, SaliencyMapsLib, napari_xai.catalogue) is
parsed with Python 3.9's grammar here, and, where a Python 3.9 interpreter is installed, run under it: the
version check refuses before anything is installed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.slicer.conftest import MODULE_DIR, MODULE_FILE, REPO

LOADED_AT_START = [MODULE_FILE, *sorted((MODULE_DIR / "SaliencyMapsLib").glob("*.py")), REPO / "napari_xai" / "catalogue.py",
                   REPO / "napari_xai" / "__init__.py"]


@pytest.mark.parametrize("path", LOADED_AT_START, ids=lambda p: p.name)
def test_module_files_parse_with_python_39_grammar(path):
    source = path.read_text(encoding="utf-8")
    ast.parse(source, filename=str(path), feature_version=(3, 9))
    tree = ast.parse(source)
    # Annotations are evaluated at runtime (dataclasses, parameterNodeWrapper's get_type_hints) unless postponed:
    # then "X | Y" needs 3.10. Library files postpone them; the module file must not use PEP 604 unions.
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
                    for n in tree.body)
    if not postponed:
        annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.AnnAssign, ast.arg)) and n.annotation is not None]
        unions = [a for a in annotations if any(isinstance(x, ast.BinOp) and isinstance(x.op, ast.BitOr) for x in ast.walk(a))]
        assert not unions, f"{path.name}: PEP 604 unions in evaluated annotations fail on Python 3.9"


def _python39():
    for candidate in ("python3.9", str(Path.home() / ".pyenv" / "versions" / "3.9.18" / "bin" / "python3.9")):
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            try:
                out = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, timeout=30)
            except OSError:
                continue
            if out.returncode == 0 and out.stdout.strip() == "(3, 9)":
                return found
    return None


def test_under_python_39_the_dependency_check_refuses_before_installing():
    python = _python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(MODULE_DIR)!r}, {str(REPO)!r}]
        from SaliencyMapsLib import dependencies, params
        choices = params.method_choices()
        assert len(choices) > 20 and choices[0][0] == "occlusion", choices[:2]
        calls = []
        try:
            dependencies.ensure_dependencies(lambda t: calls.append("confirm"), calls.append, lambda: calls.append("torch"), (5, 8))
        except dependencies.InstallError as err:
            print("refused:", err.problem)
        assert calls == [], calls
        """
    )
    result = subprocess.run([python, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: SaliencyMaps needs Slicer 5.10 or later: its engine needs Python 3.10 or later" in result.stdout
    assert "embeds Python 3.9" in result.stdout
