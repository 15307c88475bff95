//! The synthetic PSMA PET/CT cohort (`docs/method/cohort.md`): seeded whole-body cases
//! so that everything runs on a fresh machine without patient data.
//!
//! # What a case holds
//! * A male body of realistic extent (height 1620–1880 mm, build varied per
//!   patient): head with skull, brain, orbits and glands; neck; torso with
//!   subcutaneous and visceral fat, muscle, lungs, airway, heart, aorta,
//!   vena cava and iliac vessels, liver, spleen, kidneys, small-bowel loops
//!   with gas, bladder; bones (C2–L5 vertebral bodies and posterior
//!   elements, 12 rib pairs, sternum, scapulae, iliac wings, sacrum, pubis,
//!   ischia, femoral heads, femurs, tibias, mandible); legs. Arms are raised
//!   out of the field of view, as in a PSMA scan.
//! * CT numbers: air −1000, lung ≈ −820, fat ≈ −100, muscle ≈ 45, organs
//!   8–55, bone ≈ 700 HU (per-case offsets, per-voxel texture noise);
//!   sclerotic bone lesions 850–1200 HU, nodal lesions 35–55 HU in fat.
//! * PSMA uptake (SUVbw, uniform per case in the ranges of
//!   [`Tissue::suv_range`]): salivary and lacrimal glands 10–20, kidneys
//!   20–40, liver 5–8, spleen 4–6, bowel loops 3–6, bladder 10–60, blood pool
//!   1.3–1.8, bone marrow 0.8–1.3, muscle 0.5–0.9, fat 0.15–0.3.
//! * Lesions ([`LesionRegion`]) in lymph-node stations and bone, with the
//!   study's count, volume and SUVmax statistics (see [`targets`]), clear of
//!   hot organs. Each lesion's activity peaks at its centre (`1 − 0.8ρ²`
//!   profile, so SUVmean/SUVmax ≈ 0.5; the study's is 4.6/12.6) and is
//!   scaled up by the expected partial-volume loss so that the measured
//!   SUVmax follows the study's distribution.
//! * PET: activity sampled at voxel centres, Poisson-like noise (variance
//!   ∝ activity; after the blur, liver CoV ≈ 10 %), then a separable
//!   gaussian point-spread blur of 6 mm FWHM, negative values clipped.
//! * CT on its own, finer scanner grid; then resampled trilinearly onto the
//!   PET grid (fill −1024 HU) with [`crate::resample::resample_onto`] and
//!   rounded to whole HU (the nnU-Net file stores it as int16).
//! * Label: voxels of the PET grid whose centre lies inside a lesion (u8 0/1).
//!
//! # Sizes and grids
//! Both grids are "LPS-like" as DICOM-derived NIfTI files are: i runs to the
//! patient's left, j posterior, k superior (orientation code `LPS`), with
//! origins in scanner coordinates (isocentre at 0).
//!
//! | size | PET grid | CT grid | field of view |
//! |---|---|---|---|
//! | [`Size::Small`] | 96×72×112 at 4 mm | 200×200×~156 at 2×2×3 mm | abdomen–pelvis crop from the lung bases (8 cm above the kidneys) to the upper thighs (448 mm) |
//! | [`Size::Full`] | 192×192×~510 (475–545 with height) at 3.65×3.65×3.5 mm | 512×512×~480 at 1.37×1.37×3.75 mm | vertex to soles |
//!
//! The small crop holds the region where most PSMA-positive recurrences
//! are (pelvic and retroperitoneal nodes, lumbar spine, pelvis, femora) and
//! the hottest physiological confounders (kidneys, bladder, bowel); its
//! lesions are drawn from the regions in view.
//!
//! # Determinism
//! Every random draw comes from ChaCha8 streams derived from the cohort seed:
//! the patient assignment from one stream, each patient's build from a
//! stream keyed by the patient number, each case's lesions and noise from a
//! stream keyed by the case index, and noise per k-slab from sub-streams. The
//! output does not depend on the number of threads, and the same seed gives
//! byte-identical files.
//!
//! The tissue values a generated case actually shows, and generation
//! times (`cargo bench -p petseg-io --bench phantom`), are in
//! `docs/method/cohort.md` §4 and the crate README.
//!
//! ```no_run
//! use petseg_io::phantom::{generate_case, PhantomConfig, Size};
//! # fn main() -> petseg_io::Result<()> {
//! let case = generate_case(&PhantomConfig::new(Size::Small), 42, 0)?;
//! println!("{}: {} lesions", case.id, case.lesions.len());
//! # Ok(())
//! # }
//! ```

