//! Shared builders for the DICOM integration tests: small synthetic PET (SUV)
//! and CT (HU) volumes on scanner-like grids, and the writer specs.
#![allow(dead_code)]

use chrono::{NaiveDate, NaiveDateTime};
use nalgebra::Matrix3;
use petseg_io::dicom::{PetDoseTiming, SeriesKind, SeriesSpec, TransferSyntaxChoice};
use petseg_io::{Affine, Volume};

pub fn injection() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 28)
        .unwrap()
        .and_hms_opt(9, 12, 30)
        .unwrap()
}

/// 72.5 kg, 250 MBq, 62 min uptake, 8 slices per bed.
pub fn timing() -> PetDoseTiming {
    let mut t = PetDoseTiming::f18(72.5, 2.5e8, injection(), 3720.0);
    t.slices_per_bed = 8;
    t
}

/// A PET grid: 4 mm in-plane, 3 mm slices, LPS-like RAS affine with a rotation
/// about z of `theta` radians (0 = axis aligned).
pub fn pet_affine(theta: f64) -> Affine {
    // RAS directions of a DICOM axial grid: i → left (−x), j → posterior (−y), k → superior.
    let rot = Matrix3::new(
        theta.cos(),
        -theta.sin(),
        0.0,
        theta.sin(),
        theta.cos(),
        0.0,
        0.0,
        0.0,
        1.0,
    );
    let base = Matrix3::new(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0);
    Affine::from_direction(rot * base, [4.0, 4.0, 3.0], [60.25, 110.5, -812.75]).unwrap()
}

/// A smooth SUV field with a hot sphere and zero background corner.
pub fn pet_suv(shape: [usize; 3], affine: Affine) -> Volume<f32> {
    let [ni, nj, nk] = shape;
    let mut v = Vec::with_capacity(ni * nj * nk);
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                let (x, y, z) = (
                    i as f64 / ni as f64,
                    j as f64 / nj as f64,
                    k as f64 / nk as f64,
                );
                let body = 1.5 + 4.0 * (x * 3.1).sin().abs() * (y * 2.3 + z).cos().abs();
                let d2 = (x - 0.5).powi(2) + (y - 0.5).powi(2) + (z - 0.6).powi(2);
                let lesion = 25.0 * (-d2 / 0.01).exp();
                let value = if i + j < 3 { 0.0 } else { body + lesion };
                v.push(value as f32);
            }
        }
    }
    Volume::from_raster(shape, v, affine).unwrap()
}

/// CT in whole HU on a finer grid covering about the same region.
pub fn ct_hu(shape: [usize; 3]) -> Volume<f32> {
    let affine = Affine::from_direction(
        Matrix3::new(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),
        [2.5, 2.5, 2.0],
        [62.0, 112.0, -815.0],
    )
    .unwrap();
    let [ni, nj, nk] = shape;
    let mut v = Vec::with_capacity(ni * nj * nk);
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                let r2 = ((i as f64 - ni as f64 / 2.0) / (ni as f64 / 2.5)).powi(2)
                    + ((j as f64 - nj as f64 / 2.0) / (nj as f64 / 2.5)).powi(2);
                let hu = if r2 > 1.0 {
                    -1000.0
                } else if (i + 2 * j + k) % 17 == 0 {
                    700.0 + k as f64
                } else {
                    40.0 - (i as f64) + (j as f64) * 0.5 - (k % 5) as f64
                };
                v.push(hu.round() as f32);
            }
        }
    }
    Volume::from_raster(shape, v, affine).unwrap()
}

pub fn pet_spec(ts: TransferSyntaxChoice) -> SeriesSpec {
    SeriesSpec {
        kind: SeriesKind::Pet(timing()),
        patient_id: "PSMA_0001".into(),
        seed: 42,
        series_number: 2,
        description: "PET WB AC".into(),
        transfer_syntax: ts,
    }
}

pub fn ct_spec(ts: TransferSyntaxChoice) -> SeriesSpec {
    SeriesSpec {
        kind: SeriesKind::Ct {
            acquired: injection() + chrono::Duration::minutes(58),
            patient_weight_kg: 72.5,
        },
        patient_id: "PSMA_0001".into(),
        seed: 42,
        series_number: 1,
        description: "CT WB".into(),
        transfer_syntax: ts,
    }
}

/// Per slice, the largest |SUV| (for the quantisation bound of that slice).
pub fn slice_max_abs(v: &Volume<f32>) -> Vec<f32> {
    let [ni, nj, nk] = v.shape();
    let raster = v.as_raster_slice();
    (0..nk)
        .map(|k| {
            raster[k * ni * nj..(k + 1) * ni * nj]
                .iter()
                .fold(0f32, |m, x| m.max(x.abs()))
        })
        .collect()
}
