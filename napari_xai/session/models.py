"""Models as the hosts offer them: the bundled samples, one lock-guarded cache of loaded files, labels.

napari, Slicer, the trust dock, the command line and the cohort's workers
load a model file once and share it: the
cache is keyed by the resolved path and its modification time (an edited file
loads again), and a lock makes two worker threads asking for the same file at
once load it once and get the same :class:`~napari_xai.engine.LoadedModel`.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

import napari_xai.samples  # noqa: F401  (registers the sample architectures, so sample models load by path)
from napari_xai.engine import LoadedModel, ModelError, load_model


def sample_models(folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """Bundled sample models: every ``*.json`` spec in ``napari_xai/samples`` with a ``weights`` field whose file exists.

    Returns
    -------
    dict
        Display name (the spec's ``name``, else the file stem) -> spec path, sorted by name.
    """
    if folder is None:
        from napari_xai.samples import SAMPLES_DIR

        folder = SAMPLES_DIR
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not data.get("weights"):
            continue
        if not (path.parent / str(data["weights"])).is_file():
            continue
        found[str(data.get("name") or path.stem)] = path
    return dict(sorted(found.items()))


def default_sample_model(samples: dict[str, Path] | None = None) -> Path | None:
    """The sample classifier if it is there, else the first sample model, else None."""
    from napari_xai.samples import LESION_CLASSIFIER_SPEC

    samples = sample_models() if samples is None else samples
    for path in samples.values():
        if Path(path).resolve() == Path(LESION_CLASSIFIER_SPEC).resolve():
            return path
    return next(iter(samples.values()), None)


def model_label(model: Any) -> str:
    """A short name for a model choice."""
    if isinstance(model, (str, os.PathLike)):
        return Path(model).name
    if isinstance(model, LoadedModel):
        return model.name
    return f"<{type(model).__name__}>"


class ModelCache:
    """Loaded model files by resolved path and modification time, safe to share between threads.

    Parameters
    ----------
    size : int
        How many files to keep (the oldest is dropped first); a host
        showing one model at a time keeps one.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = max(1, int(size))
        self._models: dict[tuple[str, Any, int], LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike, choice: str = "") -> LoadedModel:
        """The model of the file at ``path``, loaded on first use (safe loading: nothing is unpickled).

        A folder (MONAI bundle, nnU-Net results) loads its model labelled
        ``choice`` (:func:`napari_xai.engine.models.folders.folder_choices`; default its first).

        Raises
        ------
        ModelError
            No file or model folder at ``path``, or it cannot be loaded.
        """
        p = Path(path)
        folder = str(path).strip() not in ("", ".") and p.is_dir()
        if str(path).strip() in ("", ".") or not (p.is_file() or folder):
            raise ModelError(
                f"No model file at {str(path) if str(path).strip() else '(empty)'}.",
                "Choose a TorchScript file, a torch.export archive (.pt2), or a weights file with its JSON spec.",
            )
        p = p.resolve()
        if folder:
            from napari_xai.engine.models.folders import choice_by_label

            return self._cached(p, choice, lambda: choice_by_label(p, choice).load())[0]
        return self._cached(p, "", lambda: load_model(p))[0]

    def load(self, path: str | os.PathLike, spec: Any = None, *, trust_pickle: bool = False, **options: Any) -> tuple[LoadedModel, bool]:
        """:func:`~napari_xai.engine.load_model` ``(path, spec, trust_pickle=..., **options)`` through the cache.

        For the command lines and the cohort's workers, which load with the
        options a user gave (``folds``, ``architectures``, ...): the same
        file with the same options loads once per process.

        Returns
        -------
        tuple
            The :class:`~napari_xai.engine.LoadedModel` and whether this call loaded it.

        Raises
        ------
        ModelError, UntrustedModelError
            As :func:`~napari_xai.engine.load_model` (a missing file gets its message).
        """
        p = Path(path)
        if not p.exists():
            return load_model(path, spec, trust_pickle=trust_pickle, **options), True  # raises, with the loader's message
        variant = ("load", _option_key(spec), trust_pickle, tuple(sorted((k, _option_key(v)) for k, v in options.items())))
        p = p.resolve()
        return self._cached(p, variant, lambda: load_model(p, spec, trust_pickle=trust_pickle, **options))

    def _cached(self, p: Path, variant: Any, load: Callable[[], LoadedModel]) -> tuple[LoadedModel, bool]:
        """The model under ``(p, variant)`` for ``p``'s current modification time, loading it with ``load`` when absent."""
        key = (str(p), variant, p.stat().st_mtime_ns)
        with self._lock:  # one load per file even when two workers ask at once
            if key in self._models:
                return self._models[key], False
            for old in [k for k in self._models if k[:2] == key[:2]]:
                del self._models[old]  # an older version of the same file
            while len(self._models) >= self.size:
                del self._models[next(iter(self._models))]
            self._models[key] = load()
            return self._models[key], True

    def clear(self) -> None:
        """Forget every loaded model."""
        with self._lock:
            self._models.clear()


def _option_key(value: Any) -> Any:
    """A hashable stand-in for a load option (paths as text, lists, dicts and specs as sorted JSON)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.dumps(value, sort_keys=True, default=repr)


#: The process's cache: the napari docks, the Slicer module, the job runner, the command line and
#: the cohort's workers share it.
MODELS = ModelCache()


def get_model(model: Any, cache: ModelCache | None = None) -> LoadedModel:
    """A :class:`LoadedModel` for a path (through ``cache``, default :data:`MODELS`) or an in-process model."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return (cache or MODELS).get(model)
    from napari_xai.engine.models.loading import as_loaded_model

    return as_loaded_model(model)


def takes_2d(model: Any) -> bool:
    """True when the model's spec says it takes 2D images (reads the spec only, never the weights)."""
    from napari_xai.engine import ModelSpec
    from napari_xai.engine.models.spec import sidecar_path

    try:
        if isinstance(model, LoadedModel):
            return model.spec.spatial_dims == 2
        if isinstance(model, (str, os.PathLike)):
            p = Path(model)
            spec_path = p if p.suffix.lower() == ".json" else sidecar_path(p)
            return spec_path.is_file() and ModelSpec.read(spec_path).spatial_dims == 2
    except Exception:  # unreadable spec: the run reports it
        return False
    return False


def model_labels(model: Any) -> list[str] | None:
    """The class names a model's JSON spec gives (read without loading weights), else None."""
    from napari_xai.engine import ModelSpec

    if isinstance(model, LoadedModel):
        return model.spec.labels
    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".json"):
        try:
            return ModelSpec.read(model).labels
        except Exception:
            return None
    return None
