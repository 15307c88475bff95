//! Our writer → our reader: SUV values within quantisation error, the affine
//! within 1e-3 mm, the SUV factor and the rules that chose it, in every
//! transfer syntax the writer produces.

mod dicom_common;

use dicom_common::*;
use petseg_io::dicom::{
    read_ct_hu, read_pet_suv, scan_dir, write_series, ScanTimeRule, SuvMethod, SuvOverrides,
    TransferSyntaxChoice,
};

const SYNTAXES: [TransferSyntaxChoice; 3] = [
    TransferSyntaxChoice::ExplicitVrLittleEndian,
    TransferSyntaxChoice::DeflatedExplicitVrLittleEndian,
    TransferSyntaxChoice::RleLossless,
];

fn check_pet_round_trip(theta: f64, ts: TransferSyntaxChoice) {
    let dir = tempfile::tempdir().unwrap();
    let shape = [20, 18, 30];
    let suv = pet_suv(shape, pet_affine(theta));
    let files = write_series(dir.path(), &suv, &pet_spec(ts)).unwrap();
    assert_eq!(files.len(), 30);

    let (back, report) = read_pet_suv(dir.path(), &SuvOverrides::default()).unwrap();
    assert_eq!(back.shape(), shape, "{ts:?}");
    assert!(
        back.affine().approx_eq(suv.affine(), 1e-3),
        "{ts:?} theta {theta}:\n{}vs\n{}",
        back.affine(),
        suv.affine()
    );
    let expected = timing().suv_factor();
    assert!(
        ((report.suv_factor - expected) / expected).abs() < 1e-9,
        "{} vs {expected}",
        report.suv_factor
    );
    assert_eq!(report.method, SuvMethod::BqmlBodyWeight);
    assert_eq!(
        report.scan_time_rule,
        Some(ScanTimeRule::SeriesNotAfterEarliestAcquisition)
    );
    assert!((report.decay_time_s.unwrap() - 3720.0).abs() < 1e-6);

    // Per slice: error ≤ half a stored step (slope/2 in Bq/ml = max/32767/2 in SUV), plus f32 rounding.
    let maxes = slice_max_abs(&suv);
    let [ni, nj, _] = shape;
    let (a, b) = (suv.as_raster_slice(), back.as_raster_slice());
    for (idx, (x, y)) in a.iter().zip(b).enumerate() {
        let k = idx / (ni * nj);
        let bound = maxes[k] / 32767.0 * 0.5 * 1.001 + 4.0 * f32::EPSILON * x.abs();
        assert!(
            (x - y).abs() <= bound,
            "{ts:?} voxel {idx}: {x} vs {y} (bound {bound})"
        );
    }
}

#[test]
fn pet_round_trip_in_every_transfer_syntax() {
    for ts in SYNTAXES {
        check_pet_round_trip(0.0, ts);
    }
}

#[test]
fn pet_round_trip_on_an_oblique_grid() {
    check_pet_round_trip(0.35, TransferSyntaxChoice::ExplicitVrLittleEndian);
}

#[test]
fn ct_round_trip_is_exact_in_whole_hu() {
    for ts in SYNTAXES {
        let dir = tempfile::tempdir().unwrap();
        let ct = ct_hu([24, 20, 26]);
        write_series(dir.path(), &ct, &ct_spec(ts)).unwrap();
        let back = read_ct_hu(dir.path()).unwrap();
        assert_eq!(back.shape(), ct.shape());
        assert!(back.affine().approx_eq(ct.affine(), 1e-3), "{ts:?}");
        assert_eq!(back.as_raster_slice(), ct.as_raster_slice(), "{ts:?}");
    }
}

#[test]
fn writer_is_deterministic_and_scanner_like() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let suv = pet_suv([8, 6, 10], pet_affine(0.0));
    let spec = pet_spec(TransferSyntaxChoice::ExplicitVrLittleEndian);
    let f1 = write_series(d1.path(), &suv, &spec).unwrap();
    let f2 = write_series(d2.path(), &suv, &spec).unwrap();
    for (a, b) in f1.iter().zip(&f2) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
    let scan = scan_dir(d1.path()).unwrap();
    assert_eq!(scan.series.len(), 1);
    let s = &scan.series[0];
    assert_eq!(s.modality, "PT");
    // Per-slice slopes differ; instance numbers run against the geometry;
    // the first file is not the earliest bed.
    let mut slopes: Vec<f64> = s.slices.iter().map(|h| h.rescale_slope).collect();
    slopes.dedup();
    assert!(slopes.len() > 3);
    let first = s
        .slices
        .iter()
        .find(|h| h.instance_number == Some(1))
        .unwrap();
    let earliest = s
        .slices
        .iter()
        .map(|h| h.pet.acquisitions[0].time.clone().unwrap())
        .min()
        .unwrap();
    assert!(first.pet.acquisitions[0].time.clone().unwrap() > earliest);
    assert!(s.uid.starts_with("2.25."));
}
