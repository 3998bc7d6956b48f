"""Sample data and models shipped with napari-xai.

The anatomy is the MNI ICBM152 2009a symmetric T1 template and its
white/grey-matter maps, taken from the nilearn wheel on PyPI and reduced to a
3 mm grid by ``sample_models/make_sample_data.py`` (copyright notice in
``LICENSE_MNI152.txt`` beside this file). The sample scan has simulated
white-matter lesions; the sample classifier was trained by
``sample_models/train_lesion_classifier.py`` (model card in
``sample_models/lesion_classifier_3d.md``).
"""

from __future__ import annotations

from pathlib import Path

from napari_xai.engine.image import ScanImage
from napari_xai.engine.image_io import read_image

SAMPLES_DIR = Path(__file__).resolve().parent

TEMPLATE_T1 = SAMPLES_DIR / "mni152_t1_3mm.nii.gz"
TEMPLATE_WM = SAMPLES_DIR / "mni152_wm_3mm.nii.gz"
TEMPLATE_GM = SAMPLES_DIR / "mni152_gm_3mm.nii.gz"
SAMPLE_SCAN = SAMPLES_DIR / "sample_brain_t1.nii.gz"
SAMPLE_LESION_MASK = SAMPLES_DIR / "sample_brain_lesions.nii.gz"
LESION_CLASSIFIER_SPEC = SAMPLES_DIR / "lesion_classifier_3d.json"


def load_sample_scan() -> ScanImage:
    """The sample brain T1 (3 mm, MNI152 geometry) with simulated lesions."""
    return read_image(SAMPLE_SCAN)


def load_sample_lesion_mask() -> ScanImage:
    """Ground-truth lesion mask of the sample scan (same grid)."""
    return read_image(SAMPLE_LESION_MASK)


def load_lesion_classifier():
    """The sample 3D lesion classifier as a :class:`~napari_xai.engine.LoadedModel`."""
    from napari_xai.engine.models.loading import load_model

    return load_model(LESION_CLASSIFIER_SPEC)


def lesion_simulator():
    """A :class:`~napari_xai.samples.lesions.LesionSimulator` on the shipped template."""
    from .lesions import LesionSimulator

    return LesionSimulator(read_image(TEMPLATE_T1), read_image(TEMPLATE_WM))