mod anatomy;
mod cohort;
mod lesions;
mod psf;
mod raster;
mod shape;

pub use anatomy::Tissue;
pub use cohort::{write_cohort, write_cohort_with, CaseSummary};
pub use lesions::{targets, LesionRegion};
pub use raster::Grid;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::affine::Affine;
use crate::error::{IoError, Result};
use crate::resample::{resample_onto, Interpolation};
use crate::volume::Volume;
use anatomy::{uniform, Anatomy};
use lesions::PlannedLesion;

/// The size of generated cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Abdomen–pelvis crop, 96×72×112 PET voxels of 4 mm: fast enough for CI
    /// and the training demo (well under a second per case).
    Small,
    /// Whole body, 192×192×~510 PET voxels of 3.65×3.65×3.5 mm (a real scan's size).
    Full,
}

impl Size {
    /// Lower-case name (`"small"`, `"full"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Full => "full",
        }
    }
}

impl std::str::FromStr for Size {
    type Err = IoError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "small" => Ok(Size::Small),
            "full" => Ok(Size::Full),
            other => Err(IoError::Invalid(format!(
                "phantom size '{other}': expected 'small' or 'full'"
            ))),
        }
    }
}

/// How cases are generated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhantomConfig {
    /// Field of view and grids.
    pub size: Size,
    /// PET point-spread FWHM (mm); 0 disables the blur.
    pub psf_fwhm_mm: f64,
    /// Coefficient of variation of PET noise at SUV 6 after the blur
    /// (variance ∝ activity); 0 disables noise.
    pub noise_cov_at_suv6: f64,
    /// Whether CT voxels get texture noise.
    pub ct_noise: bool,
    /// Probability that a case is a further scan of an earlier patient
    /// (same build, new lesions), to exercise patient grouping.
    pub followup_probability: f64,
    /// Range the drawn lesion SUVmax is clamped to. The default
    /// ([`targets::SUV_CLAMP`], 3–120) keeps the study's
    /// distribution, in which about a fifth of the lesions have SUVmax < 4,
    /// as faint as bowel loops; a higher floor makes every lesion conspicuous.
    pub lesion_suv_max_range: (f64, f64),
    /// Range the drawn lesion volume (ml) is clamped to (default
    /// [`targets::VOLUME_CLAMP_ML`], 0.5–150 ml).
    pub lesion_volume_range_ml: (f64, f64),
}

