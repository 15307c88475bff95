//! Bad input: every refusal names the file or series at fault.

mod dicom_common;

use std::path::Path;

use dicom_common::*;
use petseg_io::dicom::{
    read_ct_hu, read_pet_suv, write_series, SuvOverrides, TransferSyntaxChoice,
};

const EXPLICIT: TransferSyntaxChoice = TransferSyntaxChoice::ExplicitVrLittleEndian;

fn pet_dir(dir: &Path, ts: TransferSyntaxChoice) -> Vec<std::path::PathBuf> {
    write_series(dir, &pet_suv([8, 6, 12], pet_affine(0.0)), &pet_spec(ts)).unwrap()
}

fn pet_error(dir: &Path) -> String {
    read_pet_suv(dir, &SuvOverrides::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn two_pet_series_in_one_folder_are_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    pet_dir(&tmp.path().join("a"), EXPLICIT);
    let mut other = pet_spec(EXPLICIT);
    other.series_number = 3;
    write_series(
        &tmp.path().join("b"),
        &pet_suv([8, 6, 12], pet_affine(0.0)),
        &other,
    )
    .unwrap();
    let msg = pet_error(tmp.path());
    assert!(msg.contains("found 2 mixed"), "{msg}");
    assert_eq!(msg.matches("PT series 2.25.").count(), 2, "{msg}");
}

#[test]
fn a_missing_slice_is_a_gap_naming_the_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), EXPLICIT);
    // files[k] is slice k; remove slice 5.
    std::fs::remove_file(&files[5]).unwrap();
    let msg = pet_error(tmp.path());
    assert!(msg.contains("gap: about 1 slice(s) missing"), "{msg}");
    let name = |k: usize| files[k].file_name().unwrap().to_string_lossy().into_owned();
    assert!(msg.contains(&name(4)) && msg.contains(&name(6)), "{msg}");
}

#[test]
fn duplicate_positions_name_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), EXPLICIT);
    let copy = tmp.path().join("copy_of_slice_3.dcm");
    std::fs::copy(&files[3], &copy).unwrap();
    let msg = pet_error(tmp.path());
    assert!(msg.contains("duplicate slice position"), "{msg}");
    assert!(msg.contains("copy_of_slice_3.dcm"), "{msg}");
    assert!(
        msg.contains(&*files[3].file_name().unwrap().to_string_lossy()),
        "{msg}"
    );
}

#[test]
fn a_ct_series_passed_as_pet_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_series(tmp.path(), &ct_hu([8, 8, 6]), &ct_spec(EXPLICIT)).unwrap();
    let msg = pet_error(tmp.path());
    assert!(
        msg.contains("expected a PT series, found CT series 2.25."),
        "{msg}"
    );
    // And the other way round.
    let pet = tempfile::tempdir().unwrap();
    pet_dir(pet.path(), EXPLICIT);
    let msg = read_ct_hu(pet.path()).unwrap_err().to_string();
    assert!(
        msg.contains("expected a CT series, found PT series"),
        "{msg}"
    );
}

#[test]
fn unreadable_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    pet_dir(tmp.path(), EXPLICIT);
    std::fs::write(tmp.path().join("broken.dcm"), b"this is not DICOM at all").unwrap();
    let msg = pet_error(tmp.path());
    assert!(
        msg.contains("broken.dcm") && msg.contains("not a readable DICOM file"),
        "{msg}"
    );

    // A file cut inside its pixel data: the header scan passes, decoding names it.
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), EXPLICIT);
    let bytes = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &bytes[..bytes.len() - 40]).unwrap();
    let msg = pet_error(tmp.path());
    assert!(
        msg.contains(&*files[2].file_name().unwrap().to_string_lossy()),
        "{msg}"
    );

    // Non-DICOM files without a DICOM name are skipped (a README next to the series).
    let tmp = tempfile::tempdir().unwrap();
    pet_dir(tmp.path(), EXPLICIT);
    std::fs::write(tmp.path().join("README.txt"), b"exported by a PACS").unwrap();
    assert!(read_pet_suv(tmp.path(), &SuvOverrides::default()).is_ok());
}

#[test]
fn an_unsupported_transfer_syntax_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), TransferSyntaxChoice::RleLossless);
    // Relabel one file as JPEG-LS lossless (encapsulated too; no decoder without `charls`).
    let mut obj = dicom_object::open_file(&files[7]).unwrap();
    obj.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.4.80".to_string());
    obj.write_to_file(&files[7]).unwrap();
    let msg = pet_error(tmp.path());
    assert!(
        msg.contains("1.2.840.10008.1.2.4.80") && msg.contains("not supported"),
        "{msg}"
    );
    assert!(
        msg.contains(&*files[7].file_name().unwrap().to_string_lossy()),
        "{msg}"
    );
}

#[test]
fn missing_tags_name_the_tag_and_overrides_rescue() {
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), EXPLICIT);
    for f in &files {
        let mut obj = dicom_object::open_file(f).unwrap();
        obj.remove_element(dicom_dictionary_std::tags::PATIENT_WEIGHT);
        obj.write_to_file(f).unwrap();
    }
    let msg = pet_error(tmp.path());
    assert!(
        msg.contains("(0010,1030) PatientWeight") && msg.contains("--weight-kg"),
        "{msg}"
    );
    let ov = SuvOverrides {
        weight_kg: Some(72.5),
        ..Default::default()
    };
    let (_, report) = read_pet_suv(tmp.path(), &ov).unwrap();
    assert!(((report.suv_factor - timing().suv_factor()) / timing().suv_factor()).abs() < 1e-9);
    assert_eq!(report.overrides.len(), 1);
}
