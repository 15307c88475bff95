//! Lesion sampling and placement: how many, where, how large, how hot.
//!
//! Statistics follow the reference study (`docs/method/cohort.md` §5, 684 lesions in 380
//! scans): the count per case is 0 with probability 0.2, else 1 + a
//! geometric number with mean 1.25 (capped at 10 in all), giving a mean of
//! 1.80; volumes are log-normal with mean 6.68 ml and SD 10.20 ml (clamped to
//! [0.5, 150] ml so that every lesion covers at least one PET voxel);
//! SUVmax is log-normal with mean 12.65 and SD 14.46 (clamped to [3, 120] so
//! that every lesion stands out of the background).
//!
//! Lesions sit in lymph-node stations or bone, never within 10 mm of an
//! organ with high physiological uptake (or bowel gas), never within 10 mm of
//! another lesion, always inside the skin and the PET field of view.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use super::anatomy::{aorta_x, iliac_path, spine_y, uniform, vertebrae, Anatomy};
use super::shape::Shape;

/// Where a lesion sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LesionRegion {
    /// Pelvic lymph nodes along the common and external iliac vessels.
    PelvicNode,
    /// Retroperitoneal (para-aortic, interaortocaval) lymph nodes.
    RetroperitonealNode,
    /// Inguinal lymph nodes.
    InguinalNode,
    /// Mediastinal lymph nodes.
    MediastinalNode,
    /// Supraclavicular lymph nodes.
    SupraclavicularNode,
    /// Local recurrence in the prostate bed.
    ProstateBed,
    /// Vertebral body.
    Spine,
    /// Iliac wing or sacrum.
    Pelvis,
    /// Rib.
    Rib,
    /// Proximal femur.
    Femur,
}

impl LesionRegion {
    /// Every region.
    pub const ALL: [LesionRegion; 10] = [
        LesionRegion::PelvicNode,
        LesionRegion::RetroperitonealNode,
        LesionRegion::InguinalNode,
        LesionRegion::MediastinalNode,
        LesionRegion::SupraclavicularNode,
        LesionRegion::ProstateBed,
        LesionRegion::Spine,
        LesionRegion::Pelvis,
        LesionRegion::Rib,
        LesionRegion::Femur,
    ];

    /// Whether the region is a bone (else a soft-tissue / lymph-node site).
    pub fn is_bone(self) -> bool {
        matches!(
            self,
            LesionRegion::Spine | LesionRegion::Pelvis | LesionRegion::Rib | LesionRegion::Femur
        )
    }

    /// Relative frequency of the region (PSMA recurrence pattern: pelvic
    /// nodes and bone dominate).
    fn weight(self) -> f64 {
        match self {
            LesionRegion::PelvicNode => 0.28,
            LesionRegion::RetroperitonealNode => 0.12,
            LesionRegion::InguinalNode => 0.04,
            LesionRegion::MediastinalNode => 0.05,
            LesionRegion::SupraclavicularNode => 0.04,
            LesionRegion::ProstateBed => 0.05,
            LesionRegion::Spine => 0.14,
            LesionRegion::Pelvis => 0.12,
            LesionRegion::Rib => 0.10,
            LesionRegion::Femur => 0.06,
        }
    }

    /// Range of depths below the vertex (reference body, mm) the region covers.
    fn depth_range(self) -> (f64, f64) {
        match self {
            LesionRegion::PelvicNode => (770.0, 935.0),
            LesionRegion::RetroperitonealNode => (640.0, 790.0),
            LesionRegion::InguinalNode => (930.0, 985.0),
            LesionRegion::MediastinalNode => (375.0, 440.0),
            LesionRegion::SupraclavicularNode => (262.0, 300.0),
            LesionRegion::ProstateBed => (915.0, 950.0),
            LesionRegion::Spine => (205.0, 860.0),
            LesionRegion::Pelvis => (740.0, 930.0),
            LesionRegion::Rib => (300.0, 640.0),
            LesionRegion::Femur => (905.0, 1000.0),
        }
    }

    /// Snake-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LesionRegion::PelvicNode => "pelvic_node",
            LesionRegion::RetroperitonealNode => "retroperitoneal_node",
            LesionRegion::InguinalNode => "inguinal_node",
            LesionRegion::MediastinalNode => "mediastinal_node",
            LesionRegion::SupraclavicularNode => "supraclavicular_node",
            LesionRegion::ProstateBed => "prostate_bed",
            LesionRegion::Spine => "spine",
            LesionRegion::Pelvis => "pelvis",
            LesionRegion::Rib => "rib",
            LesionRegion::Femur => "femur",
        }
    }
}

