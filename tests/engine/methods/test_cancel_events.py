"""Events and cancel of the methods whose work came in long stretches: LRP's backward pass, LIME / KernelSHAP's set-up.

No test here depends on timing: each counts the work done (model passes,
rule applications) at each event and after a cancel. How long the gaps are
on the sample models is measured by ``benchmarks/bench_cancel.py``.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_xai.engine import Cancelled, explain, explain_iter
from napari_xai.engine.methods.backprop import lrp_rules as _lrp_rules
from napari_xai.engine.methods.toolkit import layout
from napari_xai.engine.methods.toolkit.stepped import Stepper
from napari_xai.engine.models.loading import as_loaded_model

from tests.conftest import make_net, random_volume

COMPOSITES = _lrp_rules.COMPOSITES


class UNetish(nn.Module):
    """A small 3D net with a skip connection (concatenation), un-folded BatchNorm, max and average pooling, a layer run twice."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.enc = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool3d(2), nn.Conv3d(4, 4, 3, padding=1), nn.ReLU())
        self.shared = nn.Conv3d(4, 4, 1)
        self.dec = nn.Conv3d(8, 4, 3, padding=1)
        self.norm = nn.BatchNorm3d(4)
        self.smooth = nn.AvgPool3d(3, stride=1, padding=1)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            for bn in (self.enc[1], self.norm):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.enc(x)
        b = torch.relu(self.shared(torch.relu(self.shared(self.down(a)))))
        up = nn.functional.interpolate(b, size=a.shape[2:], mode="trilinear", align_corners=False)
        d = self.smooth(self.norm(torch.relu(self.dec(torch.cat([a, up], 1)))))
        return self.head(d.mean(dim=(2, 3, 4)))


def one_pass_lrp(model: nn.Module, x: torch.Tensor, composite: str, target: int) -> torch.Tensor:
    """LRP as one uninterrupted autograd pass in this thread (what the method did before it ran step by step)."""
    clone = copy.deepcopy(model).eval()
    _lrp_rules.fold_batchnorm(clone)
    low, high = float(x.min()), float(x.max())
    assigned = _lrp_rules.assign_rules(clone, x, composite, 1e-6, 0.25, low, high)
    with _lrp_rules.rule_hooks(assigned), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        out = clone(xg)
        score = out[:, target]
        (weight,) = torch.autograd.grad(score.sum(), out, retain_graph=True)
        (rel,) = torch.autograd.grad(out, xg, weight * out.detach())
    return rel[0, 0]


def ruled_calls(model: nn.Module, x: torch.Tensor) -> int:
    """How many times a layer with an LRP rule runs in one forward pass of ``model``."""
    calls = []
    kinds = _lrp_rules.WEIGHTED + _lrp_rules.POOLS + _lrp_rules.NORMS
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return len(calls)


@pytest.fixture
def counted_rules(monkeypatch):
    """The number of rule applications (one per ruled layer call in the backward pass) so far."""
    count = [0]
    original = _lrp_rules.Rule.relevance

    def counting(self, layer, x, r):
        count[0] += 1
        return original(self, layer, x, r)

    monkeypatch.setattr(_lrp_rules.Rule, "relevance", counting)
    return count


# -- LRP ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("composite", COMPOSITES)
def test_lrp_step_by_step_equals_the_one_pass_map(composite):
    net, img = UNetish(), random_volume((8, 10, 9))
    x = torch.as_tensor(img)[None, None]
    a = explain(net, img, "lrp", target=1, composite=composite)
    ref = one_pass_lrp(net, x, composite, 1).numpy()
    assert np.array_equal(a.values, ref)
    assert a.checks["conservation"]["output_relevance"] == pytest.approx(float(net(x)[0, 1].detach()), rel=1e-5)


def test_lrp_emits_one_event_per_ruled_layer_in_the_backward_pass(counted_rules):
    net, img = UNetish(), random_volume((8, 10, 9))
    n = ruled_calls(net, torch.as_tensor(img)[None, None])  # enc conv + BN (folded away), down conv, shared x2, dec, norm, smooth, head
    assert n == 9
    at_event = []
    for event in explain_iter(net, img, "lrp", target=1):
        at_event.append((event.message, counted_rules[0]))
    steps = [(m, c) for m, c in at_event if "relevance through" in m]
    assert len(steps) == n - 1  # the BatchNorm after the first conv is folded into it
    assert [c for _, c in steps] == list(range(1, n))  # exactly one rule applied between two events
    assert steps[0][0].endswith("head") and steps[-1][0].endswith("enc.0")  # backwards, output to input
    forward_done = next(i for i, (m, _) in enumerate(at_event) if "forward pass done" in m)
    assert at_event[forward_done][1] == 0 and forward_done < at_event.index(steps[0])