impl PhantomConfig {
    /// The defaults: 6 mm PSF, 10 % noise at SUV 6, CT texture, 15 % follow-up scans.
    pub fn new(size: Size) -> Self {
        PhantomConfig {
            size,
            psf_fwhm_mm: 6.0,
            noise_cov_at_suv6: 0.10,
            ct_noise: true,
            followup_probability: 0.15,
            lesion_suv_max_range: lesions::targets::SUV_CLAMP,
            lesion_volume_range_ml: lesions::targets::VOLUME_CLAMP_ML,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.psf_fwhm_mm.is_finite() && self.psf_fwhm_mm >= 0.0 && self.psf_fwhm_mm <= 50.0) {
            return Err(IoError::Invalid(format!(
                "psf_fwhm_mm {} must be in [0, 50]",
                self.psf_fwhm_mm
            )));
        }
        if !(self.noise_cov_at_suv6.is_finite() && (0.0..=1.0).contains(&self.noise_cov_at_suv6)) {
            return Err(IoError::Invalid(format!(
                "noise_cov_at_suv6 {} must be in [0, 1]",
                self.noise_cov_at_suv6
            )));
        }
        let (s0, s1) = self.lesion_suv_max_range;
        if !(s0.is_finite() && s1.is_finite() && 1.0 <= s0 && s0 <= s1 && s1 <= 1000.0) {
            return Err(IoError::Invalid(format!(
                "lesion SUVmax range [{s0}, {s1}] must satisfy 1 <= min <= max <= 1000"
            )));
        }
        let (v0, v1) = self.lesion_volume_range_ml;
        if !(v0.is_finite() && v1.is_finite() && 0.05 <= v0 && v0 <= v1 && v1 <= 1000.0) {
            return Err(IoError::Invalid(format!(
                "lesion volume range [{v0}, {v1}] ml must satisfy 0.05 <= min <= max <= 1000"
            )));
        }
        if !(0.0..=1.0).contains(&self.followup_probability) {
            return Err(IoError::Invalid(format!(
                "followup_probability {} must be in [0, 1]",
                self.followup_probability
            )));
        }
        Ok(())
    }
}

/// One lesion of a generated case, as measured on the written volumes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LesionInfo {
    /// Centre of the lesion's ellipsoid (world RAS+ mm).
    pub centre_mm: [f64; 3],
    /// Volume of its label voxels (ml).
    pub volume_ml: f64,
    /// Highest PET SUV within its label voxels.
    pub suv_max: f64,
    /// Mean PET SUV within its label voxels.
    pub suv_mean: f64,
    /// Where it sits.
    pub region: LesionRegion,
    /// The volume drawn for it (ml), before voxelisation.
    pub design_volume_ml: f64,
    /// The SUVmax drawn for it, before blur and noise.
    pub design_suv_max: f64,
}

/// A generated case: CT and PET on their grids, label, lesion list.
#[derive(Debug, Clone)]
pub struct PhantomCase {
    /// Case id (`psma_0000`, ...).
    pub id: String,
    /// Patient id (`patient_0000`, ...); follow-up scans share it.
    pub patient_id: String,
    /// CT (HU) on its own scanner grid.
    pub ct_native: Volume<f32>,
    /// CT (whole HU) resampled onto the PET grid, fill −1024.
    pub ct: Volume<f32>,
    /// PET in SUVbw.
    pub pet_suv: Volume<f32>,
    /// Lesion mask on the PET grid (0/1).
    pub label: Volume<u8>,
    /// Tissue class per PET voxel ([`Tissue`] codes), before lesions.
    pub tissue: Volume<u8>,
    /// The lesions, in label order.
    pub lesions: Vec<LesionInfo>,
}

/// Blurs a volume with the PET point-spread function: a separable gaussian
/// of `fwhm_mm` along each voxel axis (σ in voxels = σ_mm / spacing; exact
/// for axis-aligned grids), edges replicated, parallel and thread-count
/// independent. The same operation the generator applies to its PET.
pub fn psf_blur(vol: &Volume<f32>, fwhm_mm: f64) -> Result<Volume<f32>> {
    if !(fwhm_mm.is_finite() && fwhm_mm >= 0.0) {
        return Err(IoError::Invalid(format!(
            "PSF FWHM {fwhm_mm} mm must be finite and ≥ 0"
        )));
    }
    let sp = vol.spacing_mm();
    let sigma = psf::fwhm_to_sigma(fwhm_mm);
    let mut data = vol.as_raster_slice().to_vec();
    psf::gaussian_blur(
        &mut data,
        vol.shape(),
        [sigma / sp[0], sigma / sp[1], sigma / sp[2]],
    );
    Volume::from_raster(vol.shape(), data, *vol.affine())
}

