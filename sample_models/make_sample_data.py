"""Make the shipped sample anatomy and sample scan from the MNI152 template in nilearn's wheel.

Run once by a developer (the outputs are committed to napari_xai/samples/):

    pip download --no-deps nilearn==0.14.1 -d /tmp/nl && unzip -o /tmp/nl/nilearn-*.whl 'nilearn/datasets/data/mni_icbm152_*' -d /tmp/nl
    python sample_models/make_sample_data.py /tmp/nl/nilearn/datasets/data

The template (ICBM 2009a nonlinear symmetric, 1 mm) is smoothed and
resampled to 3 mm on a grid cropped to the brain with a margin, keeping the
template's physical geometry (origin and direction). The sample scan is that
anatomy with two simulated white-matter lesions and mild noise, seed fixed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from napari_xai.engine.geometry import Geometry
from napari_xai.engine.image import ScanImage
from napari_xai.engine.image_io import write_image
from napari_xai.samples import SAMPLE_LESION_MASK, SAMPLE_SCAN, TEMPLATE_GM, TEMPLATE_T1, TEMPLATE_WM
from napari_xai.samples.lesions import LesionSimulator

SPACING_MM = 3.0
MARGIN_MM = 6.0
SAMPLE_SEED = 20261126


def reduce_to_grid(path: Path, reference: sitk.Image | None = None) -> tuple[np.ndarray, sitk.Image]:
    """Smooth (anti-alias) and resample one 1 mm map onto the 3 mm brain grid."""
    img = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    if reference is None:
        arr = sitk.GetArrayFromImage(img)
        nz = np.argwhere(arr > 10)
        lo = np.maximum(nz.min(0) - int(MARGIN_MM), 0)
        hi = np.minimum(nz.max(0) + int(MARGIN_MM), np.array(arr.shape) - 1)
        lo_xyz, hi_xyz = lo[::-1].tolist(), hi[::-1].tolist()
        start = img.TransformIndexToPhysicalPoint([int(v) for v in lo_xyz])
        extent = (np.array(hi_xyz) - np.array(lo_xyz)) * np.array(img.GetSpacing())
        size = [int(np.floor(e / SPACING_MM)) + 1 for e in extent]
        reference = sitk.Image(size, sitk.sitkFloat32)
        reference.SetOrigin(start)
        reference.SetSpacing([SPACING_MM] * 3)
        reference.SetDirection(img.GetDirection())
    sigma = 0.5 * SPACING_MM  # Gaussian anti-aliasing before 3x downsampling
    smooth = sitk.SmoothingRecursiveGaussian(img, sigma)
    out = sitk.Resample(smooth, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return np.clip(sitk.GetArrayFromImage(out), 0, 255), reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("nilearn_data", type=Path, help="nilearn/datasets/data folder holding mni_icbm152_*.nii.gz")
    args = parser.parse_args()
    stem = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    t1, ref = reduce_to_grid(args.nilearn_data / stem.format("t1"))
    wm, _ = reduce_to_grid(args.nilearn_data / stem.format("wm"), ref)
    gm, _ = reduce_to_grid(args.nilearn_data / stem.format("gm"), ref)
    geometry = Geometry.from_sitk(ref)
    for arr, path in ((t1, TEMPLATE_T1), (wm, TEMPLATE_WM), (gm, TEMPLATE_GM)):
        write_image(np.round(arr).astype(np.uint8), geometry, path)
        print(f"wrote {path} {arr.shape}")
    sim = LesionSimulator(ScanImage(np.round(t1), geometry), ScanImage(np.round(wm), geometry))
    rng = np.random.default_rng(SAMPLE_SEED)
    field = sim.lesion_field(rng, 2)
    image = np.round(t1) * (1.0 - 0.5 * field) + rng.normal(0.0, 3.0, size=t1.shape)
    write_image(np.clip(image, 0, None).astype(np.float32), geometry, SAMPLE_SCAN)
    write_image((field > 0.5).astype(np.uint8), geometry, SAMPLE_LESION_MASK)
    print(f"wrote {SAMPLE_SCAN} and {SAMPLE_LESION_MASK} ({int((field > 0.5).sum())} lesion voxels)")


if __name__ == "__main__":
    main()
