//! # petseg-eval
//!
//! Owns the **evaluation** of lesion segmentations in whole-body PET
//! (`docs/method/evaluation.md`): connected-component labelling ([`components`]), the per-case
//! metrics of the study and of autoPET ([`case`], [`detection`]), lesion
//! dissemination Dmax ([`dmax`]), per-lesion metrics, cohort analysis and
//! the Wilcoxon signed-rank test ([`cohort`], [`stats`]) and CSV output
//! ([`report`]). It works on in-memory [`petseg_io::Volume`]s; it does not
//! read files (petseg-io does), train or predict.
//!
//! ```
//! use petseg_eval::{evaluate_case, Connectivity};
//! use petseg_io::{Affine, Volume};
//!
//! let aff = Affine::from_spacing_origin([2.0, 2.0, 3.0], [0.0; 3]).unwrap();
//! let mut gt = Volume::filled([8, 8, 8], 0u8, aff).unwrap();
//! let mut pred = gt.clone();
//! gt.data_mut()[[2, 2, 2]] = 1;
//! gt.data_mut()[[3, 2, 2]] = 1;
//! pred.data_mut()[[3, 2, 2]] = 1; // hits the GT lesion
//! pred.data_mut()[[7, 7, 7]] = 1; // a false positive
//! let pet = gt.map(|&v| 1.0 + 4.0 * v as f32);
//! let eval = evaluate_case("case_0001", &pred, &gt, Some(&pet), Connectivity::Eighteen).unwrap();
//! let m = &eval.patient;
//! assert_eq!((m.tp_c1, m.fp_c1, m.fn_c1), (1, 1, 0));
//! assert!((m.dice - 2.0 * 1.0 / 4.0).abs() < 1e-12);
//! assert!((m.fpv_ml - 0.012).abs() < 1e-12); // one 12 mm³ voxel
//! ```
//!
//! Definitions and the places where we differ from the reference code are
//! documented in each module: [`detection`] (C1/C2/C3, one-to-one),
//! [`case`] (DSC, FPV/FNV, uptake), [`dmax`] (voxel centres, exact hull
//! method), [`stats`] (SciPy's `wilcoxon` rules), [`cohort`] (groups).
//!
//! ## Performance
//!
//! See `benches/eval.rs` (`cargo bench -p petseg-eval`), which times the
//! Python peers in the same run; figures are in this crate's README.md.

pub mod case;
pub mod cohort;
pub mod components;
pub mod detection;
pub mod dmax;
pub mod error;
pub mod mask;
pub mod overlap;
pub mod report;
pub mod stats;

pub use case::{evaluate_case, CaseEvaluation, LesionKind, LesionMetrics, PatientMetrics};
pub use components::{label, label_volume, ComponentStats, Components, Connectivity, Run};
pub use error::{EvalError, Result};
pub use mask::{binarize, BinarizePolicy};