/// Seed material for stream `stream` of the cohort seed.
fn derive_key(seed: u64, stream: u64) -> [u8; 32] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    key
}

/// Lesion activity falls from the centre as `1 − PROFILE_DEPTH·ρ²` (ρ the
/// normalised radius): measured SUVmean/SUVmax ≈ 0.5 (study: 4.6/12.6).
const PROFILE_DEPTH: f32 = 0.8;

const STREAM_PATIENTS: u64 = u64::MAX;
const STREAM_BODY: u64 = 1 << 62;
const STREAM_CASE: u64 = 1 << 61;
const SUBSTREAM_CT_NOISE: u64 = 1 << 40;
const SUBSTREAM_PET_NOISE: u64 = 2 << 40;

/// The patient number of case `index`: a new patient, or with probability
/// `p_followup` a further scan of an earlier patient. Computed by replaying
/// one stream up to `index`, so any case can be generated on its own.
pub fn patient_number(seed: u64, index: usize, p_followup: f64) -> usize {
    let mut rng = ChaCha8Rng::from_seed(derive_key(seed, STREAM_PATIENTS));
    let mut n_patients = 0usize;
    let mut patient = 0usize;
    for _ in 0..=index {
        let followup = n_patients > 0 && rng.random_bool(p_followup.clamp(0.0, 1.0));
        if followup {
            patient = rng.random_range(0..n_patients);
        } else {
            patient = n_patients;
            n_patients += 1;
        }
    }
    patient
}

/// Case id of index `index`.
pub fn case_id(index: usize) -> String {
    format!("psma_{index:04}")
}

/// Patient id of patient number `n`.
pub fn patient_id(n: usize) -> String {
    format!("patient_{n:04}")
}

/// PET and CT grids of a case, placed around the body.
fn grids(size: Size, a: &Anatomy, rng: &mut ChaCha8Rng) -> Result<(Grid, Grid)> {
    let f = a.frame;
    let lps =
        |shape: [usize; 3], sp: [f64; 3], centre_xy: [f64; 2], z_bottom: f64| -> Result<Grid> {
            let origin = [
                centre_xy[0] + (shape[0] as f64 - 1.0) / 2.0 * sp[0],
                centre_xy[1] + (shape[1] as f64 - 1.0) / 2.0 * sp[1],
                z_bottom,
            ];
            Ok(Grid {
                shape,
                affine: Affine::from_spacing_origin([-sp[0], -sp[1], sp[2]], origin)?,
            })
        };
    match size {
        Size::Small => {
            let sp = [4.0; 3];
            let top = f.z(a.kidney_top_d - 80.0);
            let centre = [
                f.ox + uniform(rng, -4.0, 4.0),
                f.oy + uniform(rng, -4.0, 4.0),
            ];
            let nz = 112;
            let pet = lps([96, 72, nz], sp, centre, top - (nz - 1) as f64 * sp[2])?;
            let ct_sp = [2.0, 2.0, 3.0];
            let margin = 9.0 + uniform(rng, 0.0, 3.0);
            let nzc = (((nz - 1) as f64 * sp[2] + 2.0 * margin) / ct_sp[2]).ceil() as usize + 1;
            let ct_centre = [
                centre[0] + uniform(rng, -3.0, 3.0),
                centre[1] + uniform(rng, -3.0, 3.0),
            ];
            let ct = lps(
                [200, 200, nzc],
                ct_sp,
                ct_centre,
                top - (nz - 1) as f64 * sp[2] - margin,
            )?;
            Ok((pet, ct))
        }
        Size::Full => {
            let sp = [700.0 / 192.0, 700.0 / 192.0, 3.5];
            let top = f.z_vertex + 15.0;
            let length = a.sole_d * f.s + 30.0;
            let nz = (length / sp[2]).ceil() as usize + 1;
            let z_bottom = top - (nz - 1) as f64 * sp[2];
            let pet = lps([192, 192, nz], sp, [0.0, 0.0], z_bottom)?;
            let ct_sp = [700.0 / 512.0, 700.0 / 512.0, 3.75];
            let margin = 6.0 + uniform(rng, 0.0, 3.0);
            let nzc = (((nz - 1) as f64 * sp[2] + 2.0 * margin) / ct_sp[2]).ceil() as usize + 1;
            let ct = lps([512, 512, nzc], ct_sp, [0.0, 0.0], z_bottom - margin)?;
            Ok((pet, ct))
        }
    }
}

