#!/usr/bin/env python3
"""Write a synthetic PT series with pydicom (not with petseg's writer) and the
SUV values an independent computation expects, for tests/dicom_pydicom.rs.

The series is made to trip every shortcut:
* RadiopharmaceuticalStartTime only (no StartDateTime), at 23:15 the day
  before the series date (midnight crossing);
* SeriesTime 01:05 from a re-reconstruction, later than every acquisition;
* four beds acquired from the top down, so neither the first file nor the
  first slice is the earliest bed (earliest: 00:20:00);
* per-slice RescaleSlope, InstanceNumber against the geometry, file names
  shuffled, and four transfer syntaxes mixed in one series (explicit and
  implicit VR little endian, deflated, RLE lossless via pydicom's encoder).

Usage: dicom_write_pt.py OUT_DIR EXPECTED_JSON
"""
import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

COLS, ROWS, NK = 16, 12, 24
ROW_SPACING, COL_SPACING, SLICE_STEP = 3.0, 4.0, 2.5  # PixelSpacing = [row, col]
ORIGIN_LPS = np.array([-30.0, -20.0, -500.0])
WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 81.3, 3.1e8, 6586.2
SERIES_DATE = "20261129"
INJECTION = datetime(2026, 11, 28, 23, 15, 0)
EARLIEST_BED = datetime(2026, 11, 29, 0, 20, 0)
SLICES_PER_BED, BED_S = 6, 150


def main(out_dir: Path, expected_json: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    # Activity in Bq/ml, [k, row, col].
    k, r, c = np.meshgrid(np.arange(NK), np.arange(ROWS), np.arange(COLS), indexing="ij")
    bqml = 4000.0 + 9000.0 * np.exp(-((k - 12) ** 2 + (r - 6) ** 2 + (c - 8) ** 2) / 18.0)
    bqml *= 1.0 + 0.5 * (k / NK)  # a different maximum (slope) per slice
    bqml += rng.uniform(0, 300, bqml.shape)

    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless]
    names = [f"slice_{n:03d}" for n in range(NK)]
    random.Random(3).shuffle(names)
    decoded = np.zeros((NK, ROWS, COLS))
    n_beds = NK // SLICES_PER_BED
    for kk in range(NK):
        slope = float(f"{bqml[kk].max() / 32767.0:.10g}")
        stored = np.round(bqml[kk] / slope).astype(np.int16)
        decoded[kk] = stored.astype(np.float64) * slope
        bed = kk // SLICES_PER_BED
        acq = EARLIEST_BED + timedelta(seconds=BED_S * (n_beds - 1 - bed))  # top bed first

        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.128"
        ds.SOPInstanceUID = generate_uid()
        ds.Modality = "PT"
        ds.PatientName, ds.PatientID = "PYDICOM^PT", "PY0001"
        ds.PatientWeight = f"{WEIGHT_KG}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesDate, ds.SeriesTime = SERIES_DATE, "010500.000000"  # re-reconstruction
        ds.AcquisitionDate, ds.AcquisitionTime = acq.strftime("%Y%m%d"), acq.strftime("%H%M%S.%f")
        ds.InstanceNumber = NK - kk
        ds.Units, ds.DecayCorrection = "BQML", "START"
        ds.CorrectedImage = ["ATTN", "DECY", "SCAT"]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ORIGIN_LPS + [0.0, 0.0, SLICE_STEP * kk]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [ROW_SPACING, COL_SPACING]
        ds.SliceThickness = SLICE_STEP
        info = Dataset()
        info.RadiopharmaceuticalStartTime = INJECTION.strftime("%H%M%S.%f")
        info.RadionuclideTotalDose = f"{DOSE_BQ}"
        info.RadionuclideHalfLife = f"{HALF_LIFE_S}"
        ds.RadiopharmaceuticalInformationSequence = Sequence([info])
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
        ds.PixelData = stored.tobytes()

        ts = syntaxes[kk % len(syntaxes)]
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if ts == RLELossless:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.compress(RLELossless)
        else:
            ds.file_meta.TransferSyntaxUID = ts
        ds.save_as(out_dir / f"{names[kk]}.dcm", enforce_file_format=True)

    # Independent SUV: earliest acquisition (00:20:00 on the 29th) minus the
    # injection (23:15:00 on the 28th) = 3900 s.
    decay_s = (EARLIEST_BED - INJECTION).total_seconds()
    factor = WEIGHT_KG * 1000.0 / (DOSE_BQ * 2.0 ** (-decay_s / HALF_LIFE_S))
    suv = decoded * factor  # [k, row, col]
    # RAS affine: i = column index along +x_LPS (→ −x RAS), j = row along +y_LPS.
    affine = [
        [-COL_SPACING, 0.0, 0.0, -ORIGIN_LPS[0]],
        [0.0, -ROW_SPACING, 0.0, -ORIGIN_LPS[1]],
        [0.0, 0.0, SLICE_STEP, ORIGIN_LPS[2]],
        [0.0, 0.0, 0.0, 1.0],
    ]
    expected = {
        "decay_time_s": decay_s,
        "suv_factor": factor,
        "shape": [COLS, ROWS, NK],
        "affine": affine,
        # NIfTI raster order (i fastest): [k, row, col] C order is exactly that.
        "suv": suv.ravel().tolist(),
        "pydicom": pydicom.__version__,
    }
    expected_json.write_text(json.dumps(expected))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
