"""How a map is shown, decided once for every host: colour map and contrast from its sign."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Sequential colour map for non-negative maps (matplotlib and napari both know it).
SEQUENTIAL_COLORMAP = "inferno"
#: Diverging colour map for signed maps: blue negative, white zero, red positive.
DIVERGING_COLORMAP = "bwr"
#: Contrast is set at this percentile of |values|, so one hot voxel does not wash out the map.
CONTRAST_PERCENTILE = 99.5


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


def display_settings(values: np.ndarray, sign: str) -> DisplaySettings:
    """Settings that fit a map's sign: sequential for ``non-negative``, diverging and symmetric for ``signed``."""
    finite = np.abs(np.asarray(values)[np.isfinite(values)])
    hi = float(np.percentile(finite, CONTRAST_PERCENTILE)) if finite.size else 0.0
    if hi <= 0:
        hi = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    if sign == "non-negative":
        return DisplaySettings(SEQUENTIAL_COLORMAP, (0.0, hi), 0.7, "additive")
    return DisplaySettings(DIVERGING_COLORMAP, (-hi, hi), 0.6, "translucent")