@pytest.mark.parametrize("k", [1, 3])
def test_lrp_closed_after_k_layers_applies_no_further_rule_and_leaves_no_thread(counted_rules, k):
    net, img = UNetish(), random_volume((8, 10, 9))
    gen = explain_iter(net, img, "lrp", target=1)
    seen = 0
    for event in gen:
        if "relevance through" in event.message:
            seen += 1
            if seen == k:
                break
    gen.close()
    assert counted_rules[0] == k
    assert not [t for t in threading.enumerate() if t.name == "napari-xai-stepped"]
    with pytest.raises(StopIteration):
        next(gen)
    assert counted_rules[0] == k
    assert torch.is_grad_enabled() and not any(p.grad is not None for p in net.parameters())


def test_lrp_cancel_flag_mid_backward_raises_cancelled(counted_rules):
    seen: list[str] = []
    with pytest.raises(Cancelled):
        explain(UNetish(), random_volume((8, 10, 9)), "lrp", target=1, on_progress=lambda e: seen.append(e.message),
                should_cancel=lambda: sum("relevance through" in m for m in seen) == 2)
    assert counted_rules[0] == 2


def test_lrp_error_inside_the_backward_pass_reaches_the_caller(monkeypatch):
    calls = [0]
    original = _lrp_rules.Rule.relevance

    def failing(self, layer, x, r):
        calls[0] += 1
        if calls[0] == 2:
            raise FloatingPointError("planted")
        return original(self, layer, x, r)

    monkeypatch.setattr(_lrp_rules.Rule, "relevance", failing)
    with pytest.raises(FloatingPointError, match="planted"):
        explain(UNetish(), random_volume((8, 10, 9)), "lrp", target=1)
    assert not [t for t in threading.enumerate() if t.name == "napari-xai-stepped"]


def test_stepper_checkpoint_outside_its_call_is_a_no_op():
    stepper = Stepper()
    stepper.checkpoint("not in the worker")  # returns at once: nothing waits for it
    events = []
    gen = stepper.run(lambda: [stepper.checkpoint(f"step {i}") for i in range(3)] and 42, total=3)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            assert stop.value == 42
            break
    assert [(e.done, e.message) for e in events] == [(1, "step 0"), (2, "step 1"), (3, "step 2")]


# -- LIME and KernelSHAP: events in the set-up, none of the samples run before Cancel is polled ------------------------


def count_forwards(net: nn.Module) -> list[int]:
    """Samples the network was run on so far (a forward pre-hook counts the batch)."""
    count = [0]
    net.register_forward_pre_hook(lambda _m, inputs: count.__setitem__(0, count[0] + int(inputs[0].shape[0])))
    return count


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_surrogates_yield_after_the_supervoxels_and_before_the_first_sample(method):
    net = make_net(3)
    forwards = count_forwards(net)
    at_event = [(e.message, forwards[0]) for e in explain_iter(net, random_volume((12, 13, 11)), method, target=1, n_samples=40, n_segments=8)]
    messages = [m for m, _ in at_event]
    slic = [i for i, m in enumerate(messages) if "SLIC" in m]
    counted = next(i for i, m in enumerate(messages) if m.endswith(" supervoxels"))
    first = next(i for i, m in enumerate(messages) if "perturbed samples" in m)
    assert slic and max(slic) < counted < first
    assert messages[first].split(": ")[1].startswith("0/")
    # by the "0/n" event the model has run once, on the scan (the engine's pass, which also sized the batches)
    assert at_event[counted][1] == at_event[first][1] == 1


@pytest.mark.parametrize("k", [0, 3])
def test_lime_closed_after_k_samples_runs_no_further_sample(k, monkeypatch):
    monkeypatch.setattr(layout, "TRIAL_MIN_PASSES", 10**9)  # no layout trial: its passes are counted in test_layout.py
    net = make_net(3)
    forwards = count_forwards(net)
    model = as_loaded_model(net)
    model.max_batch = 1  # one sample per batch, so the k-th event follows the k-th sample
    gen = explain_iter(model, random_volume((12, 13, 11)), "lime", target=1, n_samples=200, n_segments=8)
    for event in gen:
        if event.message.startswith(f"LIME: {k}/"):
            break
    before = forwards[0]
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    assert forwards[0] == before
    # the pass on the scan (which also sized the batches: no probe pass), then k samples
    assert before == 1 + k


