"""Hostile model files: crafted torch.export archives, concurrent loads, and specs that name modules.

Every hostile file is built here from a real ``torch.export.save`` output, and
every payload touches a marker file, so "refused" is proved by the marker
never appearing (and each payload is shown to run when unpickled or
evaluated directly, so the tests could fail).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_xai.engine import ModelError, UntrustedModelError, load_model, register_architecture
from napari_xai.engine.models.architectures import class_path

from tests.conftest import SmallNet, make_net


class Payload:
    """Unpickling this touches ``marker``: the planted payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def benign_pt2(tmp_path_factory) -> Path:
    """A real torch.export archive of a small 2D classifier with a dynamic batch."""
    path = tmp_path_factory.mktemp("pt2") / "benign.pt2"
    net = make_net(2)
    x = torch.randn(2, 1, 8, 8)
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(path))
    return path


def rebuild(src: Path, dst: Path, edit=None, add: dict[str, bytes] | None = None) -> Path:
    """Copy a .pt2 archive entry by entry, letting ``edit(name, data)`` rewrite entries and ``add`` new ones."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            name = info.filename.split("/", 1)[1]
            data = zin.read(info.filename)
            zout.writestr(info.filename, edit(name, data) if edit else data)
        for name, data in (add or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def edit_json(entry: str, change):
    def edit(name: str, data: bytes) -> bytes:
        if name != entry:
            return data
        obj = json.loads(data)
        change(obj)
        return json.dumps(obj).encode()

    return edit


def _opaque_constant(marker):
    def change(cfg):
        cfg["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}

    return edit_json("data/constants/model_constants_config.json", change), {"data/constants/opaque_obj_0": pickle.dumps(Payload(marker))}


def _custom_object_constant(marker):
    def change(cfg):
        cfg["config"]["evil"] = {"path_name": "custom_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}

    return edit_json("data/constants/model_constants_config.json", change), {"data/constants/custom_obj_0": pickle.dumps(Payload(marker))}


def _pickled_tensor_constant(marker):
    def change(cfg):
        cfg["config"]["evil"] = {"path_name": "tensor_0", "is_param": False, "use_pickle": True, "tensor_meta": None}

    return edit_json("data/constants/model_constants_config.json", change), {"data/constants/tensor_0": pickle.dumps(Payload(marker))}


def _pickled_weight(marker):
    return pickled_weight_edit(), {}


def pickled_weight_edit():
    """Mark the first weight use_pickle; its bytes are replaced in :func:`hostile_weight_archive`."""

    def change(cfg):
        first = next(iter(cfg["config"].values()))
        first["use_pickle"] = True

    return edit_json("data/weights/model_weights_config.json", change)


def _sample_inputs(marker):
    payload = pickle.dumps(((Payload(marker),), {}))
    return (lambda name, data: payload if name == "data/sample_inputs/model.pt" else data), {}


def _sympy_expression(marker):
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def edit(name, data):
        if name != "models/model.json":
            return data
        text = data.decode()
        start = text.index('"expr_str": "') + len('"expr_str": "')
        end = text.index('"', start)
        return (text[:start] + code.replace('"', '\\"') + text[end:]).encode()

    return edit, {}


def _node_target(marker):
    def change(program):
        node = program["graph_module"]["graph"]["nodes"][0]
        node["target"] = "torch.os.mkdir"
        node["inputs"] = [{"name": "path", "arg": {"as_string": str(marker)}, "kind": 1}]

    return edit_json("models/model.json", change), {}


def _aoti_library(marker):
    return None, {"data/aotinductor/model/model.so": b"\x7fELF not really"}


def _legacy_weights(marker):
    return None, {"data/weights/model.pt": pickle.dumps(Payload(marker))}


HOSTILE = {
    "opaque_obj constant (plain pickle.loads)": _opaque_constant,
    "custom_obj constant": _custom_object_constant,
    "use_pickle tensor constant": _pickled_tensor_constant,
    "use_pickle weight": _pickled_weight,
    "sample inputs with a payload": _sample_inputs,
    "sympy expression": _sympy_expression,
    "graph node calling torch.os.mkdir": _node_target,
    "AOTInductor library": _aoti_library,
    "legacy pickled weights entry": _legacy_weights,
}


def hostile_weight_archive(benign: Path, dst: Path, marker: Path) -> Path:
    """The benign archive with its first weight stored as a use_pickle entry whose bytes are the payload."""
    with zipfile.ZipFile(benign) as zin:
        cfg = json.loads(zin.read(f"{zin.namelist()[0].split('/')[0]}/data/weights/model_weights_config.json"))
    first = next(iter(cfg["config"].values()))["path_name"]
    edit_cfg = pickled_weight_edit()

    def edit(name, data):
        if name == f"data/weights/{first}":
            return pickle.dumps(Payload(marker))
        return edit_cfg(name, data)

    return rebuild(benign, dst, edit)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_crafted_export_archive_is_refused_before_torch_reads_it(benign_pt2, tmp_path, case):
    marker = tmp_path / "payload_ran"
    edit, add = HOSTILE[case](marker)
    if case == "use_pickle weight":
        path = hostile_weight_archive(benign_pt2, tmp_path / "evil.pt2", marker)
    else:
        path = rebuild(benign_pt2, tmp_path / "evil.pt2", edit, add)
    with pytest.raises(UntrustedModelError, match="refused it before torch read it") as info:
        model = load_model(path)
        model.module(torch.randn(1, 1, 8, 8))  # a graph payload would run here
    assert "trust_pickle=True" in str(info.value)
    assert not marker.exists()


def test_the_planted_payloads_are_live(tmp_path):
    """The payloads the tests plant do run when unpickled or evaluated, so the refusals above are meaningful."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker.unlink()
    import sympy

    sympy.sympify(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    assert marker.exists()


def test_the_benign_archive_still_loads_and_matches_the_module(benign_pt2):
    model = load_model(benign_pt2)
    x = torch.randn(3, 1, 8, 8)
    np.testing.assert_allclose(model.module(x).detach().numpy(), make_net(2)(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_export_load_sets_no_process_wide_switch(benign_pt2, monkeypatch):
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model(benign_pt2)
    assert seen and set(seen) == {None}


def test_concurrent_loads_keep_benign_working_and_hostile_refused(benign_pt2, tmp_path):
    """Two benign loaders beside a hostile one, started together: benign loads all succeed, the hostile one is always refused."""
    marker = tmp_path / "payload_ran"
    hostile = hostile_weight_archive(benign_pt2, tmp_path / "hostile.pt2", marker)
    rounds = 6
    start = threading.Barrier(3)
    results: dict[str, list] = {"benign": [], "hostile": []}
    x = torch.randn(2, 1, 8, 8)
    reference = make_net(2)(x).detach().numpy()

    def benign():
        start.wait()
        for _ in range(rounds):
            try:
                out = load_model(benign_pt2).module(x).detach().numpy()
                results["benign"].append(np.allclose(out, reference, rtol=1e-5, atol=1e-6))
            except Exception as err:  # noqa: BLE001 - the test reports what went wrong
                results["benign"].append(f"{type(err).__name__}: {err}")

    def evil():
        start.wait()
        for _ in range(rounds * 2):
            try:
                load_model(hostile)
                results["hostile"].append("loaded")
            except UntrustedModelError:
                results["hostile"].append("refused")
            except Exception as err:  # noqa: BLE001
                results["hostile"].append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=benign), threading.Thread(target=benign), threading.Thread(target=evil)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["benign"] == [True] * (2 * rounds)
    assert results["hostile"] == ["refused"] * (2 * rounds)
    assert not marker.exists()


class AllowedNet(SmallNet):
    """A class no one registered: loadable only through the caller's allowlist."""


EVIL_MODULE = '''
from pathlib import Path
import torch.nn as nn
Path({marker!r}).touch()

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x)
'''


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """``evil_arch.py`` on sys.path and in the working directory; importing it touches the marker."""
    marker = tmp_path / "imported"
    (tmp_path / "evil_arch.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "evil_arch", raising=False)
    torch.save({"lin.weight": torch.eye(2), "lin.bias": torch.zeros(2)}, tmp_path / "w.pt")
    yield marker
    sys.modules.pop("evil_arch", None)


@pytest.mark.parametrize("factory", ["evil_arch:Net", "this:Foo", "os:system"])
def test_spec_never_imports_the_module_it_names(evil_module, tmp_path, factory):
    (tmp_path / "w.json").write_text(json.dumps({"architecture": {"factory": factory}}))
    before = set(sys.modules)
    with pytest.raises(ModelError, match="does not import a module because a spec names it") as info:
        load_model(tmp_path / "w.pt")
    assert "architectures=" in info.value.fix
    assert not evil_module.exists()
    assert not ({"evil_arch", "this"} & (set(sys.modules) - before))


def test_allowlist_and_registration_are_the_ways_to_name_other_architectures(evil_module, tmp_path):
    (tmp_path / "w.json").write_text(json.dumps({"architecture": {"factory": "evil_arch:Net"}}))
    model = load_model(tmp_path / "w.pt", architectures=["evil_arch:Net"])  # the caller chose to import it
    assert evil_module.exists() and type(model.module).__name__ == "Net"
    (tmp_path / "s.json").write_text(json.dumps({"architecture": {"factory": class_path(AllowedNet), "kwargs": {"dim": 2}}}))
    torch.save(make_net(2).state_dict(), tmp_path / "s.pt")
    assert isinstance(load_model(tmp_path / "s.pt", architectures=[AllowedNet]).module, AllowedNet)
    with pytest.raises(ModelError, match="not registered"):
        load_model(tmp_path / "s.pt")
    register_architecture("tests.small_net_for_registration", SmallNet)
    (tmp_path / "s.json").write_text(json.dumps({"architecture": {"factory": "tests.small_net_for_registration", "kwargs": {"dim": 2}}}))
    assert isinstance(load_model(tmp_path / "s.pt").module, SmallNet)


def test_cli_allows_an_architecture_only_when_told(evil_module, tmp_path, capsys):
    from napari_xai.cli import main

    (tmp_path / "w.json").write_text(json.dumps({"architecture": {"factory": "evil_arch:Net"}}))
    assert main(["--model", str(tmp_path / "w.pt"), "--image", str(tmp_path / "missing.nii.gz")]) == 2
    assert "--architecture evil_arch:Net" in capsys.readouterr().err
    assert not evil_module.exists()
