"""A method defined outside the package, with only the public API, runs like a built-in one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_xai.engine as engine
from napari_xai.engine import MethodContext, MethodError, MethodSpec, ParamSpec, Progress

from tests.conftest import make_net, random_volume


def _input_times_gradient_squared(ctx: MethodContext, params: dict):
    """A user's method: (x * dS/dx) ** power, one gradient pass through the public context."""
    yield Progress(0, 1, "gradient")
    grad, _ = ctx.gradients(ctx.x)
    yield Progress(1, 1, "gradient")
    return ((ctx.x * grad)[0] ** params["power"]).cpu().numpy()


USER_SPEC = MethodSpec(
    name="user_input_x_gradient_power",
    title="User input x gradient power",
    family="backpropagation",
    reference="A test of the extension API (no paper).",
    summary="(input x gradient) to a power, defined outside the package.",
    needs=frozenset({"gradients"}),
    sign="non-negative",
    params=(ParamSpec("power", int, 2, "Exponent (even keeps the map non-negative).", min=2, max=4),),
    run=_input_times_gradient_squared,
)


@pytest.fixture
def user_method():
    spec = engine.register_method(USER_SPEC)
    try:
        yield spec
    finally:
        engine.unregister_method(spec.name)


def test_registered_method_is_listed_and_runs(user_method):
    assert engine.get_method("User input x gradient power") is user_method
    assert user_method in engine.list_methods("backpropagation")
    assert user_method.model_agnostic is False  # derived from needs

    net = make_net(3)
    vol = random_volume()
    a = engine.explain(net, vol, user_method.name, target=1, power=2)

    x = torch.from_numpy(vol)[None, None].requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x)[0, 1], x)
    expected = ((x * grad)[0, 0] ** 2).detach().numpy()
    np.testing.assert_allclose(a.values, expected, rtol=1e-5, atol=1e-9)
    assert a.method == user_method.name and a.sign == "non-negative"
    assert a.params == {"power": 2}


def test_user_parameters_are_validated(user_method):
    with pytest.raises(MethodError, match="outside"):
        engine.explain(make_net(3), random_volume(), user_method.name, target=1, power=7)


def test_unregistered_method_is_gone(user_method):
    engine.unregister_method(user_method.name)
    with pytest.raises(MethodError, match="no method"):
        engine.get_method(user_method.name)
    engine.register_method(user_method)  # the fixture removes it again


def test_duplicate_and_malformed_specs_are_refused(user_method):
    with pytest.raises(MethodError, match="already registered"):
        engine.register_method(user_method)
    with pytest.raises(MethodError, match="family"):
        MethodSpec("bad_family", "Bad", "nonsense", "", "", frozenset({"gradients"}), "signed", run=_input_times_gradient_squared)
    with pytest.raises(MethodError, match="model_agnostic"):
        MethodSpec(
            "bad_agnostic", "Bad", "perturbation", "", "", frozenset({"gradients"}), "signed",
            model_agnostic=True, run=_input_times_gradient_squared,
        )
    with pytest.raises(MethodError, match="sign_param"):
        MethodSpec(
            "bad_sign_param", "Bad", "perturbation", "", "", frozenset({"forward"}), "signed",
            run=_input_times_gradient_squared, sign_param="absolute",
        )
    with pytest.raises(MethodError, match="MethodSpec"):
        engine.register_method({"name": "dict"})


# -- a method built from the public toolkit's pieces ------------------------------------------------------------

from napari_xai.engine.methods import toolkit  # noqa: E402


