#!/usr/bin/env python3
"""Decode a DICOM series with pydicom, independently of petseg, for
tests/dicom_pydicom.rs: every file's stored values × its own RescaleSlope +
RescaleIntercept, stacked in the order of ImagePositionPatient along the slice
normal, and the transfer syntaxes seen.

Usage: dicom_read_series.py SERIES_DIR OUT_JSON
"""
import json
import sys
from pathlib import Path

import numpy as np
import pydicom


def main(series_dir: Path, out_json: Path) -> None:
    slices = []
    syntaxes = set()
    for f in sorted(series_dir.iterdir()):
        ds = pydicom.dcmread(f)
        syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        pos = float(np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float)))
        values = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((pos, values))
    slices.sort(key=lambda s: s[0])
    stack = np.stack([s[1] for s in slices])  # [k, row, col] = NIfTI raster order
    out_json.write_text(
        json.dumps({"values": stack.ravel().tolist(), "shape": [stack.shape[2], stack.shape[1], stack.shape[0]],
                    "transfer_syntaxes": sorted(syntaxes)})
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