# -- set-up events of the other batched methods; the pass on the scan doubles as the planner's probe -------------------


def events_with_forwards(method: str, **params) -> list[tuple[str, int, int]]:
    """(message, done, samples the network ran on so far) at each event of a run on a small 3D net."""
    net = make_net(3)
    forwards = count_forwards(net)
    return [(e.message, e.done, forwards[0]) for e in explain_iter(net, random_volume((12, 13, 11)), method, target=1, **params)]


def test_every_batched_method_gets_an_event_after_the_pass_on_the_scan():
    at_event = events_with_forwards("rise", n_masks=4)
    assert at_event[0][0].endswith("preparing") and at_event[0][2] == 0
    assert at_event[1][0] == "RISE: model run on the scan" and at_event[1][2] == 1


def test_occlusion_yields_after_recording_and_before_checking_the_incremental_pass():
    at_event = events_with_forwards("occlusion", window=4, stride=4)
    recorded = next(x for x in at_event if "unoccluded pass recorded" in x[0])
    checking = next(x for x in at_event if "checking the incremental scores" in x[0])
    first = next(x for x in at_event if x[0].startswith("occlusion: ") and "windows" in x[0] and x[1] > 0)
    assert recorded[2] == 2  # the pass on the scan and the recorded pass; no probe pass
    assert checking[2] == 2  # the first windows were replayed, not run
    assert first[2] > checking[2]  # the full passes that check them


@pytest.mark.parametrize("method", ["meaningful_perturbation", "extremal_perturbation"])
def test_mask_optimisers_yield_after_scoring_the_fully_perturbed_input(method):
    at_event = events_with_forwards(method, iterations=2)
    scored = next(x for x in at_event if "fully perturbed input scored" in x[0])
    step = next(x for x in at_event if "step 1/" in x[0])
    assert scored[2] == 2 and step[2] == 3  # scan, fully perturbed input (no probe pass), then one step


def test_the_first_gradient_batch_holds_one_sample():
    steps = [x for x in events_with_forwards("integrated_gradients", steps=6) if "/6 steps" in x[0]]
    assert steps[0][1] == 1 and steps[0][2] == 2  # the pass on the scan, then one step


def test_a_heavy_import_yields_while_it_runs_and_a_close_does_not_wait_for_it(tmp_path, monkeypatch):
    """A module whose import blocks until released: events come while it blocks; closing returns with it still blocked."""
    import sys

    from napari_xai.engine.methods.toolkit.stepped import background_import

    gate = threading.Event()
    monkeypatch.setattr(sys.modules[__name__], "IMPORT_GATE", gate, raising=False)
    (tmp_path / "slow_import_for_test.py").write_text(f"import sys\nsys.modules[{__name__!r}].IMPORT_GATE.wait()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gen = background_import("slow_import_for_test", "importing")
    assert next(gen).message == "importing"  # the import is still blocked: an event, not a wait
    gen.close()  # returns although the import cannot finish yet
    assert any(t.name == "napari-xai-import" and t.is_alive() for t in threading.enumerate())  # still importing
    gate.set()
    for t in [t for t in threading.enumerate() if t.name == "napari-xai-import"]:
        t.join()
    assert "slow_import_for_test" in sys.modules
    assert list(background_import("slow_import_for_test", "importing")) == []  # already imported: no event
    sys.modules.pop("slow_import_for_test")


@pytest.mark.parametrize("method,params", [("deeplift", {}), ("deeplift_shap", {"n_baselines": 2})])
def test_deeplift_yields_between_the_reference_pass_and_the_backward_pass(method, params):
    at_event = events_with_forwards(method, **params)
    recorded = [i for i, (m, _, _) in enumerate(at_event) if "recorded" in m]
    assert recorded
    for i in recorded:  # a reference pass before each "recorded" event, the pass on the inputs after it
        assert at_event[i - 1][2] < at_event[i][2] < at_event[i + 1][2]
        # ... and an event between that rescaled forward and its backward (no forward after it)
        assert "rescaled forward done" in at_event[i + 1][0]
        assert at_event[i + 2][2] == at_event[i + 1][2]