/// Study statistics the generator draws from (`docs/method/cohort.md` §5).
pub mod targets {
    /// Mean number of lesions per case.
    pub const MEAN_COUNT: f64 = 1.8;
    /// Mean and SD of lesion volume (ml).
    pub const VOLUME_ML: (f64, f64) = (6.68, 10.20);
    /// Mean and SD of lesion SUVmax.
    pub const SUV_MAX: (f64, f64) = (12.65, 14.46);
    /// Clamp of the drawn volume (ml).
    pub const VOLUME_CLAMP_ML: (f64, f64) = (0.5, 150.0);
    /// Clamp of the drawn SUVmax.
    pub const SUV_CLAMP: (f64, f64) = (3.0, 120.0);
    /// Probability of a case without lesion.
    pub const P_NONE: f64 = 0.2;
    /// Largest number of lesions in a case.
    pub const MAX_COUNT: u32 = 10;
    /// Clearance (mm) to hot organs and to other lesions.
    pub const CLEARANCE_MM: f64 = 10.0;
}

/// A lesion as designed, before rendering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlannedLesion {
    /// The lesion's ellipsoid (world mm).
    pub shape: Shape,
    /// Its centre (world mm) and semi-axes (mm).
    pub centre: [f64; 3],
    pub semi_axes: [f64; 3],
    /// Largest semi-axis (mm).
    pub radius_max_mm: f64,
    pub region: LesionRegion,
    /// Drawn volume (ml) and SUVmax.
    pub volume_ml: f64,
    pub suv_max: f64,
    /// CT number of the lesion where it replaces bone (sclerotic metastasis).
    pub sclerotic_hu: f32,
    /// CT number of the lesion in soft tissue.
    pub soft_hu: f32,
}

impl PlannedLesion {
    /// Centre (world mm).
    pub fn centre(&self) -> [f64; 3] {
        self.centre
    }

    /// Semi-axes (mm).
    pub fn semi_axes_mm(&self) -> [f64; 3] {
        self.semi_axes
    }

    /// Smallest semi-axis (mm).
    pub fn radius_min_mm(&self) -> f64 {
        self.semi_axes[0]
            .min(self.semi_axes[1])
            .min(self.semi_axes[2])
    }
}

fn lognormal_from_mean_sd(mean: f64, sd: f64) -> LogNormal<f64> {
    let s2 = (1.0 + (sd / mean).powi(2)).ln();
    LogNormal::new(mean.ln() - s2 / 2.0, s2.sqrt()).expect("finite positive parameters")
}

/// Draws the number of lesions of a case.
pub(crate) fn sample_count(rng: &mut ChaCha8Rng) -> u32 {
    if rng.random_bool(targets::P_NONE) {
        return 0;
    }
    let q = 1.25 / 2.25; // geometric with mean q / (1 − q) = 1.25
    let mut n = 1;
    while n < targets::MAX_COUNT && rng.random_bool(q) {
        n += 1;
    }
    n
}

/// The ranges drawn lesion sizes and uptakes are clamped to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LesionRanges {
    /// SUVmax range.
    pub suv_max: (f64, f64),
    /// Volume range (ml).
    pub volume_ml: (f64, f64),
}

