"""Physical geometry of an image grid, and its translation into host conventions.

Arrays are in numpy order ``(z, y, x)`` (``(y, x)`` in 2D); per-axis metadata
(origin, spacing, direction) is kept as SimpleITK keeps it, ``(x, y, z)``.
The formulas are written out in ``docs/architecture.md`` (Geometry); the tests check them voxel by voxel
against SimpleITK's ``TransformIndexToPhysicalPoint`` on an oblique,
anisotropic volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

#: LPS (SimpleITK, DICOM) to RAS (Slicer, NIfTI's world) in homogeneous form.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Origin, spacing and direction of an image grid, in SimpleITK's ``(x, y, z)`` order.

    Parameters
    ----------
    origin : tuple of float
        Physical position (mm, LPS) of the centre of voxel index 0.
    spacing : tuple of float
        Voxel size along each index axis (mm).
    direction : tuple of float
        Row-major ``d x d`` direction cosine matrix: column ``i`` is the
        physical direction of index axis ``i``.
    """

    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        dim = len(self.spacing)
        if dim not in (2, 3) or len(self.origin) != dim or len(self.direction) != dim * dim:
            raise ValueError(
                f"Geometry needs 2 or 3 axes with matching origin/spacing/direction; got "
                f"origin={self.origin}, spacing={self.spacing}, direction={self.direction}"
            )
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"Geometry spacing must be positive and finite; got {self.spacing}")

    @property
    def dim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.spacing)

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction as a ``d x d`` matrix (columns are index axes, in x, y, z order)."""
        return np.asarray(self.direction, dtype=float).reshape(self.dim, self.dim)

    @classmethod
    def identity(cls, dim: int) -> "Geometry":
        """Unit spacing, zero origin, identity direction."""
        return cls((0.0,) * dim, (1.0,) * dim, tuple(np.eye(dim).ravel().tolist()))

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Geometry":
        """Read the geometry of a SimpleITK image."""
        return cls(
            tuple(float(v) for v in image.GetOrigin()),
            tuple(float(v) for v in image.GetSpacing()),
            tuple(float(v) for v in image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Set this geometry on a SimpleITK image (in place) and return it."""
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image

    def index_to_physical(self, index_zyx: np.ndarray) -> np.ndarray:
        """Map array indices ``(..., z, y, x)`` to physical points ``(..., x, y, z)`` in mm (LPS).

        Vectorised form of ``TransformIndexToPhysicalPoint`` (which takes
        ``(x, y, z)`` indices): ``p = origin + D @ (spacing * ijk)``.
        """
        ijk = np.asarray(index_zyx, dtype=float)[..., ::-1]
        scaled = ijk * np.asarray(self.spacing)
        return scaled @ self.direction_matrix.T + np.asarray(self.origin)

    def physical_to_index(self, points_xyz: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`index_to_physical`: continuous indices in ``(z, y, x)`` order."""
        rel = np.asarray(points_xyz, dtype=float) - np.asarray(self.origin)
        ijk = rel @ np.linalg.inv(self.direction_matrix).T / np.asarray(self.spacing)
        return ijk[..., ::-1]

    def to_dict(self) -> dict[str, list[float]]:
        """Plain-JSON form (used in provenance)."""
        return {"origin": list(self.origin), "spacing": list(self.spacing), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[float]]) -> "Geometry":
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(data["origin"]), tuple(data["spacing"]), tuple(data["direction"]))


def napari_layer_kwargs(geometry: Geometry) -> dict[str, Any]:
    """Keyword arguments that place a napari layer at the image's physical position.

    ``scale = spacing[::-1]``, ``translate = origin[::-1]``, ``rotate =
    D[::-1, ::-1]`` (both axes reversed, not transposed), ``units = mm``. The
    napari world axes are then LPS reversed: ``(S, P, L)`` for a volume.

    Parameters
    ----------
    geometry : Geometry
        The image's geometry.

    Returns
    -------
    dict
        ``scale``, ``translate``, ``rotate`` and ``units`` for ``viewer.add_image``.
    """
    return {
        "scale": tuple(geometry.spacing[::-1]),
        "translate": tuple(geometry.origin[::-1]),
        "rotate": geometry.direction_matrix[::-1, ::-1].copy(),
        "units": ("mm",) * geometry.dim,
    }


def geometry_from_data_to_world(matrix_zyx: np.ndarray) -> Geometry:
    """The geometry of a homogeneous data-to-world matrix in ``(z, y, x)`` order: the inverse of :func:`napari_layer_kwargs`.

    For a layer placed by :func:`napari_layer_kwargs` this gives back
    ``spacing = scale[::-1]``, ``origin = translate[::-1]`` and ``direction =
    rotate[::-1, ::-1]``; any shear or extra affine is folded in by splitting
    the linear part into column norms (spacing) and unit columns (direction).

    Parameters
    ----------
    matrix_zyx : numpy.ndarray
        ``(d + 1) x (d + 1)`` matrix mapping ``(z, y, x, 1)`` indices to world (napari's ``affine_matrix``).

    Raises
    ------
    ValueError
        Not 2D/3D, not finite, or an axis with zero length.
    """
    affine = np.asarray(matrix_zyx, dtype=float)
    dim = affine.shape[0] - 1
    if dim not in (2, 3) or affine.shape != (dim + 1, dim + 1):
        raise ValueError(f"expected a 3x3 or 4x4 homogeneous matrix, got shape {affine.shape}")
    linear, offset = affine[:dim, :dim], affine[:dim, dim]
    norms = np.linalg.norm(linear, axis=0)
    if not np.all(np.isfinite(affine)) or np.any(norms <= 0):
        raise ValueError("the transform is degenerate (an axis of zero length, or non-finite entries)")
    direction_zyx = linear / norms
    return Geometry(
        origin=tuple(float(v) for v in offset[::-1]),
        spacing=tuple(float(v) for v in norms[::-1]),
        direction=tuple(float(v) for v in direction_zyx[::-1, ::-1].ravel()),
    )


def slicer_ijk_to_ras(geometry: Geometry) -> np.ndarray:
    """The 4x4 IJKToRAS matrix Slicer uses for a volume with this geometry.

    ``diag(-1, -1, 1, 1) @ [[D @ diag(spacing), origin], [0, 1]]``, as in
    Slicer's own ``sitkUtils.PushVolumeToSlicer``. Only defined for volumes.
    """
    if geometry.dim != 3:
        raise ValueError("Slicer volumes are 3D; promote a 2D image to a one-slice volume first.")
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = geometry.direction_matrix @ np.diag(geometry.spacing)
    ijk_to_lps[:3, 3] = geometry.origin
    return LPS_TO_RAS @ ijk_to_lps
