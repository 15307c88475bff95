#!/usr/bin/env python3
"""Peer of benches/dicom_convert.rs: read a PT and a CT series with pydicom
into arrays sorted along the slice normal with each slice's rescale applied
(what a Python converter does before SUV scaling), and print the times.

Usage: dicom_bench_peer.py PT_DIR CT_DIR
"""
import sys
import time
from pathlib import Path

import numpy as np
import pydicom


def read_series(d: Path) -> np.ndarray:
    slices = []
    for f in d.iterdir():
        ds = pydicom.dcmread(f)
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        pos = float(np.dot(np.cross(iop[:3], iop[3:]), np.array(ds.ImagePositionPatient, dtype=float)))
        slices.append((pos, ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)))
    slices.sort(key=lambda s: s[0])
    return np.stack([s[1] for s in slices])


def main() -> None:
    total = 0.0
    for name, d in (("PT", Path(sys.argv[1])), ("CT", Path(sys.argv[2]))):
        t = time.perf_counter()
        v = read_series(d)
        dt = time.perf_counter() - t
        total += dt
        print(f"pydicom {pydicom.__version__} read {name} {v.shape}: {dt:.2f} s")
    print(f"pydicom read total: {total:.2f} s")


if __name__ == "__main__":
    main()
