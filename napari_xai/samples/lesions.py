"""Simulated white-matter lesions on the MNI152 anatomy, with augmentation.

T1-hypointense lesions (as in multiple sclerosis or small-vessel disease)
are planted in white matter, then the volume is shifted, rescaled in
intensity, multiplied by a smooth bias field and given noise. The same
generator trains the sample classifier and, with other seeds, tests it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_xai.engine.image import ScanImage


@dataclass
class LesionSample:
    """One synthetic volume.

    Parameters
    ----------
    image : numpy.ndarray
        float32 T1 intensities ``(z, y, x)`` on the template grid.
    lesion_mask : numpy.ndarray
        bool, where lesion contrast exceeds half its peak.
    has_lesion : bool
        The label.
    """

    image: np.ndarray
    lesion_mask: np.ndarray
    has_lesion: bool


class LesionSimulator:
    """Draws volumes with or without lesions from one template anatomy.

    Parameters
    ----------
    t1 : ScanImage
        T1 template (0..255 intensities).
    white_matter : ScanImage
        White-matter probability (0..255), same grid.
    """

    def __init__(self, t1: ScanImage, white_matter: ScanImage) -> None:
        self.t1 = np.asarray(t1.array, dtype=np.float32)
        self.wm = np.asarray(white_matter.array, dtype=np.float32) / 255.0
        # Lesion centres: deep white matter, away from the grey-matter border.
        self._centres = np.argwhere(ndimage.binary_erosion(self.wm > 0.9, iterations=1))
        self._grid = np.indices(self.t1.shape, dtype=np.float32)

    def lesion_field(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Lesion strength in [0, 1] per voxel for ``count`` random ellipsoids in white matter."""
        field = np.zeros(self.t1.shape, dtype=np.float32)
        for _ in range(count):
            centre = self._centres[rng.integers(len(self._centres))].astype(np.float32)
            radii = rng.uniform(1.4, 2.6) * rng.uniform(0.75, 1.3, size=3)
            d = np.sqrt(sum(((self._grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)))
            field = np.maximum(field, 1.0 / (1.0 + np.exp((d - 1.0) / 0.15)))
        return field * np.clip(self.wm * 1.2, 0, 1)

    def sample(self, rng: np.random.Generator, has_lesion: bool, augment: bool = True) -> LesionSample:
        """Draw one volume.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (seed it for reproducible data).
        has_lesion : bool
            Plant 1-3 lesions, or none.
        augment : bool
            Shift, intensity, bias field and noise augmentation.
        """
        img = self.t1.copy()
        field = self.lesion_field(rng, int(rng.integers(1, 4))) if has_lesion else np.zeros_like(img)
        img *= 1.0 - rng.uniform(0.35, 0.55) * field
        mask = field > 0.5
        if augment:
            shift = rng.uniform(-2.0, 2.0, size=3)
            img = ndimage.shift(img, shift, order=1, mode="constant", cval=0.0)
            mask = ndimage.shift(mask.astype(np.float32), shift, order=1, mode="constant") > 0.5
            img = img * rng.uniform(0.85, 1.15) + rng.uniform(-10, 10) * (img > 0)
            img *= self.bias_field(rng)
            img += rng.normal(0.0, rng.uniform(2.0, 8.0), size=img.shape)
        return LesionSample(img.astype(np.float32), mask, bool(has_lesion))

    def bias_field(self, rng: np.random.Generator) -> np.ndarray:
        """A smooth multiplicative field, exp of a random linear-plus-quadratic polynomial (about +-15 %)."""
        coords = [(g / max(n - 1, 1)) * 2 - 1 for g, n in zip(self._grid, self.t1.shape)]
        log_field = sum(rng.uniform(-0.1, 0.1) * c for c in coords) + sum(rng.uniform(-0.05, 0.05) * c * c for c in coords)
        return np.exp(log_field).astype(np.float32)
