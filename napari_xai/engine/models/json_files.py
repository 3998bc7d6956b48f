"""The JSON files a model comes with (specs, nnU-Net's plans and dataset, folder listings), read as one object or refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelError


def read_json_object(path: str | Path, name: str, fix: str, not_object_fix: str | None = None) -> dict[str, Any]:
    """The JSON object in ``path``.

    Parameters
    ----------
    path : str or Path
        The file.
    name : str
        How the messages name it (``Model spec net.json``, ``plans.json``).
    fix : str
        What to do when it cannot be read (missing, not text, not JSON).
    not_object_fix : str, optional
        What to do when it holds JSON that is not an object (default: ``fix``).

    Raises
    ------
    ModelError
        The file cannot be read as JSON, or holds no JSON object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{name} could not be read as JSON ({err}).", fix) from err
    if not isinstance(data, dict):
        raise ModelError(f"{name} is not a JSON object.", not_object_fix or fix)
    return data
