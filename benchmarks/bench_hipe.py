"""Hierarchical perturbation against full occlusion at its finest cell, on each sample model.

    python benchmarks/bench_hipe.py [--threads 2]

For each sample model, HiPe (default settings, ``min_cell`` = c) and occlusion
with c-voxel windows at stride c (the grid of HiPe's finest cells) are run on
the sample scan. Reported: the forward passes of each, their ratio, and
whether HiPe's top cell (the finest cell with the highest mean saliency) is
occlusion's top cell, with the occlusion value of HiPe's top cell relative
to occlusion's maximum and its rank. The sample scans are on the models'
grids, so the cells are compared voxel for voxel.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def top_cell(values: np.ndarray, cell: int) -> tuple[int, ...]:
    """Index of the cell (edge ``cell``, grid from 0) with the highest mean value."""
    pad = [(0, (-n) % cell) for n in values.shape]
    v = np.pad(values.astype(np.float64), pad, constant_values=np.nan)
    shape = sum(((n // cell, cell) for n in v.shape), ())
    means = np.nanmean(v.reshape(shape), axis=tuple(range(1, 2 * values.ndim, 2)))
    return tuple(int(i) for i in np.unravel_index(np.nanargmax(means), means.shape)), means


def compare(model, scan, cell: int, **kwargs) -> dict:
    from napari_xai.engine import explain

    t0 = time.perf_counter()
    h = explain(model, scan, "hipe", min_cell=cell, **kwargs)
    t_h = time.perf_counter() - t0
    t0 = time.perf_counter()
    o = explain(model, scan, "occlusion", window=cell, stride=cell, **kwargs)
    t_o = time.perf_counter() - t0
    assert h.checks["model_grid_is_scan_grid"] and o.checks["model_grid_is_scan_grid"]
    hc, _ = top_cell(h.values, cell)
    oc, occ_means = top_cell(o.values, cell)
    n_occ = int(np.isfinite(occ_means).sum())
    rank = int((occ_means > occ_means[hc]).sum()) + 1
    return {
        "hipe_passes": h.checks["hipe"]["forward_passes"],
        "occlusion_passes": n_occ,
        "same_top_cell": hc == oc,
        "hipe_top_rank_in_occlusion": rank,
        "hipe_top_value_over_occlusion_max": float(occ_means[hc] / np.nanmax(occ_means)),
        # how far HiPe's top cell lies from occlusion's (in cells, the largest axis offset): 1 is a neighbour
        "top_cells_apart": int(max(abs(a - b) for a, b in zip(hc, oc))),
        "hipe_s": t_h,
        "occlusion_s": t_o,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from napari_xai.samples import load_lesion_classifier, load_lesion_classifier_2d, load_lesion_segmenter, load_sample_scan, load_sample_scan_axial

    cases = [
        ("classifier 3D", load_lesion_classifier, load_sample_scan, 6, {}),
        ("segmenter 3D (predicted lesion)", load_lesion_segmenter, load_sample_scan, 6, {"target": 1}),
        ("classifier 2D (axial)", load_lesion_classifier_2d, load_sample_scan_axial, 2, {}),
    ]
    print(f"{'model':34s} {'cell':>4s} {'HiPe passes':>11s} {'occl. passes':>12s} {'fewer':>6s} {'same top':>8s} {'rank':>4s} {'value':>6s} {'apart':>5s} {'HiPe s':>7s} {'occl. s':>8s}")
    for name, load_model, load_scan, cell, kw in cases:
        r = compare(load_model(), load_scan(), cell, **kw)
        print(
            f"{name:34s} {cell:4d} {r['hipe_passes']:11d} {r['occlusion_passes']:12d} {r['occlusion_passes'] / r['hipe_passes']:6.1f} "
            f"{str(r['same_top_cell']):>8s} {r['hipe_top_rank_in_occlusion']:4d} {r['hipe_top_value_over_occlusion_max']:6.3f} {r['top_cells_apart']:5d} {r['hipe_s']:7.1f} {r['occlusion_s']:8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
