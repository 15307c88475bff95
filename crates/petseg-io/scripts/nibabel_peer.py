#!/usr/bin/env python3
"""nibabel as the independent NIfTI reader/writer for petseg-io's tests.

    nibabel_peer.py describe FILE...   -> JSON list: what nibabel reads from each file
    nibabel_peer.py make DIR           -> writes nibabel files into DIR, prints JSON of
                                          what nibabel reads back from each of them

Values are listed in Fortran (NIfTI disk) order, scaled as nibabel's `dataobj`
returns them; affines are nibabel's `img.affine` (its sform/qform/base rule).
Needs numpy and nibabel only.
"""
import json
import math
import struct
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def finite_or_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def describe(path):
    img = nib.load(str(path))
    hdr = img.header
    data = np.asanyarray(img.dataobj)
    return {
        "path": str(path),
        "shape": [int(s) for s in data.shape],
        "disk_dtype": str(img.get_data_dtype()),
        "dtype": str(data.dtype),
        "affine": img.affine.tolist(),
        "qform": hdr.get_qform().tolist(),
        "sform": hdr.get_sform().tolist(),
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "zooms": [float(z) for z in hdr.get_zooms()],
        "xyzt_units": list(hdr.get_xyzt_units()),
        "scl_slope": finite_or_none(hdr["scl_slope"]),
        "scl_inter": finite_or_none(hdr["scl_inter"]),
        "endianness": hdr.endianness,
        "values": [float(v) for v in np.asarray(data, dtype=np.float64).ravel(order="F")],
    }


def oblique(spacing, origin, angle_deg=17.0):
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    tilt = math.radians(8.0)
    rot = rot @ np.array(
        [[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]]
    )
    aff = np.eye(4)
    aff[:3, :3] = rot * np.asarray(spacing)[None, :]
    aff[:3, 3] = origin
    return aff


def make(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = (7, 6, 5)
    i, j, k = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    smooth = (np.sin(i * 0.7) * 40 + j * 3.25 - k * 1.5 + 12.0).astype(np.float64)
    written = []

    # int16 auto-scaled by nibabel (slope/inter chosen by nibabel), gzip.
    img = nib.Nifti1Image(smooth.astype(np.float32), oblique([2.0, 2.5, 3.0], [-80.5, 40.25, 12.0]))
    img.set_data_dtype(np.int16)
    p = out / "scaled_i16.nii.gz"
    nib.save(img, str(p))
    written.append(p)

    # int16 with an explicit slope 0.5 / intercept -10, patched into the header.
    raw = (np.arange(np.prod(shape)).reshape(shape, order="F") * 7 - 100).astype(np.int16)
    img = nib.Nifti1Image(raw, np.diag([-2.0, -2.0, 3.0, 1.0]))
    p = out / "slope_i16.nii"
    nib.save(img, str(p))
    buf = bytearray(p.read_bytes())
    struct.pack_into("<ff", buf, 112, 0.5, -10.0)
    p.write_bytes(bytes(buf))
    written.append(p)

    # Big-endian float32, uncompressed and compressed.
    hdr = nib.Nifti1Header(endianness=">")
    img = nib.Nifti1Image(smooth.astype(">f4"), oblique([1.5, 1.5, 4.0], [10, -20, 30]), header=hdr)
    for name in ("be_f32.nii", "be_f32.nii.gz"):
        p = out / name
        nib.save(img, str(p))
        written.append(p)

    # float64.
    img = nib.Nifti1Image(smooth * 1e-3 + 1e6, np.diag([0.8, 0.9, 1.1, 1.0]))
    p = out / "f64.nii.gz"
    nib.save(img, str(p))
    written.append(p)

    # 4-D with a single time point.
    img = nib.Nifti1Image(smooth.astype(np.float32)[..., None], oblique([2, 2, 2], [1, 2, 3], -30))
    p = out / "t1_4d.nii.gz"
    nib.save(img, str(p))
    written.append(p)

    # qform only (sform_code 0): a permuted, flipped grid with qfac -1.
    aff = np.array([[0, 0, -3.0, 50], [-2.0, 0, 0, 20], [0, 2.5, 0, -10], [0, 0, 0, 1]])
    img = nib.Nifti1Image(smooth.astype(np.float32), None)
    img.set_qform(aff, code=1)
    img.set_sform(None, code=0)
    p = out / "qform_only.nii"
    nib.save(img, str(p))
    written.append(p)

    # uint8 labels, uncompressed.
    labels = ((i + 2 * j + 3 * k) % 4).astype(np.uint8)
    img = nib.Nifti1Image(labels, np.diag([3.0, 3.0, 3.0, 1.0]))
    p = out / "labels_u8.nii"
    nib.save(img, str(p))
    written.append(p)

    print(json.dumps([describe(p) for p in written]))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("describe", "make"):
        sys.exit(__doc__)
    if sys.argv[1] == "describe":
        print(json.dumps([describe(p) for p in sys.argv[2:]]))
    else:
        make(sys.argv[2])


if __name__ == "__main__":
    main()
