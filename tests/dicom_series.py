"""A small CT-like DICOM series written with pydicom, for the DICOM export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_xai.engine import Geometry


def write_ct_series(folder: Path, hu: np.ndarray, geometry: Geometry, *, shuffle_names: bool = True) -> list[Path]:
    """Write ``hu`` (z, y, x int16) as single-frame CT slices on ``geometry``; file names out of slice order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    d = geometry.direction_matrix
    order = np.random.default_rng(0).permutation(len(hu)) if shuffle_names else np.arange(len(hu))
    paths = []
    for k, plane in enumerate(hu):
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "PHANTOM01", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", "1", "A1", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "CT", 1, k + 1, "napari-xai tests"
        ds.ImagePositionPatient = [float(v) for v in np.asarray(geometry.origin) + d[:, 2] * geometry.spacing[2] * k]
        ds.ImageOrientationPatient = [float(v) for v in [*d[:, 0], *d[:, 1]]]
        ds.PixelSpacing = [float(geometry.spacing[1]), float(geometry.spacing[0])]
        ds.SliceThickness = float(geometry.spacing[2])
        ds.PositionReferenceIndicator = ""
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelData = np.ascontiguousarray(plane, dtype=np.int16).tobytes()
        path = folder / f"img{int(order[k]):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
