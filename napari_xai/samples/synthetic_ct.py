"""A generated CT-like volume in Hounsfield units. SYNTHETIC: not a scan of a patient or of a phantom.

No package on the registries this project installs from holds a full 3D CT
(pydicom's and pydicom-data's CT files are single slices or a few tiny
frames), so the CT paths (MONAI bundles, nnU-Net models, HU windows and
nnU-Net's CT normalisation) are exercised on this generated volume. Its
name says so wherever it appears (layer names, captions, provenance).

The anatomy is a cartoon of an axial abdomen/lower-chest CT: air outside an
elliptic body, a subcutaneous fat ring, soft tissue, two lung bases, a spine,
a liver-like organ and one enhancing round lesion, with Gaussian noise;
values are typical HU (air -1000, lung -850, fat -100, soft tissue 40,
liver 60, lesion 120, bone 700).
"""

from __future__ import annotations

import numpy as np

from napari_xai.engine.geometry import Geometry
from napari_xai.engine.image import ScanImage

SYNTHETIC_CT_NAME = "SYNTHETIC CT-like volume (generated, not a patient scan)"

#: Typical Hounsfield units of the tissues drawn.
HU = {"air": -1000.0, "lung": -850.0, "fat": -100.0, "soft_tissue": 40.0, "liver": 60.0, "lesion": 120.0, "bone": 700.0}


def synthetic_ct(
    shape: tuple[int, int, int] = (40, 64, 64),
    spacing: tuple[float, float, float] = (1.5, 0.7, 0.7),
    seed: int = 0,
    noise_hu: float = 12.0,
    lesion_centre: tuple[float, float, float] | None = None,
    lesion_radius_mm: float = 4.0,
) -> tuple[ScanImage, np.ndarray]:
    """A CT-like volume in HU and its lesion mask. SYNTHETIC, labelled as such.

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)`` voxels.
    spacing : tuple of float
        ``(z, y, x)`` voxel size in mm (a typical CT: 1.5 mm slices, 0.7 mm in-plane).
    seed : int
        Noise seed.
    noise_hu : float
        Standard deviation of the added noise (HU).
    lesion_centre : tuple of float, optional
        ``(z, y, x)`` as fractions of the extent; default inside the liver-like organ.
    lesion_radius_mm : float
        Lesion radius.

    Returns
    -------
    scan : ScanImage
        float32 HU on an axial LPS grid (identity direction), centred on the origin,
        named :data:`SYNTHETIC_CT_NAME`.
    lesion : numpy.ndarray
        Boolean mask of the lesion on the same grid.
    """
    nz, ny, nx = shape
    sz, sy, sx = spacing
    z, y, x = np.meshgrid(
        (np.arange(nz) - (nz - 1) / 2) * sz, (np.arange(ny) - (ny - 1) / 2) * sy, (np.arange(nx) - (nx - 1) / 2) * sx, indexing="ij"
    )
    half_x, half_y, half_z = nx * sx / 2, ny * sy / 2, nz * sz / 2
    body = (x / (0.92 * half_x)) ** 2 + (y / (0.72 * half_y)) ** 2 <= 1
    inner = (x / (0.84 * half_x)) ** 2 + (y / (0.64 * half_y)) ** 2 <= 1
    vol = np.full(shape, HU["air"])
    vol[body] = HU["fat"]
    vol[inner] = HU["soft_tissue"]
    # lung bases in the upper (superior, +z) slices, shrinking downwards
    lung_r = np.clip((z + 0.2 * half_z) / (1.2 * half_z), 0, 1)
    for side in (-1, 1):
        lung = ((x - side * 0.42 * half_x) / (0.3 * half_x)) ** 2 + ((y + 0.05 * half_y) / (0.4 * half_y)) ** 2 <= lung_r**2
        vol[lung & inner] = HU["lung"]
    liver = ((x + 0.35 * half_x) / (0.45 * half_x)) ** 2 + ((y + 0.05 * half_y) / (0.5 * half_y)) ** 2 <= 1
    vol[liver & inner & (z < 0.5 * half_z)] = HU["liver"]
    spine = (x / (0.1 * half_x)) ** 2 + ((y - 0.48 * half_y) / (0.1 * half_y)) ** 2 <= 1  # +y is posterior in LPS
    vol[spine] = HU["bone"]
    if lesion_centre is None:
        centre = (-0.2 * half_z, -0.1 * half_y, -0.35 * half_x)
    else:
        centre = tuple((f - 0.5) * 2 * h for f, h in zip(lesion_centre, (half_z, half_y, half_x)))
    lesion = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= lesion_radius_mm**2
    vol[lesion] = HU["lesion"]
    vol += np.random.default_rng(seed).normal(0.0, noise_hu, shape) * body
    origin = (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz)
    geometry = Geometry(origin, (sx, sy, sz), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return ScanImage(vol.astype(np.float32), geometry, None, SYNTHETIC_CT_NAME), lesion
