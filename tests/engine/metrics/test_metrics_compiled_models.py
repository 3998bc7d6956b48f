"""Every trust metric on the sample models saved as TorchScript and as torch.export archives (.pt2).

The files are built here from the shipped sample models: the 2D lesion
classifier (traced and scripted TorchScript, and a ``.pt2``) gets every
metric and must give the eager model's numbers; the 3D lesion classifier and
the shortcut model as TorchScript get the model-randomisation check
(cascading and independent) on copies, and the loaded model's parameters and
buffers must be bit-identical afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xai.engine import evaluate, explain, load_model
from napari_xai.engine.metrics.randomisation import cascade_checkpoints, independent_layers, model_copy, randomised_copy, weight_layers
from napari_xai.samples import (
    load_lesion_classifier,
    load_lesion_classifier_2d,
    load_sample_lesion_mask_axial,
    load_sample_scan,
    load_sample_scan_axial,
    load_shortcut_classifier,
)

SETTINGS = {"steps": 4, "sanity_steps": 1}


def compiled(loaded, kind: str, folder):
    """The sample model saved as TorchScript (``trace`` / ``script``) or exported (``export``), loaded back with its spec."""
    net = loaded.module.eval()
    x = torch.zeros((2, loaded.spec.in_channels, *loaded.spec.input_size))
    if kind == "trace":
        path = folder / "model.ts"
        torch.jit.trace(net, x[:1]).save(str(path))
    elif kind == "script":
        path = folder / "model.ts"
        torch.jit.script(net).save(str(path))
    else:
        path = folder / "model.pt2"
        torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)), str(path))
    spec = {k: v for k, v in loaded.spec.to_dict().items() if k not in ("architecture", "weights")}
    return load_model(path, spec=spec)


def snapshot(module: torch.nn.Module) -> dict[str, bytes]:
    return {k: v.detach().cpu().contiguous().numpy().tobytes() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def eager_2d():
    model, scan = load_lesion_classifier_2d(), load_sample_scan_axial()
    mask = load_sample_lesion_mask_axial().array > 0
    a = explain(model, scan, "vanilla_gradient", target="lesion")
    return model, scan, mask, evaluate(model, scan, a, mask=mask, **SETTINGS)


@pytest.mark.parametrize("kind", ["trace", "script", "export"])
def test_every_metric_on_a_compiled_model_equals_the_eager_models(kind, eager_2d, tmp_path):
    eager, scan, mask, expected = eager_2d
    model = compiled(eager, kind, tmp_path)
    assert model.kind == ("export" if kind == "export" else "torchscript")
    before = snapshot(model.module)
    a = explain(model, scan, "vanilla_gradient", target="lesion")
    r = evaluate(model, scan, a, mask=mask, **SETTINGS)
    for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc", "faithfulness_gain", "mass_in_mask", "relevance_rank", "outside_anatomy_share", "outside_anatomy_top_share"):
        assert r[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    for key in ("pointing_game", "outside_anatomy_peak", "shortcut_flag", "sanity_passed"):
        assert r[key] is expected[key] and r[key] is not None, key
    sim, sim_expected = r["sanity_similarity"], expected["sanity_similarity"]
    for mode in ("cascading", "independent"):
        assert [e["layer"] for e in sim[mode]] == [e["layer"] for e in sim_expected[mode]]
        for got, want in zip(sim[mode], sim_expected[mode]):
            assert "error" not in got
            assert got["spearman"] == pytest.approx(want["spearman"], abs=1e-4) and got["ssim"] == pytest.approx(want["ssim"], abs=1e-4)
    assert snapshot(model.module) == before  # the randomisation worked on copies


@pytest.mark.parametrize("loader", [load_lesion_classifier, load_shortcut_classifier], ids=["lesion_classifier_3d", "shortcut_classifier_3d"])
def test_cascading_and_independent_randomisation_of_a_torchscript_model_leave_it_bit_identical(loader, tmp_path):
    eager = loader()
    model = compiled(eager, "trace", tmp_path)
    before = snapshot(model.module)
    layers = weight_layers(model.module)
    assert layers == weight_layers(eager.module) and len(layers) > 2
    plans = [layers[-k:] for k in cascade_checkpoints(len(layers), 2)] + [[layers[i]] for i in independent_layers(len(layers), 2)]
    for n, names in enumerate(plans):
        copy = randomised_copy(model, names, seed=n)
        assert copy.module is not model.module
        after = snapshot(copy.module)
        changed = {k for k in after if after[k] != before[k]}
        assert changed and {k.rsplit(".", 1)[0] for k in changed} <= set(names), (names, changed)
        assert all(f"{name}.weight" in changed for name in names)
    assert snapshot(model.module) == before


def test_the_sanity_check_of_a_3d_torchscript_model_changes_nothing(tmp_path):
    eager, scan = load_lesion_classifier(), load_sample_scan()
    model = compiled(eager, "trace", tmp_path)
    before = snapshot(model.module)
    a = explain(model, scan, "vanilla_gradient", target="lesion")
    r = evaluate(model, scan, a, metrics=["sanity"], sanity_steps=1)
    assert isinstance(r["sanity_passed"], bool) and r["sanity_similarity"]["layers"] == len(weight_layers(eager.module))
    assert all("error" not in e for e in r["sanity_similarity"]["cascading"] + r["sanity_similarity"]["independent"])
    assert snapshot(model.module) == before


def test_a_module_that_cannot_be_deep_copied_is_copied_module_by_module():
    net = load_lesion_classifier_2d().module
    x = torch.randn(2, 1, 65, 53)
    exported = torch.export.unflatten(torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)))
    before = snapshot(exported)
    copy = model_copy(exported)
    assert snapshot(copy) == before
    assert not any(p is q for p in copy.parameters() for q in exported.parameters())
    handle = next(iter(dict(copy.named_modules()).values())).register_forward_hook(lambda *args: None)
    assert not exported._forward_hooks  # hook tables are the copy's own
    handle.remove()
    with torch.no_grad():
        np.testing.assert_array_equal(copy(x).numpy(), exported(x).numpy())
