"""Supervoxels for LIME and KernelSHAP: a regular grid, or an intensity-aware SLIC over-segmentation.

LIME's image explainer groups pixels into superpixels (quickshift/SLIC in
2D); a volume needs supervoxels. scikit-image's ``slic`` would do but is not a
dependency, so a compact SLIC (Achanta et al., TPAMI 2012) is written here
with numpy/scipy, vectorised and N-dimensional:

1. centres on a regular grid with step ``S = (voxels / n_segments) ** (1/d)``;
2. each voxel is assigned to the nearest of the centres of its own and the
   ``3**d - 1`` neighbouring grid cells (SLIC's ``2S`` search window), with
   ``D = |I - I_k|**2 + (compactness / S)**2 * |p - p_k|**2`` on intensities
   rescaled to [0, 1] per channel (so ``compactness`` 0.1 plays the role of
   scikit-image's default 10 on 0-100 colour values);
3. centres move to the means of their voxels; repeat ``max_iter`` times;
4. labels are split into connected components and components smaller than a
   quarter of ``S**d`` are merged into a touching neighbour.

Memory is O(voxels): distances are computed one neighbouring offset at a
time. Inputs larger than :data:`MAX_SLIC_VOXELS` are reduced to block means
of an integer factor per axis first (supervoxels are much larger than that
factor), and the labels repeated back, which keeps SLIC to a few seconds.
"""

from __future__ import annotations

import itertools
import math
from typing import Generator

import numpy as np
from scipy import ndimage

from ...errors import MethodError
from ...progress import Progress

SEGMENTATIONS = ("grid", "slic")
#: Above this many voxels SLIC runs on a grid subsampled by an integer factor (labels are repeated back).
MAX_SLIC_VOXELS = 2**16