def _block_occlusion(ctx: toolkit.MethodContext, params: dict):
    """A user's method: the score drop when each block is replaced by the reference (blocks do not overlap)."""
    edge = toolkit.per_axis(params["block"], ctx.dim, "block", "Block occlusion")
    ref = toolkit.reference(ctx.x, params["baseline"], params["blur_sigma"])
    starts = list(np.ndindex(*[-(-n // e) for n, e in zip(ctx.spatial_shape, edge)]))
    boxes = [tuple(slice(i * e, (i + 1) * e) for i, e in zip(start, edge)) for start in starts]
    out = torch.zeros(ctx.spatial_shape, dtype=torch.float64)
    for lo, hi, scores in toolkit.scored_batches(ctx, len(boxes), lambda lo, hi: toolkit.occluded(ctx.x, boxes[lo:hi], ref)):
        for box, score in zip(boxes[lo:hi], scores):
            out[box] = ctx.target.score_value - float(score)
        yield Progress(hi, len(boxes), f"block occlusion: {hi}/{len(boxes)}")
    return out.float().numpy()


BLOCK_SPEC = MethodSpec(
    name="user_block_occlusion",
    title="User block occlusion",
    family="perturbation",
    reference="A test of the extension API (no paper).",
    summary="Score drop per non-overlapping block, built from the toolkit.",
    needs=frozenset({"forward"}),
    sign="signed",
    params=(
        ParamSpec("block", int, 4, "Block edge in voxels (or one per axis).", min=1, max=64, per_axis=True),
        toolkit.baseline_param("What a block becomes", blur=True),
        toolkit.BLUR_SIGMA,
    ),
    run=_block_occlusion,
)


class _Guided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inp, out):  # noqa: D102
        ctx.save_for_backward(inp)
        return out.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (inp,) = ctx.saved_tensors
        return grad.clamp(min=0) * (inp > 0).to(grad.dtype), None


def _user_guided_map(ctx: toolkit.MethodContext, params: dict):
    clone = toolkit.copy_model(ctx, "User guided backprop")

    def fn(xb):
        with toolkit.output_hooks(clone, (torch.nn.ReLU,), lambda _layer, i, o: _Guided.apply(i, o)):
            grad, _ = toolkit.input_gradient(clone, lambda out: ctx.resolve_from(out).score(out), xb, copy_input=True)
        return grad

    return fn, 1


GUIDED_SPEC = MethodSpec(
    name="user_guided_backprop",
    title="User guided backprop",
    family="backpropagation",
    reference="A test of the extension API (no paper).",
    summary="Guided backprop from the toolkit: a private copy, output hooks and a checked input gradient.",
    needs=frozenset({"gradients"}),
    sign="signed",
    params=(toolkit.ABSOLUTE,),
    run=toolkit.single_pass_run(_user_guided_map, "user guided backprop", absolute="absolute"),
    one_pass=True,
    sign_param="absolute",
    batch_map=_user_guided_map,
)


@pytest.fixture
def toolkit_methods():
    specs = [engine.register_method(BLOCK_SPEC), engine.register_method(GUIDED_SPEC)]
    try:
        yield specs
    finally:
        for spec in specs:
            engine.unregister_method(spec.name)


def test_a_method_built_from_toolkit_pieces_matches_a_hand_computation(toolkit_methods):
    net = make_net(3)
    vol = random_volume()
    a = engine.explain(net, vol, "user_block_occlusion", target=1, block=(5, 4, 4), baseline="mean")
    assert engine.get_method("user_block_occlusion").model_agnostic

    x = torch.from_numpy(vol)[None, None]
    with torch.no_grad():
        f_x = float(net(x)[0, 1])
        expected = np.zeros(vol.shape)
        for start in np.ndindex(2, 3, 3):
            box = tuple(slice(i * e, (i + 1) * e) for i, e in zip(start, (5, 4, 4)))
            xo = x.clone()
            xo[(0, 0) + box] = float(x.mean())
            expected[box] = f_x - float(net(xo)[0, 1])
    np.testing.assert_allclose(a.values, expected, rtol=1e-4, atol=1e-5)


def test_a_toolkit_gradient_method_equals_the_built_in_one(toolkit_methods):
    net = make_net(3)
    vol = random_volume()
    ours = engine.explain(net, vol, "user_guided_backprop", target=1)
    built_in = engine.explain(net, vol, "guided_backprop", target=1)
    np.testing.assert_allclose(ours.values, built_in.values, rtol=1e-6, atol=1e-9)