/// Expected fraction of a lesion's peak that survives blur and voxel
/// sampling: the centre of a uniform sphere of radius `0.75·r` (the peaked
/// profile's effective radius) convolved with a gaussian of `sigma_mm`.
fn peak_recovery(r_mm: f64, sigma_mm: f64) -> f64 {
    if sigma_mm <= 0.0 {
        return 1.0;
    }
    let x = 0.75 * r_mm / sigma_mm;
    let erf = statrs_free_erf(x / std::f64::consts::SQRT_2);
    (erf - (2.0 / std::f64::consts::PI).sqrt() * x * (-x * x / 2.0).exp()).clamp(0.05, 1.0)
}

/// The error function (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7).
fn statrs_free_erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    s * y
}

/// A lesion as designed, before voxelisation, blur and noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LesionDesign {
    /// Centre (world RAS+ mm).
    pub centre_mm: [f64; 3],
    /// Semi-axes of its ellipsoid (mm).
    pub semi_axes_mm: [f64; 3],
    /// Where it sits.
    pub region: LesionRegion,
    /// Drawn volume (ml).
    pub volume_ml: f64,
    /// Drawn SUVmax.
    pub suv_max: f64,
}

/// Everything drawn for a case before rendering.
struct Plan {
    patient: usize,
    anatomy: Anatomy,
    pet_grid: Grid,
    ct_grid: Grid,
    lesions: Vec<PlannedLesion>,
    noise_key: [u8; 32],
}

fn plan(config: &PhantomConfig, seed: u64, index: usize) -> Result<Plan> {
    config.validate()?;
    let patient = patient_number(seed, index, config.followup_probability);
    let mut body_rng = ChaCha8Rng::from_seed(derive_key(seed, STREAM_BODY + patient as u64));
    let mut rng = ChaCha8Rng::from_seed(derive_key(seed, STREAM_CASE + index as u64));
    let anatomy = Anatomy::sample(&mut body_rng, &mut rng);
    let (pet_grid, ct_grid) = grids(config.size, &anatomy, &mut rng)?;

    // Lesions: inside the PET field of view (2 voxels clear of its faces).
    let f = anatomy.frame;
    let z_of = |k: f64| pet_grid.affine.voxel_to_world([0.0, 0.0, k])[2];
    let (za, zb) = (z_of(0.0), z_of(pet_grid.shape[2] as f64 - 1.0));
    let d_window = (
        (f.z_vertex - za.max(zb)) / f.s,
        (f.z_vertex - za.min(zb)) / f.s,
    );
    let in_fov = |p: [f64; 3]| pet_grid.contains_world(p, 2.0);
    let ranges = lesions::LesionRanges {
        suv_max: config.lesion_suv_max_range,
        volume_ml: config.lesion_volume_range_ml,
    };
    let lesions = lesions::plan_lesions(&anatomy, d_window, &in_fov, ranges, &mut rng);
    let mut noise_key = [0u8; 32];
    rng.fill_bytes(&mut noise_key);
    Ok(Plan {
        patient,
        anatomy,
        pet_grid,
        ct_grid,
        lesions,
        noise_key,
    })
}

/// The lesions case `index` will have, without rendering any volume (fast:
/// for cohort statistics). [`generate_case`] renders exactly these.
pub fn design_lesions(
    config: &PhantomConfig,
    seed: u64,
    index: usize,
) -> Result<Vec<LesionDesign>> {
    Ok(plan(config, seed, index)?
        .lesions
        .iter()
        .map(|l| LesionDesign {
            centre_mm: l.centre(),
            semi_axes_mm: l.semi_axes_mm(),
            region: l.region,
            volume_ml: l.volume_ml,
            suv_max: l.suv_max,
        })
        .collect())
}

