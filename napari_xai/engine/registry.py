"""The method registry: each method declares what it is, needs and takes.

Hosts build their method menus and parameter controls from these specs, so a
method is described once, here, and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np

from .errors import MethodError

FAMILIES = ("perturbation", "backpropagation", "class activation", "activation maximisation")
NEEDS = ("gradients", "layer", "forward")
SIGNS = ("signed", "non-negative")
#: What a method returns: an attribution ``map`` (channels are summed) or an ``image`` (activation maximisation; channels kept).
OUTPUTS = ("map", "image")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a method.

    Parameters
    ----------
    name : str
        Keyword name.
    type : type
        ``int``, ``float``, ``bool`` or ``str``.
    default : Any
        Value used when the caller gives none (from the method's paper).
    help : str
        One line for a tooltip.
    min, max : float, optional
        Inclusive bounds for numbers.
    choices : tuple, optional
        Allowed values for strings.
    per_axis : bool
        An ``int``/``float`` that may also be given per spatial axis as a tuple ``(z, y, x)``.
    """

    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    per_axis: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON description for hosts."""
        return {
            "name": self.name,
            "type": self.type.__name__,
            "default": self.default,
            "help": self.help,
            "min": self.min,
            "max": self.max,
            "choices": list(self.choices) if self.choices else None,
            "per_axis": self.per_axis,
        }

    def coerce(self, value: Any, method: str) -> Any:
        """Check and convert one value; raise :class:`MethodError` naming the bound it breaks."""
        if self.per_axis and isinstance(value, (tuple, list, np.ndarray)):
            return tuple(self._coerce_scalar(v, method) for v in value)
        return self._coerce_scalar(value, method)

    def _coerce_scalar(self, value: Any, method: str) -> Any:
        where = f"{method}: parameter {self.name!r}"
        try:
            if self.type is bool:
                if not isinstance(value, (bool, np.bool_)):
                    raise TypeError
                out: Any = bool(value)
            elif self.type is int:
                if isinstance(value, bool) or float(value) != int(value):
                    raise TypeError
                out = int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise TypeError
                out = float(value)
                if not np.isfinite(out):
                    raise TypeError
            else:
                out = str(value)
        except (TypeError, ValueError):
            raise MethodError(f"{where} is {value!r}, not a {self.type.__name__}.", f"Give a {self.type.__name__}, e.g. {self.default!r}.") from None
        if self.choices is not None and out not in self.choices:
            raise MethodError(f"{where} is {out!r}.", f"Use one of {list(self.choices)}.")
        if self.min is not None and out < self.min or self.max is not None and out > self.max:
            raise MethodError(
                f"{where} is {out}, outside [{self.min}, {self.max}].",
                f"Give a value in that range (default {self.default}).",
            )
        return out


def per_axis(value: Any, dim: int, name: str, method: str) -> tuple:
    """A scalar, or one value per spatial axis, as a tuple of ``dim`` values (z, y, x order).

    The expansion of every ``per_axis`` parameter (and of the sliding-window
    settings): a scalar or a one-entry sequence is repeated on every axis.

    Raises
    ------
    MethodError
        A sequence with neither one nor ``dim`` entries.
    """
    out = tuple(value) if isinstance(value, (tuple, list, np.ndarray)) else (value,)
    if len(out) == 1:
        out = out * dim
    if len(out) != dim:
        raise MethodError(f"{method}: {name} {out} has {len(out)} entries for a {dim}D image.", f"Give one value or {dim} values (z, y, x).")
    return out


@dataclass(frozen=True)
class MethodSpec:
    """What a method is, what it needs and what it takes.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"integrated_gradients"``.
    title : str
        Display name.
    family : str
        One of :data:`FAMILIES`.
    reference : str
        The paper that defines the method (authors, title, venue, year).
    summary : str
        One line for a menu or tooltip.
    needs : frozenset of str
        Subset of :data:`NEEDS`: ``gradients`` through the model, a ``layer``
        with spatial output, or ``forward`` passes only.
    sign : str
        ``signed`` (positive supports the target, negative opposes it) or
        ``non-negative``; decides the display colour map.
    model_agnostic : bool, optional
        True when only forward passes are used. It always equals
        ``needs == {"forward"}``; leave it unset and it is derived (a value
        that disagrees with ``needs`` is refused).
    params : tuple of ParamSpec
        Parameters with defaults, bounds and help.
    run : callable
        ``run(ctx, params)``: a generator yielding :class:`Progress` and
        returning the map in model space (``(C, *spatial)`` or ``(*spatial)``).
    stochastic : bool
        Whether results depend on a seed.
    sign_param : str, optional
        A bool parameter that, when True, makes a signed method's output
        non-negative (e.g. ``absolute`` for gradients, ``relu`` for Grad-CAM).
    output : str
        One of :data:`OUTPUTS`: ``map`` (an attribution map; a per-channel
        result is summed over channels) or ``image`` (a synthetic image in
        model space, e.g. activation maximisation; channels are kept).
    one_pass : bool
        The method's first model call is on the unperturbed input, through
        ``MethodContext.gradients``, ``.scores`` or ``toolkit.activation_and_gradient``,
        and the target is resolved from that call's output: the engine runs
        no pass of its own (one forward pass in all for a gradient map).
    batch_map : callable, optional
        For a gradient method that SmoothGrad, SmoothGrad² and VarGrad may
        wrap: ``batch_map(ctx, params) -> (fn, passes)``, where ``fn(xb)``
        gives the method's signed maps ``(N, C, *spatial)`` of a batch of
        inputs ``xb`` (before any ``sign_param`` switch), as a tensor or as a
        generator of :class:`Progress` that returns it, and ``passes`` is the
        gradient passes ``fn`` runs per input (1: the wrapper hands it batches
        sized for one pass each; more: one input at a time, and ``fn`` sizes
        its own batches).
    """

    name: str
    title: str
    family: str
    reference: str
    summary: str
    needs: frozenset[str]
    sign: str
    model_agnostic: bool | None = None
    params: tuple[ParamSpec, ...] = ()
    run: Callable[..., Generator[Any, None, Any]] | None = field(default=None, repr=False, compare=False)
    stochastic: bool = False
    sign_param: str | None = None
    output: str = "map"
    one_pass: bool = False
    batch_map: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Explicit checks, not asserts: a method registered from outside the
        # package must be refused under ``python -O`` too.
        def bad(problem: str, fix: str) -> MethodError:
            return MethodError(f"Method spec {self.name!r}: {problem}", fix)

        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise bad("the name is not a Python identifier.", "Use a lower-case name such as 'my_method'.")
        if self.family not in FAMILIES:
            raise bad(f"family {self.family!r} is unknown.", f"Use one of {list(FAMILIES)}.")
        if self.output not in OUTPUTS:
            raise bad(f"output {self.output!r} is unknown.", f"Use one of {list(OUTPUTS)}.")
        needs = frozenset(self.needs)
        if not needs or not needs <= set(NEEDS):
            raise bad(f"needs {sorted(needs)} is not a non-empty subset of {list(NEEDS)}.", "Declare what the method uses.")
        object.__setattr__(self, "needs", needs)
        if self.sign not in SIGNS:
            raise bad(f"sign {self.sign!r} is unknown.", f"Use one of {list(SIGNS)}.")
        agnostic = needs == {"forward"}
        if self.model_agnostic is not None and bool(self.model_agnostic) != agnostic:
            raise bad(
                f"model_agnostic={self.model_agnostic} disagrees with needs {sorted(needs)}.",
                "Leave model_agnostic unset: it is derived from needs.",
            )
        object.__setattr__(self, "model_agnostic", agnostic)
        if not callable(self.run):
            raise bad("run is not callable.", "Give run(ctx, params), a generator that returns the map.")
        if self.batch_map is not None and not callable(self.batch_map):
            raise bad("batch_map is not callable.", "Give batch_map(ctx, params) -> (fn, passes), or leave it unset.")
        params = tuple(self.params)
        if not all(isinstance(p, ParamSpec) for p in params):
            raise bad("params holds something that is not a ParamSpec.", "Declare each parameter with ParamSpec.")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise bad(f"parameter names repeat: {names}.", "Give each parameter one unique name.")
        object.__setattr__(self, "params", params)
        if self.sign_param is not None and (self.sign_param not in names or self.param(self.sign_param).type is not bool):
            raise bad(f"sign_param {self.sign_param!r} is not a bool parameter of the method.", "Name a bool parameter, or leave it unset.")

    @property
    def citation(self) -> str:
        """The paper (authors, title, venue, year), without the review's reference numbers, for a help text."""
        return re.sub(r"\s*\(review refs?\.[^)]*\)", "", self.reference).strip()

    def param(self, name: str) -> ParamSpec:
        """The spec of parameter ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict[str, Any]:
        """Default value of every parameter."""
        return {p.name: p.default for p in self.params}

    def validate_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """All parameters, defaults filled in, each checked against its spec.

        Raises
        ------
        MethodError
            Unknown name, wrong type, out of range.
        """
        names = {p.name for p in self.params}
        unknown = sorted(set(given) - names)
        if unknown:
            raise MethodError(
                f"{self.title} has no parameter(s) {unknown}.",
                f"Its parameters are {sorted(names) or 'none'}.",
            )
        return {p.name: p.coerce(given[p.name], self.title) if p.name in given else p.default for p in self.params}

    def output_sign(self, params: dict[str, Any]) -> str:
        """The sign of the map for these parameters."""
        if self.sign_param and params.get(self.sign_param):
            return "non-negative"
        return self.sign

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON description for hosts and docs."""
        return {
            "name": self.name,
            "title": self.title,
            "family": self.family,
            "reference": self.reference,
            "summary": self.summary,
            "needs": sorted(self.needs),
            "sign": self.sign,
            "model_agnostic": self.model_agnostic,
            "stochastic": self.stochastic,
            "output": self.output,
            "params": [p.to_dict() for p in self.params],
        }


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry, so that :func:`explain` and both hosts offer it.

    Parameters
    ----------
    spec : MethodSpec
        The method's declaration and its ``run(ctx, params)`` generator
        (see ``docs/architecture.md``, "Adding a method").

    Returns
    -------
    MethodSpec
        ``spec`` itself, so that a module can keep it as a constant.

    Raises
    ------
    MethodError
        Not a :class:`MethodSpec`, or a method of that name (or title) is
        already registered.
    """
    if not isinstance(spec, MethodSpec):
        raise MethodError(f"register_method was given a {type(spec).__name__}.", "Pass a MethodSpec.")
    taken = {k for s in _METHODS.values() for k in (s.name, _key(s.title))}
    if spec.name in taken or _key(spec.title) in taken:
        raise MethodError(
            f"A method called {spec.name!r} ({spec.title!r}) is already registered.",
            "Choose another name and title, or unregister_method() the old one first.",
        )
    _METHODS[spec.name] = spec
    return spec


def unregister_method(name: str) -> MethodSpec:
    """Remove a method added with :func:`register_method` and return its spec.

    Raises
    ------
    MethodError
        No method of that name is registered.
    """
    if name not in _METHODS:
        raise MethodError(f"No method {name!r} is registered.", f"Registered: {sorted(_METHODS)}.")
    return _METHODS.pop(name)


def _key(text: str) -> str:
    return str(text).strip().lower().replace("-", "_").replace(" ", "_")


def list_methods(family: str | None = None) -> list[MethodSpec]:
    """All registered methods, in catalogue order, optionally of one family."""
    specs = list(_METHODS.values())
    if family is not None:
        specs = [s for s in specs if s.family == family]
    return sorted(specs, key=lambda s: FAMILIES.index(s.family))


def get_method(name: str) -> MethodSpec:
    """The method called ``name`` (registry key or title, case-insensitive).

    Raises
    ------
    MethodError
        No such method.
    """
    key = _key(name)
    for spec in _METHODS.values():
        if key in (spec.name, _key(spec.title)):
            return spec
    raise MethodError(f"There is no method called {name!r}.", f"Use one of {sorted(_METHODS)}.")
