"""Sample models and the lock-guarded model cache."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from napari_xai.engine import ModelError
from napari_xai.session import models

from tests.conftest import make_net


def test_sample_models_come_from_the_folder(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"x")
    (tmp_path / "a.json").write_text(json.dumps({"name": "model A", "weights": "a.safetensors"}))
    (tmp_path / "b.json").write_text(json.dumps({"name": "model B", "weights": "missing.safetensors"}))
    (tmp_path / "c.json").write_text(json.dumps({"name": "not a model"}))
    (tmp_path / "d.json").write_text("{broken")
    assert models.sample_models(tmp_path) == {"model A": tmp_path / "a.json"}
    from napari_xai.samples import SAMPLES_DIR

    for path in models.sample_models().values():
        assert path.parent == SAMPLES_DIR


def test_model_cache_loads_a_file_once_for_two_threads_and_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "net.pt"
    torch.jit.script(make_net(3)).save(str(path))
    cache = models.ModelCache()
    loads = []
    real = models.load_model

    def counted(p):
        loads.append(p)
        return real(p)

    monkeypatch.setattr(models, "load_model", counted)
    got = []
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        got.append(cache.get(path))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and got[0] is got[1]
    import os

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert cache.get(path) is not got[0] and len(loads) == 2
    with pytest.raises(ModelError, match="No model file"):
        cache.get(tmp_path / "missing.pt")


def test_model_cache_loads_with_options_once_and_says_whether_it_loaded(tmp_path, monkeypatch):
    path = tmp_path / "net.pt"
    torch.jit.script(make_net(3)).save(str(path))
    cache = models.ModelCache()
    calls = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    first, loaded = cache.load(path)
    again, loaded_again = cache.load(str(path))
    assert loaded and not loaded_again and again is first and len(calls) == 1
    other, loaded_other = cache.load(path, trust_pickle=True)  # other options: loaded on its own
    assert loaded_other and other is not first and len(calls) == 2
    with pytest.raises(ModelError):
        cache.load(tmp_path / "missing.pt")  # the loader's own message