/// Generates case `index` of the cohort with seed `seed`. Independent of
/// every other case (patient assignment is replayed from the seed).
pub fn generate_case(config: &PhantomConfig, seed: u64, index: usize) -> Result<PhantomCase> {
    let Plan {
        patient,
        anatomy,
        pet_grid,
        ct_grid,
        lesions: planned,
        noise_key,
    } = plan(config, seed, index)?;
    let shapes: Vec<_> = anatomy.structures.iter().map(|s| s.shape).collect();
    let (pet_suv, tissue, label, lesion_voxels) =
        render_pet(config, &anatomy, &shapes, &pet_grid, &planned, noise_key);
    let ct_native = render_ct(config, &anatomy, &shapes, &ct_grid, &planned, noise_key)?;
    let mut ct = resample_onto(
        &ct_native,
        pet_grid.shape,
        &pet_grid.affine,
        Interpolation::Linear,
        -1024.0,
    )?;
    for v in ct.as_raster_slice_mut() {
        *v = v.round();
    }

    let voxel_ml = pet_suv.voxel_volume_ml();
    let pet = pet_suv.as_raster_slice();
    let lesions = planned
        .iter()
        .zip(&lesion_voxels)
        .map(|(l, vox)| {
            let suv_max = vox.iter().map(|&i| pet[i]).fold(f32::MIN, f32::max) as f64;
            let suv_mean =
                vox.iter().map(|&i| pet[i] as f64).sum::<f64>() / vox.len().max(1) as f64;
            LesionInfo {
                centre_mm: l.centre(),
                volume_ml: vox.len() as f64 * voxel_ml,
                suv_max,
                suv_mean,
                region: l.region,
                design_volume_ml: l.volume_ml,
                design_suv_max: l.suv_max,
            }
        })
        .collect();
    Ok(PhantomCase {
        id: case_id(index),
        patient_id: patient_id(patient),
        ct_native,
        ct,
        pet_suv,
        label,
        tissue,
        lesions,
    })
}

/// PET (SUV), tissue map, label and each lesion's voxels on the PET grid.
fn render_pet(
    config: &PhantomConfig,
    anatomy: &Anatomy,
    shapes: &[shape::Shape],
    grid: &Grid,
    planned: &[PlannedLesion],
    noise_key: [u8; 32],
) -> (Volume<f32>, Volume<u8>, Volume<u8>, Vec<Vec<usize>>) {
    let map = grid.paint(shapes);
    let st = &anatomy.structures;
    let tissue: Vec<u8> = map
        .iter()
        .map(|&c| {
            if c == 0 {
                0
            } else {
                st[c as usize - 1].tissue as u8
            }
        })
        .collect();
    let mut suv: Vec<f32> = map
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { st[c as usize - 1].suv })
        .collect();
    drop(map);

    let spacing = grid.affine.spacing_mm();
    let sigma_mm = psf::fwhm_to_sigma(config.psf_fwhm_mm);
    // Voxel sampling adds a box of one voxel (variance s²/12) to the PSF.
    let mean_s2 = spacing.iter().map(|s| s * s).sum::<f64>() / 3.0;
    let sigma_eff = (sigma_mm * sigma_mm + mean_s2 / 12.0).sqrt();
    let mut label = vec![0u8; grid.len()];
    let mut voxels = Vec::with_capacity(planned.len());
    for l in planned {
        let amplitude =
            (l.suv_max / peak_recovery(l.radius_min_mm(), sigma_eff)).min(3.0 * l.suv_max) as f32;
        let mut vox = Vec::new();
        grid.for_each_inside(&l.shape, |idx, r2| {
            let v = amplitude * (1.0 - PROFILE_DEPTH * r2 as f32);
            suv[idx] = suv[idx].max(v);
            label[idx] = 1;
            vox.push(idx);
        });
        voxels.push(vox);
    }

    let slab = grid.shape[0] * grid.shape[1];
    let sigma_vox = [
        sigma_mm / spacing[0],
        sigma_mm / spacing[1],
        sigma_mm / spacing[2],
    ];
    if config.noise_cov_at_suv6 > 0.0 {
        // Post-blur variance at SUV 6 is (cov·6)²; the blur scales white-noise
        // variance by Σw², so the pre-blur variance per unit activity is:
        let k_post = (config.noise_cov_at_suv6 * 6.0).powi(2) / 6.0;
        let gain = if config.psf_fwhm_mm > 0.0 {
            psf::variance_gain(sigma_vox)
        } else {
            1.0
        };
        psf::add_poisson_like_noise(
            &mut suv,
            slab,
            k_post / gain,
            noise_key,
            SUBSTREAM_PET_NOISE,
        );
    }
    if config.psf_fwhm_mm > 0.0 {
        psf::gaussian_blur(&mut suv, grid.shape, sigma_vox);
    }
    for v in &mut suv {
        *v = v.max(0.0);
    }
    let vol =
        |data| Volume::from_raster(grid.shape, data, grid.affine).expect("grid shape matches data");
    (vol(suv), vol_u8(grid, tissue), vol_u8(grid, label), voxels)
}

