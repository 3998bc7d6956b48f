"""A burned-in marker outside the head: the deliberate shortcut of the shortcut sample model.

Real scans carry burned-in annotations, side markers, rulers and text in
the corners of the field of view; a model trained where such a mark goes
with the label can learn the mark instead of the anatomy (a "Clever Hans"
model; Lapuschkin et al., Nature Communications 2019). Here the mark is a
bright 12 mm cube in one corner of the sample grid, in the air beside the
head (array indices ``(z, y, x)`` of the 3 mm MNI152 sample grid).
"""

from __future__ import annotations

import numpy as np

#: The marker's box on the 54 x 65 x 53 sample grid (z, y, x): superior, in a corner of the field of view.
MARKER_BOX = (slice(46, 50), slice(3, 7), slice(3, 7))
#: Intensity of the marker (the template's T1 range is 0..~245).
MARKER_VALUE = 255.0


def burn_in_marker(image: np.ndarray, offset: tuple[int, int, int] = (0, 0, 0), value: float = MARKER_VALUE) -> np.ndarray:
    """A copy of ``image`` ``(z, y, x)`` with the marker burned in at :data:`MARKER_BOX` shifted by ``offset`` voxels."""
    out = np.array(image, dtype=np.float32, copy=True)
    box = tuple(slice(s.start + o, s.stop + o) for s, o in zip(MARKER_BOX, offset))
    out[box] = value
    return out


def marker_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """bool ``shape``: True on the marker's box (for localisation checks)."""
    mask = np.zeros(shape, dtype=bool)
    mask[MARKER_BOX] = True
    return mask
