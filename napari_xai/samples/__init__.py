"""Sample data and models shipped with napari-xai.

The anatomy is the MNI ICBM152 2009a symmetric T1 template and its
white/grey-matter maps, taken from the nilearn wheel on PyPI and reduced to a
3 mm grid by ``sample_models/make_sample_data.py`` (copyright notice in
``LICENSE_MNI152.txt`` beside this file). The sample scan has simulated
white-matter lesions; one axial slice of it is the 2D sample. Three sample
models were trained on that anatomy by scripts in ``sample_models/`` (model
cards beside them): a 3D lesion classifier
(``train_lesion_classifier.py``), a 3D lesion segmenter
(``train_lesion_segmenter.py``) and a 2D classifier of axial slices
(``train_lesion_classifier_2d.py``). A fourth, the shortcut classifier
(``train_shortcut_classifier.py``), is a deliberate shortcut model: it
learnt a marker burned in outside the head instead of the lesions, for
showing what the trust metrics (``napari_xai.engine.metrics``) catch.
"""

from __future__ import annotations

from pathlib import Path

from napari_xai.engine.image import ScanImage
from napari_xai.engine.image_io import read_image

from . import architectures  # noqa: F401  (registers the sample models' architectures by name)

SAMPLES_DIR = Path(__file__).resolve().parent

TEMPLATE_T1 = SAMPLES_DIR / "mni152_t1_3mm.nii.gz"
TEMPLATE_WM = SAMPLES_DIR / "mni152_wm_3mm.nii.gz"
TEMPLATE_GM = SAMPLES_DIR / "mni152_gm_3mm.nii.gz"
SAMPLE_SCAN = SAMPLES_DIR / "sample_brain_t1.nii.gz"
SAMPLE_LESION_MASK = SAMPLES_DIR / "sample_brain_lesions.nii.gz"
LESION_CLASSIFIER_SPEC = SAMPLES_DIR / "lesion_classifier_3d.json"
LESION_SEGMENTER_SPEC = SAMPLES_DIR / "lesion_segmenter_3d.json"
LESION_CLASSIFIER_2D_SPEC = SAMPLES_DIR / "lesion_classifier_2d.json"
SAMPLE_SCAN_AXIAL = SAMPLES_DIR / "sample_brain_t1_axial.nii.gz"
SAMPLE_LESION_MASK_AXIAL = SAMPLES_DIR / "sample_brain_lesions_axial.nii.gz"
SHORTCUT_CLASSIFIER_SPEC = SAMPLES_DIR / "shortcut_classifier_3d.json"


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


def load_lesion_segmenter():
    """The sample 3D lesion segmenter as a :class:`~napari_xai.engine.LoadedModel`.

    Trained by ``sample_models/train_lesion_segmenter.py`` (model card in
    ``sample_models/lesion_segmenter_3d.md``).
    """
    from napari_xai.engine.models.loading import load_model

    return load_model(LESION_SEGMENTER_SPEC)


def load_lesion_classifier_2d():
    """The sample 2D (axial slice) lesion classifier as a :class:`~napari_xai.engine.LoadedModel`.

    Trained by ``sample_models/train_lesion_classifier_2d.py`` (model card in
    ``sample_models/lesion_classifier_2d.md``).
    """
    from napari_xai.engine.models.loading import load_model

    return load_model(LESION_CLASSIFIER_2D_SPEC)


def load_sample_scan_axial() -> ScanImage:
    """One axial slice of the sample scan through a lesion, with 2D geometry (x, y of the 3D scan)."""
    return read_image(SAMPLE_SCAN_AXIAL)


def load_sample_lesion_mask_axial() -> ScanImage:
    """Ground-truth lesion mask of :func:`load_sample_scan_axial` (same 2D grid)."""
    return read_image(SAMPLE_LESION_MASK_AXIAL)


def load_shortcut_classifier():
    """The deliberate shortcut model (a marker outside the head predicts its label) as a :class:`~napari_xai.engine.LoadedModel`.

    Trained by ``sample_models/train_shortcut_classifier.py`` (model card in
    ``sample_models/shortcut_classifier_3d.md``).
    """
    from napari_xai.engine.models.loading import load_model

    return load_model(SHORTCUT_CLASSIFIER_SPEC)


def load_sample_scan_with_marker() -> ScanImage:
    """The sample scan with the shortcut model's marker burned in beside the head (same geometry)."""
    from .markers import burn_in_marker

    scan = load_sample_scan()
    return ScanImage(burn_in_marker(scan.array), scan.geometry, None, "sample_brain_t1_marker")
