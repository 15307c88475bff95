//! Bad input: every refusal names the file or series at fault.

mod dicom_common;

use std::path::Path;

use dicom_common::*;
use petseg_io::dicom::{
    read_ct_hu, read_pet_suv, scan_dir, write_series, SkipReason, SuvOverrides,
    TransferSyntaxChoice,
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

/// A dataset without file meta (no preamble, no `DICM`, no group 0002), as
/// some exporters write: the bytes of `from`'s data set alone.
fn write_without_file_meta(from: &Path, to: &Path) {
    let obj = dicom_object::open_file(from).unwrap();
    let mut bytes = Vec::new();
    obj.write_dataset(&mut bytes).unwrap();
    std::fs::write(to, bytes).unwrap();
}

/// Where `uid` ends in the bytes of `file`.
fn end_of_uid(file: &Path, uid: &str) -> usize {
    let bytes = std::fs::read(file).unwrap();
    bytes
        .windows(uid.len())
        .position(|w| w == uid.as_bytes())
        .unwrap()
        + uid.len()
}

#[test]
fn stray_files_are_skipped_with_their_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), EXPLICIT);
    let (clean, _) = read_pet_suv(tmp.path(), &SuvOverrides::default()).unwrap();
    // Stray files of another series: a CT written elsewhere.
    let other = tempfile::tempdir().unwrap();
    let ct_files = write_series(other.path(), &ct_hu([8, 8, 6]), &ct_spec(EXPLICIT)).unwrap();
    let d = tmp.path();
    std::fs::write(d.join("README.txt"), b"exported by a PACS").unwrap();
    // A DICOMDIR holds every UID of the export; here a whole PT slice, which
    // would be a duplicate position if it were read.
    std::fs::copy(&files[3], d.join("DICOMDIR")).unwrap();
    std::fs::write(d.join("empty.dcm"), b"").unwrap();
    std::fs::write(d.join("notes.dcm"), b"this is not DICOM at all").unwrap();
    let ct_bytes = std::fs::read(&ct_files[0]).unwrap();
    std::fs::write(d.join("cut.dcm"), &ct_bytes[..300]).unwrap();
    write_without_file_meta(&ct_files[1], &d.join("no_meta.dcm"));
    let mut sr = dicom_object::open_file(&ct_files[2]).unwrap();
    sr.put(dicom_object::mem::InMemElement::new(
        dicom_dictionary_std::tags::MODALITY,
        dicom_core::VR::CS,
        dicom_core::PrimitiveValue::from("SR"),
    ));
    sr.write_to_file(d.join("report.dcm")).unwrap();

    let scan = scan_dir(d).unwrap();
    let reason = |name: &str| {
        let s = scan
            .skipped
            .iter()
            .find(|s| s.path.file_name().unwrap() == name)
            .unwrap_or_else(|| panic!("{name} not skipped: {:?}", scan.skipped));
        (s.reason, s.to_string())
    };
    assert_eq!(reason("README.txt").0, SkipReason::NotDicom);
    assert_eq!(reason("DICOMDIR").0, SkipReason::Dicomdir);
    assert_eq!(reason("empty.dcm").0, SkipReason::Empty);
    assert_eq!(reason("notes.dcm").0, SkipReason::NoFileMeta);
    assert_eq!(reason("no_meta.dcm").0, SkipReason::NoFileMeta);
    let (why, text) = reason("cut.dcm");
    assert_eq!(why, SkipReason::Unreadable);
    assert!(
        text.contains("cut.dcm: unreadable DICOM header ("),
        "{text}"
    );
    assert_eq!(scan.skipped.len(), 6, "{:?}", scan.skipped);
    // The other modality is a series of its own, not mixed into the PT.
    let modalities: Vec<&str> = scan.series.iter().map(|s| s.modality.as_str()).collect();
    assert_eq!(modalities.len(), 2);
    assert!(modalities.contains(&"PT") && modalities.contains(&"SR"));

    let (pet, _) = read_pet_suv(d, &SuvOverrides::default()).unwrap();
    assert_eq!(pet.as_raster_slice(), clean.as_raster_slice());
    assert_eq!(pet.affine(), clean.affine());
}

#[test]
fn an_unreadable_file_of_the_chosen_series_is_refused() {
    // The first slice cut inside its header, after its SeriesInstanceUID: the
    // other 11 slices form a valid grid, so only the UID gives it away.
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), EXPLICIT);
    let uid = scan_dir(tmp.path()).unwrap().series[0].uid.clone();
    let cut = end_of_uid(&files[0], &uid) + 6;
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..cut]).unwrap();
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let msg = pet_error(tmp.path());
    assert!(
        msg.contains(&name)
            && msg.contains("unreadable DICOM header")
            && msg.contains(&uid)
            && msg.contains("the series is incomplete"),
        "{msg}"
    );

    // The same slice written without file meta.
    let tmp = tempfile::tempdir().unwrap();
    let files = pet_dir(tmp.path(), EXPLICIT);
    let moved = tmp.path().join("slice0.bin.dcm");
    write_without_file_meta(&files[0], &moved);
    std::fs::remove_file(&files[0]).unwrap();
    let msg = pet_error(tmp.path());
    assert!(
        msg.contains("slice0.bin.dcm")
            && msg.contains("no DICOM file meta")
            && msg.contains("the series is incomplete"),
        "{msg}"
    );
}

#[test]
fn unreadable_files_are_named() {
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