fn vol_u8(grid: &Grid, data: Vec<u8>) -> Volume<u8> {
    Volume::from_raster(grid.shape, data, grid.affine).expect("grid shape matches data")
}

/// CT (HU) on its own grid: tissue values, texture noise, lesions.
fn render_ct(
    config: &PhantomConfig,
    anatomy: &Anatomy,
    shapes: &[shape::Shape],
    grid: &Grid,
    planned: &[PlannedLesion],
    noise_key: [u8; 32],
) -> Result<Volume<f32>> {
    use rayon::prelude::*;

    let map = grid.paint(shapes);
    // Per painted code (0 = air): tissue, mean HU and texture SD.
    let tissues: Vec<Tissue> = std::iter::once(Tissue::Air)
        .chain(anatomy.structures.iter().map(|s| s.tissue))
        .collect();
    let mean_hu: Vec<f32> = tissues.iter().map(|&t| anatomy.hu[t as usize]).collect();
    let sd_hu: Vec<f32> = tissues.iter().map(|&t| t.hu().1).collect();
    let slab = grid.shape[0] * grid.shape[1];
    let mut hu: Vec<f32> = map.par_iter().map(|&c| mean_hu[c as usize]).collect();
    // Lesions replace the tissue value: sclerotic in bone, soft tissue elsewhere.
    for l in planned {
        grid.for_each_inside(&l.shape, |idx, _| {
            hu[idx] = if tissues[map[idx] as usize] == Tissue::Bone {
                l.sclerotic_hu
            } else {
                l.soft_hu
            };
        });
    }
    if config.ct_noise {
        hu.par_chunks_mut(slab)
            .zip(map.par_chunks(slab))
            .enumerate()
            .for_each(|(k, (out, codes))| {
                let mut rng = psf::stream_rng(noise_key, SUBSTREAM_CT_NOISE + k as u64);
                let table = psf::normal_table();
                for (o2, c2) in out.chunks_mut(2).zip(codes.chunks(2)) {
                    let bits = rng.next_u32();
                    let n = [
                        table[(bits & 0xffff) as usize],
                        table[(bits >> 16) as usize],
                    ];
                    for ((o, &c), n) in o2.iter_mut().zip(c2).zip(n) {
                        *o += sd_hu[c as usize] * n;
                    }
                }
            });
    }
    for v in &mut hu {
        *v = v.clamp(-1024.0, 3071.0);
    }
    Volume::from_raster(grid.shape, hu, grid.affine)
}
