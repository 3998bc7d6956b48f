"""The method registry: each method declares what it is, needs and takes.

Hosts build their method menus and parameter controls from these specs, so a
method is described once, here, and nowhere else.
"""

from __future__ import annotations

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
        The paper, as cited in the review (DESIGN.md §6, REVIEW.txt).
    summary : str
        One line for a menu or tooltip.
    needs : frozenset of str
        Subset of :data:`NEEDS`: ``gradients`` through the model, a ``layer``
        with spatial output, or ``forward`` passes only.
    sign : str
        ``signed`` (positive supports the target, negative opposes it) or
        ``non-negative``; decides the display colour map.
    model_agnostic : bool
        True when only forward passes are used.
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
    """

    name: str
    title: str
    family: str
    reference: str
    summary: str
    needs: frozenset[str]
    sign: str
    model_agnostic: bool
    params: tuple[ParamSpec, ...]
    run: Callable[..., Generator[Any, None, Any]] = field(repr=False, compare=False)
    stochastic: bool = False
    sign_param: str | None = None
    output: str = "map"

    def __post_init__(self) -> None:
        assert self.family in FAMILIES, self.family
        assert self.output in OUTPUTS, self.output
        assert set(self.needs) <= set(NEEDS), self.needs
        assert self.sign in SIGNS, self.sign

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
    """Add a method to the registry (names are unique)."""
    if spec.name in _METHODS:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _METHODS[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    from . import methods  # noqa: F401  (registers the built-in methods)


def list_methods(family: str | None = None) -> list[MethodSpec]:
    """All registered methods, in catalogue order, optionally of one family."""
    _ensure_loaded()
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
    _ensure_loaded()
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    for spec in _METHODS.values():
        if key in (spec.name, spec.title.lower().replace("-", "_").replace(" ", "_")):
            return spec
    raise MethodError(f"There is no method called {name!r}.", f"Use one of {sorted(_METHODS)}.")