/// Plans the lesions of a case inside the depth window `[d_top, d_bottom]`
/// (reference mm below the vertex); `in_fov` tells whether a world point is
/// inside the PET field of view (with a margin).
pub(crate) fn plan_lesions(
    anatomy: &Anatomy,
    d_window: (f64, f64),
    in_fov: &dyn Fn([f64; 3]) -> bool,
    ranges: LesionRanges,
    rng: &mut ChaCha8Rng,
) -> Vec<PlannedLesion> {
    let count = sample_count(rng);
    let vol = lognormal_from_mean_sd(targets::VOLUME_ML.0, targets::VOLUME_ML.1);
    let suv = lognormal_from_mean_sd(targets::SUV_MAX.0, targets::SUV_MAX.1);
    let regions: Vec<LesionRegion> = LesionRegion::ALL
        .into_iter()
        .filter(|r| {
            let (a, b) = r.depth_range();
            b > d_window.0 + 20.0 && a < d_window.1 - 20.0
        })
        .collect();
    let total: f64 = regions.iter().map(|r| r.weight()).sum();
    let mut out: Vec<PlannedLesion> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let volume_ml = vol
            .sample(rng)
            .clamp(ranges.volume_ml.0, ranges.volume_ml.1);
        let suv_max = suv.sample(rng).clamp(ranges.suv_max.0, ranges.suv_max.1);
        let radius = (3.0 * volume_ml * 1000.0 / (4.0 * std::f64::consts::PI)).cbrt();
        let e1 = uniform(rng, -0.15, 0.15).exp();
        let e2 = uniform(rng, -0.15, 0.15).exp();
        let r = [radius * e1, radius * e2, radius / (e1 * e2)];
        let angle = uniform(rng, 0.0, std::f64::consts::PI);
        let sclerotic_hu = uniform(rng, 850.0, 1200.0) as f32;
        let soft_hu = uniform(rng, 35.0, 55.0) as f32;
        // The drawn size and uptake are kept; only the site is redrawn when it
        // does not fit, so that placement does not bias the size statistics.
        for _attempt in 0..400 {
            if regions.is_empty() {
                break;
            }
            let mut pick = uniform(rng, 0.0, total);
            let mut region = regions[regions.len() - 1];
            for &cand in &regions {
                if pick < cand.weight() {
                    region = cand;
                    break;
                }
                pick -= cand.weight();
            }
            let Some(centre) = site(anatomy, region, d_window, rng) else {
                continue;
            };
            let shape = Shape::ellipsoid(centre, r, angle);
            let lesion = PlannedLesion {
                shape,
                centre,
                semi_axes: r,
                radius_max_mm: r[0].max(r[1]).max(r[2]),
                region,
                volume_ml,
                suv_max,
                sclerotic_hu,
                soft_hu,
            };
            if fits(anatomy, &lesion, &out, in_fov) {
                out.push(lesion);
                break;
            }
        }
    }
    out
}

/// Whether a lesion is inside the skin and the field of view, clear of hot
/// organs and of the lesions already placed.
fn fits(
    anatomy: &Anatomy,
    l: &PlannedLesion,
    placed: &[PlannedLesion],
    in_fov: &dyn Fn([f64; 3]) -> bool,
) -> bool {
    let c = l.centre;
    let r = l.semi_axes;
    let Shape::Ellipsoid { cos, sin, .. } = l.shape else {
        return false;
    };
    // The six axis ends of the lesion, grown by 3 mm.
    let ax = [[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]];
    for (a, dir) in ax.iter().enumerate() {
        for sign in [-1.0, 1.0] {
            let p = [
                c[0] + sign * (r[a] + 3.0) * dir[0],
                c[1] + sign * (r[a] + 3.0) * dir[1],
                c[2] + sign * (r[a] + 3.0) * dir[2],
            ];
            if !anatomy.in_body(p) || !in_fov(p) {
                return false;
            }
        }
    }
    let reach = l.radius_max_mm + targets::CLEARANCE_MM;
    if anatomy.avoided().any(|s| s.inflated(reach).contains(c)) {
        return false;
    }
    placed.iter().all(|o| {
        let oc = o.centre();
        let d2 = (0..3).map(|a| (oc[a] - c[a]).powi(2)).sum::<f64>();
        d2.sqrt() >= l.radius_max_mm + o.radius_max_mm + targets::CLEARANCE_MM
    })
}

