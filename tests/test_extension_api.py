"""A method defined outside the package, with only the public API, runs like a built-in one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_xai.engine as engine
from napari_xai.engine import MethodContext, MethodError, MethodSpec, ParamSpec, Progress

from .conftest import make_net, random_volume


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
