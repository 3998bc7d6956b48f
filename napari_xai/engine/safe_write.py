"""Writing output files without losing data: never over the source, never over a file unasked, all or nothing."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

from .errors import ImageError


def check_writable(*paths: Path, overwrite: bool = False, source: str | os.PathLike | None = None) -> None:
    """Refuse, before anything is written, targets that would lose data or cannot be written.

    Parameters
    ----------
    *paths : Path
        Files about to be written.
    overwrite : bool
        Whether existing files may be replaced.
    source : path, optional
        The input the output was made from; never overwritten, even with ``overwrite``.

    Raises
    ------
    ImageError
        A target is the source, exists (without ``overwrite``), is a folder,
        or lies under a file or in a folder that cannot be written.
    """
    for p in paths:
        if source is not None and _same_file(p, Path(source)):
            raise ImageError(
                f"{p} is the image the map was made from; saving there would destroy the scan.",
                "Choose another file name or folder for the map.",
            )
        if p.is_dir():
            raise ImageError(f"Cannot write {p}: a folder of that name exists.", "Choose another file name, or move the folder.")
        if p.exists() and not overwrite:
            raise ImageError(
                f"{p} exists already.",
                "Choose another name or folder, or pass overwrite=True (CLI: --overwrite) to replace it.",
            )
        ancestor = p.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if ancestor.exists() and not ancestor.is_dir():
            raise ImageError(
                f"Cannot write {p}: {ancestor} is a file, not a folder.", "Choose an output folder that is a folder."
            )
        if ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
            raise ImageError(f"Cannot write {p}: the folder {ancestor} is read-only.", "Choose a folder you can write to.")


@contextlib.contextmanager
def staged_files(*targets: Path) -> Iterator[tuple[Path, ...]]:
    """Temporary paths beside ``targets`` (same names, so the same formats) that become the targets when the block succeeds.

    If the block or a move fails, the temporary files are removed and no
    target is touched, and an OS error becomes an :class:`ImageError`.
    """
    tag = uuid.uuid4().hex[:8]
    temps = tuple(t.parent / f".{tag}.partial.{t.name}" for t in targets)
    try:
        targets[0].parent.mkdir(parents=True, exist_ok=True)
        for t in targets[1:]:
            t.parent.mkdir(parents=True, exist_ok=True)
        yield temps
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    except (OSError, RuntimeError) as err:  # SimpleITK raises RuntimeError for files it cannot write
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ImageError(
            f"Could not write {targets[0]} ({first}); nothing was written.",
            "Check that the folder exists, is writable and has free space, or choose another folder.",
        ) from err
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()
