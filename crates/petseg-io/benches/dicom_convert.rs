//! End-to-end DICOM → NIfTI conversion of a whole-body study: a 300-slice PT
//! series (192×192, int16 with per-slice slopes) and a 600-slice CT series
//! (512×512), as `petseg convert` does it: scan headers, check geometry and
//! SUV rules, decode both series, resample the CT onto the PET grid, write
//! the NIfTI files. pydicom reading the same series (sort + per-slice rescale)
//! is timed in the same run as the peer.
//!
//! Run: `cargo bench -p petseg-io --bench dicom_convert` (python3 + pydicom +
//! numpy for the peer). Environment: `DICOM_BENCH_PET_SLICES` (300),
//! `DICOM_BENCH_CT_SLICES` (600), `DICOM_BENCH_TS` (`explicit` | `rle` | `deflate`).

use std::process::Command;
use std::time::Instant;

use chrono::NaiveDate;
use petseg_io::dicom::{
    decode_ct_hu, decode_pet_suv, plan_ct_hu, plan_pet_suv, scan_dir, write_series, PetDoseTiming,
    SeriesKind, SeriesSpec, SuvOverrides, TransferSyntaxChoice,
};
use petseg_io::nifti::write_nifti;
use petseg_io::resample::{resample_onto, Interpolation};
use petseg_io::{Affine, Volume};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Cheap deterministic texture in [0, 1).
fn hash01(i: usize) -> f32 {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

fn volume(
    shape: [usize; 3],
    spacing: [f64; 3],
    f: impl Fn(f64, f64, f64, usize) -> f32 + Sync,
) -> Volume<f32> {
    let [ni, nj, nk] = shape;
    let fov = [
        ni as f64 * spacing[0],
        nj as f64 * spacing[1],
        nk as f64 * spacing[2],
    ];
    let affine = Affine::from_rows([
        [-spacing[0], 0.0, 0.0, fov[0] / 2.0],
        [0.0, -spacing[1], 0.0, fov[1] / 2.0],
        [0.0, 0.0, spacing[2], -fov[2]],
        [0.0, 0.0, 0.0, 1.0],
    ])
    .expect("valid affine");
    let data: Vec<f32> = (0..ni * nj * nk)
        .map(|idx| {
            let (i, j, k) = (idx % ni, (idx / ni) % nj, idx / (ni * nj));
            // Normalised body coordinates: x, y in [-1, 1], z in [0, 1].
            let x = 2.0 * i as f64 / ni as f64 - 1.0;
            let y = 2.0 * j as f64 / nj as f64 - 1.0;
            f(x, y, k as f64 / nk as f64, idx)
        })
        .collect();
    Volume::from_raster(shape, data, affine).expect("valid volume")
}

fn main() {
    let pet_slices = env_usize("DICOM_BENCH_PET_SLICES", 300);
    let ct_slices = env_usize("DICOM_BENCH_CT_SLICES", 600);
    let ts = match std::env::var("DICOM_BENCH_TS").as_deref() {
        Ok("rle") => TransferSyntaxChoice::RleLossless,
        Ok("deflate") => TransferSyntaxChoice::DeflatedExplicitVrLittleEndian,
        _ => TransferSyntaxChoice::ExplicitVrLittleEndian,
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let (pt_dir, ct_dir, out) = (
        tmp.path().join("PT"),
        tmp.path().join("CT"),
        tmp.path().join("out"),
    );
    std::fs::create_dir_all(&out).expect("out dir");

    // PET: 4 mm × 4 mm × 3 mm; CT: 1.5 mm × 1.5 mm × 1.5 mm over the same length.
    let pet = volume([192, 192, pet_slices], [4.0, 4.0, 3.0], |x, y, _z, idx| {
        let body = (x * x / 0.5 + y * y / 0.3) < 1.0;
        if body {
            1.0 + 3.0 * hash01(idx)
        } else {
            0.05 * hash01(idx)
        }
    });
    let ct_dz = 3.0 * pet_slices as f64 / ct_slices as f64;
    let ct = volume([512, 512, ct_slices], [1.5, 1.5, ct_dz], |x, y, _z, idx| {
        let r = x * x / 0.5 + y * y / 0.3;
        if r >= 1.0 {
            -1000.0
        } else if r < 0.05 {
            700.0
        } else {
            (40.0 + 30.0 * hash01(idx)).round()
        }
    });
    let t0 = NaiveDate::from_ymd_opt(2026, 11, 28)
        .expect("date")
        .and_hms_opt(9, 0, 0)
        .expect("time");
    let spec = |kind, n| SeriesSpec {
        kind,
        patient_id: "BENCH".into(),
        seed: 1,
        series_number: n,
        description: "bench".into(),
        transfer_syntax: ts,
    };
    let t = Instant::now();
    write_series(
        &pt_dir,
        &pet,
        &spec(
            SeriesKind::Pet(PetDoseTiming::f18(75.0, 3e8, t0, 3600.0)),
            2,
        ),
    )
    .expect("write PT");
    write_series(
        &ct_dir,
        &ct,
        &spec(
            SeriesKind::Ct {
                acquired: t0,
                patient_weight_kg: 75.0,
            },
            1,
        ),
    )
    .expect("write CT");
    let write_s = t.elapsed().as_secs_f64();
    let mb = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum::<u64>() as f64
            / 1e6
    };
    println!(
        "series: PT {pet_slices} slices 192x192 ({:.0} MB), CT {ct_slices} slices 512x512 ({:.0} MB), {ts:?}; written in {write_s:.2} s",
        mb(&pt_dir),
        mb(&ct_dir)
    );

    // The conversion, step by step (what `petseg convert --pet --ct --ct-native` runs).
    let total = Instant::now();
    let t = Instant::now();
    let (pet_scan, ct_scan) = (
        scan_dir(&pt_dir).expect("scan PT"),
        scan_dir(&ct_dir).expect("scan CT"),
    );
    let scan_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pet_series = pet_scan.single("PT").expect("PT");
    let ct_series = ct_scan.single("CT").expect("CT");
    let plan = plan_pet_suv(pet_series, &SuvOverrides::default()).expect("plan PT");
    let ct_geom = plan_ct_hu(ct_series).expect("plan CT");
    let plan_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pet_suv = decode_pet_suv(pet_series, &plan).expect("decode PT");
    let pet_decode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let ct_hu = decode_ct_hu(ct_series, &ct_geom).expect("decode CT");
    let ct_decode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let ct_on_pet = resample_onto(
        &ct_hu,
        pet_suv.shape(),
        pet_suv.affine(),
        Interpolation::Linear,
        -1024.0,
    )
    .expect("resample");
    let resample_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    write_nifti(out.join("b_0001.nii.gz"), &pet_suv).expect("write PET");
    write_nifti(out.join("b_0000.nii.gz"), &ct_on_pet).expect("write CT on PET grid");
    write_nifti(out.join("b_ct.nii.gz"), &ct_hu).expect("write native CT");
    let nifti_s = t.elapsed().as_secs_f64();
    let total_s = total.elapsed().as_secs_f64();
    println!(
        "petseg: scan {scan_s:.2} s, checks+SUV {plan_s:.3} s, decode PT {pet_decode_s:.2} s, decode CT {ct_decode_s:.2} s, \
         resample {resample_s:.2} s, NIfTI x3 {nifti_s:.2} s; total {total_s:.2} s"
    );
    let read_s = scan_s + plan_s + pet_decode_s + ct_decode_s;
    println!("petseg read (scan + checks + decode, both series): {read_s:.2} s");

    // Peer: pydicom reading both series into sorted, rescaled arrays.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dicom_bench_peer.py");
    match Command::new("python3")
        .arg(script)
        .arg(&pt_dir)
        .arg(&ct_dir)
        .output()
    {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            print!("{text}");
            if let Some(py_s) = text
                .lines()
                .find_map(|l| l.strip_prefix("pydicom read total: "))
                .and_then(|v| v.trim_end_matches(" s").parse::<f64>().ok())
            {
                println!("ratio pydicom read / petseg read: {:.2}x", py_s / read_s);
            }
        }
        Ok(o) => println!(
            "pydicom peer failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("pydicom peer not run: {e}"),
    }
}
