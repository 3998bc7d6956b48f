"""How a map is shown, decided once for every host: colour map and contrast from its sign."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Sequential colour map for non-negative maps (matplotlib and napari both know it).
SEQUENTIAL_COLORMAP = "inferno"
#: Diverging colour map for signed maps: blue negative, white zero, red positive.
DIVERGING_COLORMAP = "bwr"
#: Contrast is set where the sorted |values| reach this percentage of their total (Captum's
#: ``visualize_image_attr`` default, ``outlier_perc=2``): the strongest voxels holding the last
#: 2 % of the map's mass are clipped, so one hot voxel does not wash out the map, and a map
#: whose evidence sits in a few hundred voxels (a lesion) is not saturated, as a plain
#: percentile of the voxels would (the 99.5th percentile of a map that is 99 % background).
CONTRAST_MASS_PERCENT = 98.0
#: Where a map's colour turns from clear to opaque, as fractions of its colour limit: below
#: CLEAR_BELOW the scan shows through, from OPAQUE_FROM on the colour is opaque, linear between.
#: One rule for napari's diverging colour map, Slicer's colour table and the figures, so a
#: faint voxel is hidden (or shown) alike in every host.
CLEAR_BELOW = 0.15
OPAQUE_FROM = 0.35


@dataclass(frozen=True)
class DisplaySettings:
    """Colour map, contrast limits, opacity and blending for an attribution layer.

    Parameters
    ----------
    colormap : str
        ``inferno`` for non-negative maps, ``bwr`` for signed ones.
    contrast_limits : tuple of float
        ``(0, hi)`` or symmetric ``(-hi, hi)``.
    opacity : float
        Layer opacity.
    blending : str
        napari blending mode (``additive`` for sequential maps on a dark
        background, ``translucent`` for diverging maps whose zero is white).
    """

    colormap: str
    contrast_limits: tuple[float, float]
    opacity: float
    blending: str


def display_sign(values: np.ndarray, sign: str) -> str:
    """The sign a map is shown with: its declared sign, narrowed to ``non-negative`` when a ``signed`` map has no negative value.

    A signed method (LRP, occlusion, ...) may return only non-negative values
    on a given model and scan; a diverging colour bar would then leave its
    negative half unused. A map declared ``non-negative`` stays so.
    """
    if sign != "non-negative":
        v = np.asarray(values)
        finite = v[np.isfinite(v)]
        if finite.size and finite.min() >= 0 and finite.max() > 0:
            return "non-negative"
    return sign


def display_settings(values: np.ndarray, sign: str, limits: tuple[float, float] | None = None) -> DisplaySettings:
    """Settings that fit a map: sequential when its values are non-negative, diverging and symmetric when signed.

    Parameters
    ----------
    values : numpy.ndarray
        The map.
    sign : str
        The method's declared sign for these parameters (``signed`` or ``non-negative``);
        see :func:`display_sign`.
    limits : tuple of float, optional
        Contrast limits chosen by the user; default: ``(0, p)`` or ``(-p, p)``
        with ``p`` from :func:`default_limit`.
    """
    shown = display_sign(values, sign)
    if limits is not None:
        lo, hi = float(limits[0]), float(limits[1])
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"contrast limits must be two finite numbers, low < high; got {limits!r}")
        cmap = SEQUENTIAL_COLORMAP if shown == "non-negative" else DIVERGING_COLORMAP
        return DisplaySettings(cmap, (lo, hi), 0.7 if shown == "non-negative" else 0.6, "additive" if shown == "non-negative" else "translucent")
    hi = default_limit(values)
    if shown == "non-negative":
        return DisplaySettings(SEQUENTIAL_COLORMAP, (0.0, hi), 0.7, "additive")
    return DisplaySettings(DIVERGING_COLORMAP, (-hi, hi), 0.6, "translucent")


def default_limit(values: np.ndarray) -> float:
    """The contrast limit: the ``|value|`` at which the sorted ``|values|`` reach :data:`CONTRAST_MASS_PERCENT` of their sum.

    Captum's cumulative-sum threshold (``visualization._cumulative_sum_threshold``),
    written here so the engine needs no Captum import to show a map. The
    maximum if that is 0; 1 for an all-zero map.
    """
    finite = np.sort(np.abs(np.asarray(values, dtype=np.float64)[np.isfinite(values)]), axis=None)
    if not finite.size or finite[-1] <= 0:
        return 1.0
    cumulative = np.cumsum(finite)
    hi = float(finite[np.searchsorted(cumulative, cumulative[-1] * CONTRAST_MASS_PERCENT / 100.0)])
    return hi if hi > 0 else float(finite[-1])


def limit_rule() -> str:
    """The default contrast rule in words, for captions."""
    return f"where the sorted |values| reach {CONTRAST_MASS_PERCENT:g} % of their sum"


def clipped_ends(values: np.ndarray, limits: tuple[float, float]) -> str:
    """Which ends of a colour bar clip values: ``neither``, ``min``, ``max`` or ``both`` (matplotlib's ``extend``)."""
    v = np.asarray(values)
    finite = v[np.isfinite(v)]
    if not finite.size:
        return "neither"
    low, high = bool(finite.min() < limits[0]), bool(finite.max() > limits[1])
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[(low, high)]


def overlay_alpha(fraction: np.ndarray | float) -> np.ndarray:
    """Opacity of a map's colour at ``|value| / limit``: 0 below :data:`CLEAR_BELOW`, 1 from :data:`OPAQUE_FROM`, linear between.

    Parameters
    ----------
    fraction : array_like
        Values over the colour limit (signed or not; a colour map's position
        ``2 t - 1`` for a diverging map).
    """
    f = np.abs(np.asarray(fraction, dtype=float))
    return np.clip((f - CLEAR_BELOW) / (OPAQUE_FROM - CLEAR_BELOW), 0.0, 1.0)
