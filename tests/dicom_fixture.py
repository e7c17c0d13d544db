"""Real DICOM series written from a NIfTI volume with pydicom: one MR file per slice, as a scanner writes them.

The patient geometry comes from the NIfTI affine (RAS) turned into DICOM's LPS: each slice of the third array axis is
one file; a row of the pixel array runs along the first array axis (``ImageOrientationPatient`` row cosine), a
column along the second; ``ImagePositionPatient`` is the world position of the slice's first voxel. Intensities are
stored as int16 with a ``RescaleSlope``. An oblique affine gives an oblique acquisition.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import MRImageStorage, generate_uid

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_series(
    folder: Path,
    image: nib.Nifti1Image,
    description: str = "T1 MPRAGE sag",
    echo_time: float | Sequence[float] = 3.0,
    repetition_time: float = 2300.0,
    inversion_time: float | None = 900.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    study_uid: str | None = None,
    slices: Sequence[int] | None = None,
    series_uid: str | None = None,
    first_number: int = 0,
) -> str:
    """Write ``image`` as one DICOM series into ``folder`` (one file per slice); returns its SeriesInstanceUID.

    Args:
        echo_time: one echo time, or several: every slice is then written once per echo (a multi-echo series).
        slices: the indices of the third axis to write (default: all).
        series_uid: add to this series (default: a new one); ``first_number`` continues its instance numbers.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = np.asarray(image.dataobj, dtype=np.float32)
    affine = LPS @ image.affine
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    row, column = affine[:3, 0] / spacing[0], affine[:3, 1] / spacing[1]
    slope = max(float(np.abs(data).max()), 1.0) / 30000.0
    series_uid, study_uid = series_uid or generate_uid(), study_uid or generate_uid()
    frame_uid = generate_uid()
    echoes = [echo_time] if isinstance(echo_time, int | float) else list(echo_time)
    number = first_number
    for echo_index, echo in enumerate(echoes, start=1):
        for k in slices if slices is not None else range(data.shape[2]):
            number += 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"  # explicit VR little endian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.Modality, ds.PatientID, ds.PatientName = "MR", "PHANTOM", "Phantom^Colin27"
            ds.SeriesDescription, ds.ProtocolName = description, description
            ds.ImageType = list(image_type)
            ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 3, number, 1
            ds.EchoTime, ds.RepetitionTime, ds.EchoNumbers = float(echo), float(repetition_time), echo_index
            if inversion_time is not None:
                ds.InversionTime = float(inversion_time)
            ds.MRAcquisitionType = "3D"
            ds.ImagePositionPatient = [float(v) for v in (affine @ [0.0, 0.0, float(k), 1.0])[:3]]
            ds.ImageOrientationPatient = [float(v) for v in (*row, *column)]
            ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # between rows, between columns
            ds.SliceThickness = float(spacing[2])
            pixels = np.round(data[:, :, k].T / slope).astype(np.int16)  # rows along axis 1, columns along axis 0
            ds.Rows, ds.Columns = pixels.shape
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
            ds.PixelData = pixels.tobytes()
            ds.save_as(folder / f"IM{number:05d}", enforce_file_format=True)
    return series_uid
