"""The method catalogue as static data: readable without importing torch or the engine.

Hosts list the methods (a menu, a help page) before the engine is imported:
3D Slicer builds its method menu when the application starts, and importing
torch there slows every start and, on Windows, locks torch's DLLs so that the
PyTorch extension cannot reinstall it. ``method_catalogue.json`` beside this
file holds, for every registered method in catalogue order, what a menu needs
(name, title, family, sign, summary, reference). It is written from the
registry by ``python -m napari_xai.catalogue --write`` and checked against the
registry by ``tests/test_catalogue.py``.

This module imports only the standard library and must stay importable on
Python 3.9 (so that a host on an older Python can still say what it lacks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

CATALOGUE_FILE = Path(__file__).resolve().with_name("method_catalogue.json")
#: The fields of each entry, in the file's order.
FIELDS = ("name", "title", "family", "sign", "summary", "reference")


class MethodEntry(NamedTuple):
    """One method as listed in a menu (a subset of the registry's ``MethodSpec``)."""

    name: str
    title: str
    family: str
    sign: str
    summary: str
    reference: str

    @property
    def label(self) -> str:
        """Menu text: ``Title (family)``."""
        return f"{self.title} ({self.family})"


def read_catalogue(path: str | Path = CATALOGUE_FILE) -> tuple[MethodEntry, ...]:
    """Every method of the catalogue file, in catalogue order.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        The file is not a catalogue (bad JSON, missing fields, duplicate names).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    methods = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(methods, list) or not methods:
        raise ValueError(f"{path} has no 'methods' list")
    entries = []
    for item in methods:
        if not isinstance(item, dict) or any(not isinstance(item.get(f), str) for f in FIELDS):
            raise ValueError(f"{path}: an entry lacks one of {FIELDS}: {item!r}")
        entries.append(MethodEntry(*(item[f] for f in FIELDS)))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{path} lists a method twice: {names}")
    return tuple(entries)


def catalogue_from_registry() -> dict:
    """The catalogue file's content made from the engine's registry (imports the engine and torch)."""
    from napari_xai.engine import list_methods

    return {
        "about": "Written by `python -m napari_xai.catalogue --write` from the engine's registry; "
        "tests/test_catalogue.py checks that it matches.",
        "methods": [{f: getattr(spec, f) for f in FIELDS} for spec in list_methods()],
    }


def catalogue_text(content: dict) -> str:
    """The file's text for ``content`` (stable formatting, so the test compares text)."""
    return json.dumps(content, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``--write``: rewrite the file from the registry; ``--check``: exit 1 when it is stale."""
    args = sys.argv[1:] if argv is None else argv
    expected = catalogue_text(catalogue_from_registry())
    if args == ["--write"]:
        CATALOGUE_FILE.write_text(expected, encoding="utf-8")
        print(f"wrote {CATALOGUE_FILE}")
        return 0
    if args == ["--check"]:
        current = CATALOGUE_FILE.read_text(encoding="utf-8") if CATALOGUE_FILE.is_file() else ""
        if current != expected:
            print(f"{CATALOGUE_FILE} is stale: run python -m napari_xai.catalogue --write", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m napari_xai.catalogue --write | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