def grid_labels(shape: tuple[int, ...], cell: tuple[int, ...]) -> np.ndarray:
    """Labels ``0..M-1`` of a regular grid of cells of edge ``cell`` voxels (last cell clipped)."""
    idx = [np.arange(n) // c for n, c in zip(shape, cell)]
    counts = [int(i[-1]) + 1 for i in idx]
    mesh = np.meshgrid(*idx, indexing="ij")
    return np.ravel_multi_index(tuple(mesh), counts).astype(np.int64)


def slic_labels(
    image: np.ndarray, n_segments: int, compactness: float, max_iter: int = 10
) -> Generator[Progress, None, np.ndarray]:
    """SLIC supervoxels of ``image`` ``(C, *spatial)``, as a generator yielding one progress event per iteration.

    Returns
    -------
    numpy.ndarray
        int64 labels ``0..M-1`` on the spatial grid, each label one connected region.
    """
    full_shape = image.shape[1:]
    factor = max(1, math.ceil((int(np.prod(full_shape)) / MAX_SLIC_VOXELS) ** (1.0 / len(full_shape))))
    if factor > 1:  # block means of factor**d voxels: SLIC runs on the coarser grid, labels are repeated back
        pad = [(0, 0)] + [(0, -n % factor) for n in full_shape]
        image = np.pad(image.astype(np.float32), pad, mode="edge")
        blocks = [image.shape[0]] + [v for n in image.shape[1:] for v in (n // factor, factor)]
        image = image.reshape(blocks).mean(axis=tuple(range(2, 2 * len(full_shape) + 1, 2)))
    shape = image.shape[1:]
    dim = len(shape)
    n_vox = int(np.prod(shape))
    feats = image.reshape(image.shape[0], -1).astype(np.float32)
    lo, hi = feats.min(axis=1, keepdims=True), feats.max(axis=1, keepdims=True)
    feats = (feats - lo) / np.where(hi > lo, hi - lo, 1.0)
    step = (n_vox / max(1, n_segments)) ** (1.0 / dim)
    n_cells = [max(1, int(round(n / step))) for n in shape]
    cell_edge = [n / k for n, k in zip(shape, n_cells)]
    coords = np.stack([c.ravel() for c in np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")])
    own_cell = np.stack([np.minimum((coords[a] // cell_edge[a]).astype(np.int64), n_cells[a] - 1) for a in range(dim)])
    # initial centres: cell centres, with the mean intensity of the cell
    n_centres = int(np.prod(n_cells))
    own_index = np.ravel_multi_index(tuple(own_cell), n_cells)
    pos, feat = _means(own_index, coords, feats, n_centres)
    weight = np.float32((compactness / step) ** 2)
    labels = own_index
    offsets = list(itertools.product((-1, 0, 1), repeat=dim))
    for it in range(max_iter):
        best = np.full(n_vox, np.inf, dtype=np.float32)
        new = np.empty(n_vox, dtype=np.int64)
        for off in offsets:
            cell = own_cell + np.asarray(off)[:, None]
            valid = np.all((cell >= 0) & (cell < np.asarray(n_cells)[:, None]), axis=0)
            k = np.ravel_multi_index(tuple(np.clip(cell, 0, np.asarray(n_cells)[:, None] - 1)), n_cells)
            d = ((feats - feat[:, k]) ** 2).sum(axis=0) + weight * ((coords - pos[:, k]) ** 2).sum(axis=0)
            d[~valid] = np.inf
            better = d < best
            best[better] = d[better]
            new[better] = k[better]
        changed = not np.array_equal(new, labels)
        labels = new
        pos_new, feat_new = _means(labels, coords, feats, n_centres)
        filled = np.bincount(labels, minlength=n_centres) > 0
        pos[:, filled], feat[:, filled] = pos_new[:, filled], feat_new[:, filled]
        yield Progress(it + 1, max_iter, f"supervoxels (SLIC): iteration {it + 1}/{max_iter}")
        if not changed:
            break
    labels = labels.reshape(shape)
    if factor > 1:
        for axis, n in enumerate(full_shape):
            labels = np.repeat(labels, factor, axis=axis)[(slice(None),) * axis + (slice(0, n),)]
    return _connected(labels, min_size=max(1, int((step * factor) ** dim / 4)))


def _means(labels: np.ndarray, coords: np.ndarray, feats: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    count = np.maximum(np.bincount(labels, minlength=n), 1)
    pos = np.stack([np.bincount(labels, weights=c, minlength=n) / count for c in coords])
    feat = np.stack([np.bincount(labels, weights=f, minlength=n) / count for f in feats])
    return pos.astype(np.float32), feat.astype(np.float32)


def _connected(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Split labels into connected components, merge small ones into a neighbour, number them ``0..M-1``."""
    out = np.zeros(labels.shape, dtype=np.int64)
    next_label = 1
    for value, box in enumerate(ndimage.find_objects(labels + 1)):
        if box is None:
            continue
        comp, n = ndimage.label(labels[box] == value)
        sel = comp > 0
        out[box][sel] = comp[sel] + next_label - 1
        next_label += n
    sizes = np.bincount(out.ravel())
    structure = ndimage.generate_binary_structure(labels.ndim, 1)
    boxes = ndimage.find_objects(out)
    for small in np.flatnonzero((sizes > 0) & (sizes < min_size)):
        # work in the component's bounding box grown by one voxel
        box = tuple(slice(max(0, b.start - 1), b.stop + 1) for b in boxes[small - 1])
        sub = out[box]
        region = sub == small
        ring = ndimage.binary_dilation(region, structure) & ~region
        if ring.any():
            sub[region] = np.bincount(sub[ring]).argmax()
    _, dense = np.unique(out, return_inverse=True)
    return dense.reshape(labels.shape).astype(np.int64)


def supervoxels(x: np.ndarray, params: dict, method: str) -> Generator[Progress, None, np.ndarray]:
    """Supervoxel labels for the model-space input ``x`` ``(C, *spatial)`` from a method's parameters.

    Uses ``segmentation`` (``grid`` or ``slic``), ``cell`` (grid edge in
    voxels, int or per axis), ``n_segments`` and ``compactness`` (SLIC).
    """
    shape = x.shape[1:]
    if params["segmentation"] == "grid":
        cell = params["cell"]
        cell = tuple(cell) if isinstance(cell, tuple) else (cell,) * len(shape)
        if len(cell) != len(shape):
            raise MethodError(f"{method}: cell {cell} has {len(cell)} entries for a {len(shape)}D image.", f"Give one int or {len(shape)} ints (z, y, x).")
        labels = grid_labels(shape, tuple(min(c, n) for c, n in zip(cell, shape)))
    else:
        labels = yield from slic_labels(x, params["n_segments"], params["compactness"])
    if labels.max() < 1:
        raise MethodError(
            f"{method}: the input was divided into only one supervoxel, so there is nothing to compare.",
            "Use a smaller cell (grid) or more segments (slic).",
        )
    return labels
