#!/usr/bin/env python3
"""Times nibabel (and SimpleITK when installed) loading and saving a .nii.gz,
for comparison with petseg-io's `nifti_io` bench, in the same run.

    bench_peer.py FILE.nii.gz OUT_DIR [REPS]

Prints JSON: median seconds per operation, and the files the peers wrote
(so that the Rust bench can time reading them too). nibabel saves with its
default compresslevel (1); SimpleITK with its default (useCompression=True).
"""
import json
import statistics
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src = sys.argv[1]
    out = Path(sys.argv[2])
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    out.mkdir(parents=True, exist_ok=True)
    res = {"reps": reps}

    def nib_load():
        img = nib.load(src)
        return img, np.asarray(img.dataobj)

    img, data = nib_load()
    res["nibabel_load_s"] = median_time(nib_load, reps)
    nib_out = out / "nibabel.nii.gz"
    res["nibabel_save_s"] = median_time(lambda: nib.save(nib.Nifti1Image(data, img.affine, img.header), str(nib_out)), reps)
    res["nibabel_file"] = str(nib_out)
    res["nibabel_file_bytes"] = nib_out.stat().st_size
    res["nibabel_load_own_s"] = median_time(lambda: np.asarray(nib.load(str(nib_out)).dataobj), reps)

    try:
        import SimpleITK as sitk
    except ImportError:
        sitk = None
    if sitk is not None:
        res["simpleitk_version"] = sitk.Version.VersionString()
        sitk_img = sitk.ReadImage(src)
        res["simpleitk_read_s"] = median_time(lambda: sitk.GetArrayViewFromImage(sitk.ReadImage(src)), reps)
        sitk_out = out / "simpleitk.nii.gz"
        res["simpleitk_write_s"] = median_time(lambda: sitk.WriteImage(sitk_img, str(sitk_out), True), reps)
        res["simpleitk_file"] = str(sitk_out)
        res["simpleitk_file_bytes"] = sitk_out.stat().st_size
        res["simpleitk_read_nibabel_file_s"] = median_time(lambda: sitk.ReadImage(str(nib_out)), reps)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
