//! DICOM export of the synthetic cohort (`petseg phantom --dicom`).

use std::path::Path;

use super::writer::{write_case_dicom, CaseDicom, TransferSyntaxChoice};
use crate::error::Result;
use crate::phantom::{generate_case, PhantomConfig};

/// Writes cases `0..n_cases` of the cohort (`seed`, `config`) as DICOM studies
/// `{dir}/{ID}/PT` and `{dir}/{ID}/CT` (the CT on its own grid), regenerating
/// each case deterministically. Each case's timing comes from
/// [`super::PetDoseTiming::synthetic`]; the returned SUV factors are what
/// `petseg convert` must recover.
pub fn write_cohort_dicom(
    dir: &Path,
    config: &PhantomConfig,
    n_cases: usize,
    seed: u64,
    transfer_syntax: TransferSyntaxChoice,
) -> Result<Vec<(String, CaseDicom)>> {
    (0..n_cases)
        .map(|index| {
            let case = generate_case(config, seed, index)?;
            let written = write_case_dicom(
                &dir.join(&case.id),
                &case.patient_id,
                &case.pet_suv,
                &case.ct_native,
                seed,
                index,
                transfer_syntax,
            )?;
            Ok((case.id, written))
        })
        .collect()
}
