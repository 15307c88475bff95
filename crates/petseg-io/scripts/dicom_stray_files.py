"""Writes stray files that real DICOM exports carry next to their image
series, with pydicom (an independent writer), for the convert tests:

* ``report_sr.dcm``: a Basic Text SR document (Modality SR, its own series,
  no pixel data), with file meta;
* ``no_meta.dcm``: a small CT image data set written without preamble and
  file meta (implicit VR little endian, as some exporters and ``dcmdump``
  round trips produce);
* ``DICOMDIR``: a media directory (pydicom's FileSet) naming both.

Run: python3 dicom_stray_files.py OUT_DIR   (pydicom >= 3, numpy)
"""
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid


def base(modality, sop_class):
    ds = Dataset()
    ds.PatientID = "STRAY"
    ds.PatientName = "Stray^Files"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20261128", "090000", "1"
    ds.ContentDate, ds.ContentTime = "20261128", "090000"
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    return ds


def with_meta(ds):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    return ds


def main(out):
    os.makedirs(out, exist_ok=True)
    sr = with_meta(base("SR", "1.2.840.10008.5.1.4.1.1.88.11"))
    sr.ValueType = "CONTAINER"
    sr.ContinuityOfContent = "SEPARATE"
    sr.CompletionFlag = "COMPLETE"
    sr.VerificationFlag = "UNVERIFIED"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = "11528-7", "LN"
    title.CodeMeaning = "Radiology Report"
    sr.ConceptNameCodeSequence = [title]
    sr_path = os.path.join(out, "report_sr.dcm")
    sr.save_as(sr_path, enforce_file_format=True)

    ct = base("CT", "1.2.840.10008.5.1.4.1.1.2")
    ct.Rows, ct.Columns = 4, 4
    ct.PixelSpacing = [1.0, 1.0]
    ct.ImagePositionPatient = [0.0, 0.0, 0.0]
    ct.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ct.SamplesPerPixel = 1
    ct.PhotometricInterpretation = "MONOCHROME2"
    ct.BitsAllocated, ct.BitsStored, ct.HighBit = 16, 16, 15
    ct.PixelRepresentation = 1
    ct.RescaleSlope, ct.RescaleIntercept = 1, 0
    ct.PixelData = np.arange(16, dtype="<i2").tobytes()
    no_meta = os.path.join(out, "no_meta.dcm")
    # No file_meta and no preamble: the bare data set.
    ct.save_as(no_meta, implicit_vr=True, little_endian=True, enforce_file_format=False)
    with open(no_meta, "rb") as f:
        head = f.read(132)
    assert head[128:132] != b"DICM" and head[:4] != b"DICM", "file meta was written"

    fs = FileSet()
    fs.add(sr)
    ct_meta = with_meta(ct)
    ct_meta.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    fs.add(ct_meta)
    staging = os.path.join(out, ".fileset")
    fs.write(staging)
    os.replace(os.path.join(staging, "DICOMDIR"), os.path.join(out, "DICOMDIR"))
    for root, dirs, files in os.walk(staging, topdown=False):
        for name in files:
            os.remove(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(staging)
    print(pydicom.__version__)


if __name__ == "__main__":
    main(sys.argv[1])
