"""How alike two maps are: Spearman rank correlation and SSIM, in 2D and 3D.

SSIM is written here (a few Gaussian filters) because scikit-image is not an
engine dependency and its windowed form is needed in 3D as well; it follows
Wang et al. (2004) with the settings of scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``, against which the tests check it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

#: SSIM constants of Wang et al. (2004).
K1, K2, SIGMA = 0.01, 0.03, 1.5


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' voxels (0 when either map is constant)."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float(np.array_equal(a, b))
    return float(stats.spearmanr(a, b).statistic)


def unit_range(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to [0, 1] (a constant map becomes zeros)."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two maps already on a common [0, 1] scale.

    Gaussian-weighted local means, variances and covariance (sigma 1.5
    voxels, truncated at 3.5 sigma); the mean is taken away from the border
    (half a window on each side) where the array is large enough, as
    scikit-image does.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    c1, c2 = K1**2, K2**2

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, SIGMA, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = int(3.5 * SIGMA + 0.5)
    if min(s.shape) > 2 * pad:
        s = s[tuple(slice(pad, -pad) for _ in s.shape)]
    return float(s.mean())


def map_similarity(original: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Adebayo et al.'s comparison of two maps: Spearman of |maps| and SSIM of |maps| scaled to [0, 1]."""
    a, b = np.abs(original), np.abs(other)
    return {"spearman": spearman(a, b), "ssim": ssim(unit_range(a), unit_range(b))}