/// A candidate centre (world mm) for a lesion in `region`, or `None` when
/// the region has no site inside the depth window.
fn site(
    anatomy: &Anatomy,
    region: LesionRegion,
    d_window: (f64, f64),
    rng: &mut ChaCha8Rng,
) -> Option<[f64; 3]> {
    let f = anatomy.frame;
    let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let p = match region {
        LesionRegion::PelvicNode => {
            let [a, b, c] = iliac_path(side);
            let (p0, p1) = if rng.random_bool(0.25) {
                (a, b)
            } else {
                (b, c)
            };
            let t = uniform(rng, 0.0, 1.0);
            let lateral = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            f.p(
                p0[0] + t * (p1[0] - p0[0]) + lateral * uniform(rng, 8.0, 25.0),
                p0[1] + t * (p1[1] - p0[1]) + uniform(rng, -12.0, 12.0),
                p0[2] + t * (p1[2] - p0[2]) + uniform(rng, -10.0, 10.0),
            )
        }
        LesionRegion::RetroperitonealNode => {
            let d = uniform(rng, 640.0, 790.0);
            let dx = if rng.random_bool(0.6) {
                -uniform(rng, 15.0, 30.0)
            } else {
                uniform(rng, 15.0, 40.0)
            };
            f.p(
                aorta_x(d) + dx,
                spine_y(d) + 30.0 + uniform(rng, -12.0, 12.0),
                d,
            )
        }
        LesionRegion::InguinalNode => f.p(
            side * uniform(rng, 65.0, 100.0),
            uniform(rng, 45.0, 75.0),
            uniform(rng, 930.0, 985.0),
        ),
        LesionRegion::MediastinalNode => f.p(
            uniform(rng, -25.0, 25.0),
            uniform(rng, 5.0, 40.0),
            uniform(rng, 375.0, 440.0),
        ),
        LesionRegion::SupraclavicularNode => f.p(
            side * uniform(rng, 35.0, 75.0),
            uniform(rng, -10.0, 20.0),
            uniform(rng, 262.0, 300.0),
        ),
        LesionRegion::ProstateBed => f.p(
            uniform(rng, -12.0, 12.0),
            uniform(rng, 15.0, 40.0),
            uniform(rng, 915.0, 950.0),
        ),
        LesionRegion::Spine => {
            let cands: Vec<_> = vertebrae()
                .into_iter()
                .filter(|v| v.d > d_window.0 && v.d < d_window.1)
                .collect();
            if cands.is_empty() {
                return None;
            }
            let v = cands[rng.random_range(0..cands.len())];
            f.p(
                uniform(rng, -0.3, 0.3) * v.r[0],
                spine_y(v.d) + uniform(rng, -0.3, 0.3) * v.r[1],
                v.d + uniform(rng, -0.3, 0.3) * v.r[2],
            )
        }
        LesionRegion::Pelvis => {
            if rng.random_bool(0.7) {
                let wing = anatomy.iliac[if side > 0.0 { 0 } else { 1 }];
                let Shape::Ellipsoid {
                    centre,
                    r,
                    cos,
                    sin,
                } = wing
                else {
                    return None;
                };
                let u = uniform(rng, -0.6, 0.6) * r[1];
                let w = uniform(rng, -0.6, 0.6) * r[2];
                // Local y' axis in world is (−sin, cos).
                [centre[0] - sin * u, centre[1] + cos * u, centre[2] + w]
            } else {
                let Shape::Ellipsoid { centre, r, .. } = anatomy.sacrum else {
                    return None;
                };
                [
                    centre[0] + uniform(rng, -0.4, 0.4) * r[0],
                    centre[1] + uniform(rng, -0.2, 0.2) * r[1],
                    centre[2] + uniform(rng, -0.5, 0.5) * r[2],
                ]
            }
        }
        LesionRegion::Rib => {
            let band = anatomy.ribs[rng.random_range(2..anatomy.ribs.len().min(10))];
            let Shape::Band {
                centre,
                r,
                z_post,
                drop,
                hi,
                ..
            } = band
            else {
                return None;
            };
            let ant = uniform(rng, -0.8, hi - 0.1);
            let u = side * (1.0 - ant * ant).sqrt();
            [
                centre[0] + u * r[0],
                centre[1] + ant * r[1],
                z_post - drop * 0.5 * (ant + 1.0),
            ]
        }
        LesionRegion::Femur => {
            let d = uniform(rng, 905.0, 1000.0);
            let x = if d < 950.0 {
                88.0 + (d - 905.0) / 45.0 * 17.0
            } else {
                105.0 - (d - 950.0) / 330.0 * 20.0
            };
            f.p(side * x, 0.0, d)
        }
    };
    let d = (f.z_vertex - p[2]) / f.s;
    (d > d_window.0 && d < d_window.1).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn count_distribution_has_the_study_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let counts: Vec<u32> = (0..n).map(|_| sample_count(&mut rng)).collect();
        let mean = counts.iter().map(|&c| c as f64).sum::<f64>() / n as f64;
        assert!(
            (mean - targets::MEAN_COUNT).abs() < 0.05,
            "mean count {mean}"
        );
        assert!(counts.iter().all(|&c| c <= targets::MAX_COUNT));
        let zeros = counts.iter().filter(|&&c| c == 0).count() as f64 / n as f64;
        assert!((zeros - targets::P_NONE).abs() < 0.02);
    }

    #[test]
    fn lognormal_parameters_reproduce_mean_and_sd() {
        let d = lognormal_from_mean_sd(6.68, 10.2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let xs: Vec<f64> = (0..200_000).map(|_| d.sample(&mut rng)).collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((m - 6.68).abs() < 0.15, "mean {m}");
    }
}
