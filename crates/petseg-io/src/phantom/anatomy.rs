//! The phantom body: tissues, organs and bones as solids, with per-case CT
//! numbers and PSMA uptake.
//!
//! Geometry is written for a reference adult of 1750 mm (depths `d` in mm
//! below the vertex, `x` towards the patient's right, `y` anterior) and
//! scaled per patient ([`Frame`]). Arms are not modelled (they are raised
//! out of the field of view in a PSMA scan).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::shape::Shape;

/// Tissue classes of the phantom; the `u8` codes are those of
/// [`PhantomCase::tissue`](super::PhantomCase::tissue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Tissue {
    /// Outside the body.
    Air = 0,
    /// Subcutaneous and visceral fat.
    Fat = 1,
    /// Muscle and other soft tissue.
    Muscle = 2,
    /// Lung parenchyma.
    Lung = 3,
    /// Air inside the body (trachea, nasal cavity).
    Airway = 4,
    /// Bone (vertebrae, ribs, pelvis, femurs, skull...).
    Bone = 5,
    /// Brain.
    Brain = 6,
    /// Blood pool (heart, aorta, vena cava, iliac vessels).
    Blood = 7,
    /// Liver.
    Liver = 8,
    /// Spleen.
    Spleen = 9,
    /// Kidneys.
    Kidney = 10,
    /// Small-bowel loops.
    Bowel = 11,
    /// Bowel gas.
    BowelGas = 12,
    /// Urinary bladder (urine).
    Bladder = 13,
    /// Parotid and submandibular glands.
    Salivary = 14,
    /// Lacrimal glands.
    Lacrimal = 15,
}

impl Tissue {
    /// Every tissue, in code order.
    pub const ALL: [Tissue; 16] = [
        Tissue::Air,
        Tissue::Fat,
        Tissue::Muscle,
        Tissue::Lung,
        Tissue::Airway,
        Tissue::Bone,
        Tissue::Brain,
        Tissue::Blood,
        Tissue::Liver,
        Tissue::Spleen,
        Tissue::Kidney,
        Tissue::Bowel,
        Tissue::BowelGas,
        Tissue::Bladder,
        Tissue::Salivary,
        Tissue::Lacrimal,
    ];

    /// The tissue of a code, if any.
    pub fn from_code(code: u8) -> Option<Tissue> {
        Tissue::ALL.get(code as usize).copied()
    }

    /// Physiological PSMA uptake range (SUVbw) the generator draws from
    /// (`docs/method/cohort.md` §4); uniform within the range, per case (per loop for bowel,
    /// per gland for salivary and lacrimal glands).
    pub fn suv_range(self) -> (f32, f32) {
        match self {
            Tissue::Air | Tissue::Airway | Tissue::BowelGas => (0.0, 0.0),
            Tissue::Fat => (0.15, 0.3),
            Tissue::Muscle => (0.5, 0.9),
            Tissue::Lung => (0.2, 0.4),
            Tissue::Bone => (0.8, 1.3),
            Tissue::Brain => (0.15, 0.35),
            Tissue::Blood => (1.3, 1.8),
            Tissue::Liver => (5.0, 8.0),
            Tissue::Spleen => (4.0, 6.0),
            Tissue::Kidney => (20.0, 40.0),
            Tissue::Bowel => (3.0, 6.0),
            Tissue::Bladder => (10.0, 60.0),
            Tissue::Salivary | Tissue::Lacrimal => (10.0, 20.0),
        }
    }

    /// Mean CT number (HU) and the per-voxel texture SD (HU).
    pub fn hu(self) -> (f32, f32) {
        match self {
            Tissue::Air => (-1000.0, 4.0),
            Tissue::Fat => (-100.0, 15.0),
            Tissue::Muscle => (45.0, 12.0),
            Tissue::Lung => (-820.0, 35.0),
            Tissue::Airway => (-990.0, 5.0),
            Tissue::Bone => (700.0, 90.0),
            Tissue::Brain => (35.0, 6.0),
            Tissue::Blood => (40.0, 10.0),
            Tissue::Liver => (55.0, 10.0),
            Tissue::Spleen => (48.0, 10.0),
            Tissue::Kidney => (35.0, 10.0),
            Tissue::Bowel => (25.0, 15.0),
            Tissue::BowelGas => (-950.0, 20.0),
            Tissue::Bladder => (8.0, 8.0),
            Tissue::Salivary => (25.0, 10.0),
            Tissue::Lacrimal => (40.0, 10.0),
        }
    }

    /// Whether lesions must keep clear of this tissue (hot or confusing
    /// physiological uptake, gas).
    pub fn is_avoided_by_lesions(self) -> bool {
        matches!(
            self,
            Tissue::Liver
                | Tissue::Spleen
                | Tissue::Kidney
                | Tissue::Bowel
                | Tissue::BowelGas
                | Tissue::Bladder
                | Tissue::Salivary
                | Tissue::Lacrimal
        )
    }
}

/// One solid of the body with its tissue and PSMA uptake.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Structure {
    pub shape: Shape,
    pub tissue: Tissue,
    pub suv: f32,
    /// Painted in the skin pass (body outline), used by "inside the body" tests.
    pub outline: bool,
}

/// Per-patient scaling and placement of the reference body in world mm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// Height scale (patient height / 1750 mm).
    pub s: f64,
    /// Left-right and antero-posterior scales.
    pub sw: f64,
    pub sap: f64,
    /// World x, y of the body axis and world z of the vertex.
    pub ox: f64,
    pub oy: f64,
    pub z_vertex: f64,
}

impl Frame {
    /// World point of reference coordinates `(x, y, d)`.
    pub fn p(&self, x: f64, y: f64, d: f64) -> [f64; 3] {
        [self.ox + x * self.sw, self.oy + y * self.sap, self.z(d)]
    }
    /// World z of depth `d`.
    pub fn z(&self, d: f64) -> f64 {
        self.z_vertex - d * self.s
    }
    /// World semi-axes of reference semi-axes.
    pub fn r(&self, rx: f64, ry: f64, rz: f64) -> [f64; 3] {
        [rx * self.sw, ry * self.sap, rz * self.s]
    }
    /// World (x, y) of reference `(x, y)`.
    pub fn xy(&self, x: f64, y: f64) -> [f64; 2] {
        [self.ox + x * self.sw, self.oy + y * self.sap]
    }
    /// World in-plane semi-axes.
    pub fn rxy(&self, rx: f64, ry: f64) -> [f64; 2] {
        [rx * self.sw, ry * self.sap]
    }
}

/// Torso outline of the reference body: depth, half width, half depth, centre y.
const TORSO: [(f64, f64, f64, f64); 9] = [
    (275.0, 150.0, 85.0, -5.0),
    (330.0, 168.0, 100.0, -5.0),
    (420.0, 165.0, 110.0, 0.0),
    (520.0, 158.0, 112.0, 5.0),
    (620.0, 150.0, 110.0, 5.0),
    (720.0, 158.0, 112.0, 5.0),
    (800.0, 168.0, 112.0, 0.0),
    (880.0, 175.0, 112.0, 0.0),
    (935.0, 170.0, 105.0, 0.0),
];

/// Torso half width, half depth and centre y at depth `d` (reference mm).
pub(crate) fn torso_at(d: f64) -> (f64, f64, f64) {
    let first = TORSO[0];
    if d <= first.0 {
        return (first.1, first.2, first.3);
    }
    for w in TORSO.windows(2) {
        let (a, b) = (w[0], w[1]);
        if d <= b.0 {
            let t = (d - a.0) / (b.0 - a.0);
            return (
                a.1 + t * (b.1 - a.1),
                a.2 + t * (b.2 - a.2),
                a.3 + t * (b.3 - a.3),
            );
        }
    }
    let last = TORSO[TORSO.len() - 1];
    (last.1, last.2, last.3)
}

/// Reference y of the vertebral body centres at depth `d`.
pub(crate) fn spine_y(d: f64) -> f64 {
    if d < 285.0 {
        -15.0
    } else {
        let (_, b, cy) = torso_at(d);
        cy - b + 70.0
    }
}

/// Reference x of the descending aorta at depth `d` (it runs left of the spine).
pub(crate) fn aorta_x(d: f64) -> f64 {
    -18.0 + 10.0 * ((d - 380.0) / 390.0).clamp(0.0, 1.0)
}

/// A vertebral body of the reference body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vertebra {
    /// Depth of its centre.
    pub d: f64,
    /// Semi-axes (x, y, z), reference mm.
    pub r: [f64; 3],
    /// 0 = cervical, 1 = thoracic, 2 = lumbar.
    pub kind: u8,
}

/// The vertebral column C2..L5 (reference body), top to bottom.
pub(crate) fn vertebrae() -> Vec<Vertebra> {
    let mut out = Vec::with_capacity(23);
    let mut d = 205.0;
    let levels: [(usize, f64, f64, f64, f64, u8); 3] = [
        (6, 14.0, 4.0, 10.0, 8.0, 0),
        (12, 20.0, 5.0, 15.0, 12.0, 1),
        (5, 26.0, 6.0, 22.0, 17.0, 2),
    ];
    for (n, h, gap, rx, ry, kind) in levels {
        for _ in 0..n {
            out.push(Vertebra {
                d: d + h / 2.0,
                r: [rx, ry, h / 2.0],
                kind,
            });
            d += h + gap;
        }
    }
    out
}

/// The body of one case: solids in paint order and the landmarks lesions
/// are placed from.
#[derive(Debug, Clone)]
pub(crate) struct Anatomy {
    pub frame: Frame,
    /// Solids in paint order (later ones overwrite earlier ones).
    pub structures: Vec<Structure>,
    /// Mean HU per tissue code for this case.
    pub hu: [f32; 16],
    /// Rib bands (T1..T12; one band holds both ribs of a level), for rib lesions.
    pub ribs: Vec<Shape>,
    /// Iliac wings (right, left) as ellipsoids.
    pub iliac: [Shape; 2],
    /// The sacrum.
    pub sacrum: Shape,
    /// Reference depth of the upper pole of the higher kidney.
    pub kidney_top_d: f64,
    /// Reference depth of the body's lowest point (soles).
    pub sole_d: f64,
}

/// Draws a uniform value in `[lo, hi)` (or `lo` when the range is empty).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

fn suv_of(rng: &mut ChaCha8Rng, t: Tissue) -> f32 {
    let (lo, hi) = t.suv_range();
    uniform(rng, lo as f64, hi as f64) as f32
}

impl Anatomy {
    /// Samples a body. `body_rng` fixes the patient's build (the same for
    /// every scan of the patient); `scan_rng` draws what differs between
    /// scans: position on the table, uptake values, bladder filling.
    pub(crate) fn sample(body_rng: &mut ChaCha8Rng, scan_rng: &mut ChaCha8Rng) -> Anatomy {
        let height = uniform(body_rng, 1620.0, 1880.0);
        let sw = uniform(body_rng, 0.92, 1.08);
        let sap = uniform(body_rng, 0.9, 1.12);
        let fat_mm = uniform(body_rng, 8.0, 18.0) + (sap - 0.9) * 80.0;
        let n_loops = body_rng.random_range(6..=10usize);
        let loops: Vec<([f64; 3], [f64; 3], f64)> = (0..n_loops)
            .map(|_| {
                (
                    [
                        uniform(body_rng, -80.0, 80.0),
                        uniform(body_rng, 5.0, 60.0),
                        uniform(body_rng, 700.0, 830.0),
                    ],
                    [
                        uniform(body_rng, 18.0, 30.0),
                        uniform(body_rng, 16.0, 26.0),
                        uniform(body_rng, 18.0, 30.0),
                    ],
                    uniform(body_rng, 0.0, std::f64::consts::PI),
                )
            })
            .collect();
        let gas: Vec<([f64; 3], f64)> = (0..3)
            .map(|g| {
                let x = match g {
                    0 => uniform(body_rng, 95.0, 110.0),
                    1 => uniform(body_rng, -110.0, -95.0),
                    _ => uniform(body_rng, -50.0, 50.0),
                };
                let (y, d) = if g < 2 {
                    (
                        uniform(body_rng, 0.0, 30.0),
                        uniform(body_rng, 650.0, 780.0),
                    )
                } else {
                    (
                        uniform(body_rng, 60.0, 75.0),
                        uniform(body_rng, 640.0, 670.0),
                    )
                };
                ([x, y, d], uniform(body_rng, 8.0, 14.0))
            })
            .collect();

        let frame = Frame {
            s: height / 1750.0,
            sw,
            sap,
            ox: uniform(scan_rng, -15.0, 15.0),
            oy: uniform(scan_rng, -10.0, 25.0),
            z_vertex: uniform(scan_rng, -40.0, 60.0),
        };
        let f = frame;
        let mut hu = [0f32; 16];
        for t in Tissue::ALL {
            hu[t as usize] = t.hu().0;
        }
        hu[Tissue::Fat as usize] += uniform(scan_rng, -8.0, 8.0) as f32;
        hu[Tissue::Muscle as usize] += uniform(scan_rng, -5.0, 5.0) as f32;
        hu[Tissue::Bone as usize] += uniform(scan_rng, -50.0, 50.0) as f32;
        hu[Tissue::Lung as usize] += uniform(scan_rng, -30.0, 30.0) as f32;
        let mut suv = [0f32; 16];
        for t in Tissue::ALL {
            suv[t as usize] = suv_of(scan_rng, t);
        }
        let bladder_fill = uniform(scan_rng, 0.7, 1.25);

        let mut st: Vec<Structure> = Vec::with_capacity(160);
        let add = |shape: Shape, tissue: Tissue, suv: f32, st: &mut Vec<Structure>| {
            st.push(Structure {
                shape,
                tissue,
                suv,
                outline: false,
            })
        };

        // 1. Skin pass: body outline in fat (head and face in soft tissue).
        let outline_start = st.len();
        let torso = |shrink: f64| -> Vec<Shape> {
            TORSO
                .windows(2)
                .map(|w| {
                    let (a, b) = (w[0], w[1]);
                    Shape::frustum(
                        f.z(a.0),
                        f.xy(0.0, a.3),
                        [a.1 * sw - shrink, a.2 * sap - shrink],
                        f.z(b.0),
                        f.xy(0.0, b.3),
                        [b.1 * sw - shrink, b.2 * sap - shrink],
                    )
                })
                .collect()
        };
        let neck = |shrink: f64| {
            Shape::frustum(
                f.z(200.0),
                f.xy(0.0, -8.0),
                [55.0 * sw - shrink, 58.0 * sap - shrink],
                f.z(290.0),
                f.xy(0.0, -8.0),
                [70.0 * sw - shrink, 68.0 * sap - shrink],
            )
        };
        let leg_knots: [(f64, f64, f64, f64, f64); 4] = [
            (900.0, 95.0, 0.0, 85.0, 90.0),
            (1250.0, 85.0, 0.0, 55.0, 55.0),
            (1650.0, 85.0, 0.0, 38.0, 40.0),
            (1745.0, 85.0, 25.0, 40.0, 60.0),
        ];
        let legs = |shrink: f64| -> Vec<Shape> {
            let mut out = Vec::new();
            for side in [1.0, -1.0] {
                for w in leg_knots.windows(2) {
                    let (a, b) = (w[0], w[1]);
                    out.push(Shape::frustum(
                        f.z(a.0),
                        f.xy(side * a.1, a.2),
                        [a.3 * sw - shrink, a.4 * sap - shrink],
                        f.z(b.0),
                        f.xy(side * b.1, b.2),
                        [b.3 * sw - shrink, b.4 * sap - shrink],
                    ));
                }
            }
            out
        };
        for s in torso(0.0).into_iter().chain([neck(0.0)]).chain(legs(0.0)) {
            add(s, Tissue::Fat, suv[Tissue::Fat as usize], &mut st);
        }
        let head = Shape::ellipsoid(f.p(0.0, 5.0, 110.0), f.r(72.0, 92.0, 112.0), 0.0);
        let face = Shape::ellipsoid(f.p(0.0, 15.0, 185.0), f.r(58.0, 65.0, 45.0), 0.0);
        add(head, Tissue::Muscle, suv[Tissue::Muscle as usize], &mut st);
        add(face, Tissue::Muscle, suv[Tissue::Muscle as usize], &mut st);
        for s in &mut st[outline_start..] {
            s.outline = true;
        }

        // 2. Muscle inside the subcutaneous fat.
        for s in torso(fat_mm)
            .into_iter()
            .chain([neck(fat_mm * 0.4)])
            .chain(legs(fat_mm * 0.7))
        {
            add(s, Tissue::Muscle, suv[Tissue::Muscle as usize], &mut st);
        }

        // 3. Visceral fat where lymph nodes sit.
        let fat = suv[Tissue::Fat as usize];
        add(
            Shape::ellipsoid(
                f.p(0.0, spine_y(720.0) + 35.0, 730.0),
                f.r(95.0, 45.0, 105.0),
                0.0,
            ),
            Tissue::Fat,
            fat,
            &mut st,
        );
        add(
            Shape::ellipsoid(f.p(0.0, 15.0, 885.0), f.r(95.0, 62.0, 55.0), 0.0),
            Tissue::Fat,
            fat,
            &mut st,
        );

        // 4. Thorax: lungs, mediastinal fat, airway.
        let lung = suv[Tissue::Lung as usize];
        add(
            Shape::ellipsoid(f.p(70.0, 0.0, 420.0), f.r(62.0, 85.0, 140.0), 0.0),
            Tissue::Lung,
            lung,
            &mut st,
        );
        add(
            Shape::ellipsoid(f.p(-72.0, 0.0, 425.0), f.r(58.0, 82.0, 135.0), 0.0),
            Tissue::Lung,
            lung,
            &mut st,
        );
        add(
            Shape::ellipsoid(f.p(0.0, 15.0, 405.0), f.r(32.0, 35.0, 45.0), 0.0),
            Tissue::Fat,
            fat,
            &mut st,
        );
        add(
            Shape::frustum(
                f.z(215.0),
                f.xy(0.0, 15.0),
                f.rxy(9.0, 9.0),
                f.z(395.0),
                f.xy(0.0, 12.0),
                f.rxy(9.0, 9.0),
            ),
            Tissue::Airway,
            0.0,
            &mut st,
        );

        // 5. Organs and blood pool.
        let blood = suv[Tissue::Blood as usize];
        add(
            Shape::ellipsoid(f.p(-25.0, 30.0, 480.0), f.r(60.0, 50.0, 58.0), 0.5),
            Tissue::Blood,
            blood,
            &mut st,
        );
        add(
            Shape::frustum(
                f.z(380.0),
                f.xy(aorta_x(380.0), spine_y(380.0) + 30.0),
                f.rxy(12.0, 12.0),
                f.z(770.0),
                f.xy(aorta_x(770.0), spine_y(770.0) + 32.0),
                f.rxy(11.0, 11.0),
            ),
            Tissue::Blood,
            blood,
            &mut st,
        );
        add(
            Shape::frustum(
                f.z(480.0),
                f.xy(22.0, spine_y(480.0) + 30.0),
                f.rxy(12.0, 10.0),
                f.z(775.0),
                f.xy(20.0, spine_y(775.0) + 30.0),
                f.rxy(12.0, 10.0),
            ),
            Tissue::Blood,
            blood,
            &mut st,
        );
        for side in [1.0, -1.0] {
            let [a, b, c] = iliac_path(side);
            add(
                Shape::frustum(
                    f.z(a[2]),
                    f.xy(a[0], a[1]),
                    f.rxy(8.0, 8.0),
                    f.z(b[2]),
                    f.xy(b[0], b[1]),
                    f.rxy(7.0, 7.0),
                ),
                Tissue::Blood,
                blood,
                &mut st,
            );
            add(
                Shape::frustum(
                    f.z(b[2]),
                    f.xy(b[0], b[1]),
                    f.rxy(7.0, 7.0),
                    f.z(c[2]),
                    f.xy(c[0], c[1]),
                    f.rxy(7.0, 7.0),
                ),
                Tissue::Blood,
                blood,
                &mut st,
            );
        }
        add(
            Shape::ellipsoid(f.p(65.0, 15.0, 560.0), f.r(95.0, 85.0, 78.0), 0.2),
            Tissue::Liver,
            suv[Tissue::Liver as usize],
            &mut st,
        );
        add(
            Shape::ellipsoid(f.p(-85.0, -30.0, 575.0), f.r(32.0, 50.0, 55.0), -0.4),
            Tissue::Spleen,
            suv[Tissue::Spleen as usize],
            &mut st,
        );
        for (c, r, a) in &loops {
            let s = suv_of(scan_rng, Tissue::Bowel);
            add(
                Shape::ellipsoid(f.p(c[0], c[1], c[2]), f.r(r[0], r[1], r[2]), *a),
                Tissue::Bowel,
                s,
                &mut st,
            );
        }
        for (c, r) in &gas {
            add(
                Shape::ellipsoid(f.p(c[0], c[1], c[2]), f.r(*r, *r, *r), 0.0),
                Tissue::BowelGas,
                0.0,
                &mut st,
            );
        }
        let kidney = suv[Tissue::Kidney as usize];
        let kidney_d = [690.0, 675.0];
        for (side, d) in [(1.0, kidney_d[0]), (-1.0, kidney_d[1])] {
            add(
                Shape::ellipsoid(
                    f.p(side * 65.0, spine_y(d) + 15.0, d),
                    f.r(30.0, 28.0, 55.0),
                    side * 0.3,
                ),
                Tissue::Kidney,
                kidney,
                &mut st,
            );
        }
        let kidney_top_d = kidney_d[0].min(kidney_d[1]) - 55.0;
        add(
            Shape::ellipsoid(
                f.p(0.0, 55.0, 885.0),
                f.r(
                    45.0 * bladder_fill,
                    38.0 * bladder_fill,
                    35.0 * bladder_fill,
                ),
                0.0,
            ),
            Tissue::Bladder,
            suv[Tissue::Bladder as usize],
            &mut st,
        );

        // 6. Head: skull, brain, orbits, glands.
        add(
            Shape::ellipsoid(f.p(0.0, 0.0, 95.0), f.r(68.0, 86.0, 76.0), 0.0),
            Tissue::Bone,
            suv[Tissue::Bone as usize],
            &mut st,
        );
        add(
            Shape::ellipsoid(f.p(0.0, 0.0, 95.0), f.r(61.0, 79.0, 69.0), 0.0),
            Tissue::Brain,
            suv[Tissue::Brain as usize],
            &mut st,
        );
        for side in [1.0, -1.0] {
            add(
                Shape::ellipsoid(f.p(side * 32.0, 72.0, 118.0), f.r(17.0, 20.0, 15.0), 0.0),
                Tissue::Fat,
                fat,
                &mut st,
            );
        }
        add(
            Shape::ellipsoid(f.p(0.0, 75.0, 140.0), f.r(11.0, 18.0, 16.0), 0.0),
            Tissue::Airway,
            0.0,
            &mut st,
        );
        for side in [1.0, -1.0] {
            for (c, r) in [
                ([side * 55.0, 5.0, 170.0], [14.0, 22.0, 25.0]),
                ([side * 35.0, 35.0, 208.0], [12.0, 12.0, 10.0]),
            ] {
                let s = suv_of(scan_rng, Tissue::Salivary);
                add(
                    Shape::ellipsoid(f.p(c[0], c[1], c[2]), f.r(r[0], r[1], r[2]), 0.0),
                    Tissue::Salivary,
                    s,
                    &mut st,
                );
            }
            let s = suv_of(scan_rng, Tissue::Lacrimal);
            add(
                Shape::ellipsoid(
                    f.p(side * 42.0, 72.0, 108.0),
                    f.r(12.0, 8.0, 8.0),
                    side * 0.5,
                ),
                Tissue::Lacrimal,
                s,
                &mut st,
            );
        }

        // 7. Bones.
        let bone = suv[Tissue::Bone as usize];
        for v in vertebrae() {
            let y = spine_y(v.d);
            add(
                Shape::ellipsoid(f.p(0.0, y, v.d), f.r(v.r[0], v.r[1], v.r[2]), 0.0),
                Tissue::Bone,
                bone,
                &mut st,
            );
            add(
                Shape::ellipsoid(
                    f.p(0.0, y - v.r[1] - 16.0, v.d + 4.0),
                    f.r(6.0 + v.r[0] * 0.3, 14.0, v.r[2] * 0.7),
                    0.0,
                ),
                Tissue::Bone,
                bone,
                &mut st,
            );
        }
        let mut ribs = Vec::with_capacity(12);
        for (n, v) in vertebrae().iter().filter(|v| v.kind == 1).enumerate() {
            let (a, b, cy) = torso_at(v.d + 20.0);
            let scale = if n < 2 { 0.8 + 0.1 * n as f64 } else { 1.0 };
            // True ribs reach the sternum (cartilage gap in front), false
            // ribs stop earlier, floating ribs stay posterior.
            let hi = match n {
                0..=6 => 0.93,
                7..=9 => 0.6,
                _ => 0.0,
            };
            // One band holds the rib pair of a level (the arc is symmetric).
            let band = Shape::Band {
                centre: f.xy(0.0, cy),
                r: [
                    (a * sw - fat_mm - 14.0) * scale,
                    (b * sap - fat_mm - 12.0) * scale,
                ],
                z_post: f.z(v.d),
                drop: 45.0 * f.s,
                half_radial: 5.0,
                half_z: 6.0,
                lo: -0.93,
                hi,
            };
            ribs.push(band);
            add(band, Tissue::Bone, bone, &mut st);
        }
        add(
            Shape::frustum(
                f.z(320.0),
                [
                    f.ox,
                    f.oy + (torso_at(320.0).2 + torso_at(320.0).1) * sap - fat_mm - 14.0,
                ],
                [18.0 * sw, 7.0 * sap],
                f.z(500.0),
                [
                    f.ox,
                    f.oy + (torso_at(500.0).2 + torso_at(500.0).1) * sap - fat_mm - 14.0,
                ],
                [16.0 * sw, 7.0 * sap],
            ),
            Tissue::Bone,
            bone,
            &mut st,
        );
        for side in [1.0, -1.0] {
            add(
                Shape::ellipsoid(
                    f.p(side * 95.0, -torso_at(360.0).1 + 38.0, 370.0),
                    f.r(6.0, 48.0, 70.0),
                    side * 1.25,
                ),
                Tissue::Bone,
                bone,
                &mut st,
            );
        }
        let iliac = [
            Shape::ellipsoid(
                f.p(95.0, -20.0, 800.0),
                f.r(7.0, 60.0, 60.0),
                -std::f64::consts::FRAC_PI_4,
            ),
            Shape::ellipsoid(
                f.p(-95.0, -20.0, 800.0),
                f.r(7.0, 60.0, 60.0),
                std::f64::consts::FRAC_PI_4,
            ),
        ];
        for s in iliac {
            add(s, Tissue::Bone, bone, &mut st);
        }
        let sacrum = Shape::ellipsoid(
            f.p(0.0, spine_y(870.0) - 15.0, 870.0),
            f.r(45.0, 18.0, 60.0),
            0.0,
        );
        add(sacrum, Tissue::Bone, bone, &mut st);
        add(
            Shape::ellipsoid(f.p(0.0, 62.0, 940.0), f.r(60.0, 12.0, 14.0), 0.0),
            Tissue::Bone,
            bone,
            &mut st,
        );
        for side in [1.0, -1.0] {
            add(
                Shape::ellipsoid(f.p(side * 88.0, 0.0, 905.0), f.r(26.0, 26.0, 26.0), 0.0),
                Tissue::Bone,
                bone,
                &mut st,
            );
            add(
                Shape::ellipsoid(f.p(side * 55.0, -15.0, 945.0), f.r(14.0, 22.0, 28.0), 0.0),
                Tissue::Bone,
                bone,
                &mut st,
            );
            add(
                Shape::frustum(
                    f.z(905.0),
                    f.xy(side * 88.0, 0.0),
                    f.rxy(14.0, 14.0),
                    f.z(950.0),
                    f.xy(side * 105.0, 0.0),
                    f.rxy(15.0, 15.0),
                ),
                Tissue::Bone,
                bone,
                &mut st,
            );
            add(
                Shape::frustum(
                    f.z(950.0),
                    f.xy(side * 105.0, 0.0),
                    f.rxy(15.0, 15.0),
                    f.z(1280.0),
                    f.xy(side * 85.0, 5.0),
                    f.rxy(14.0, 14.0),
                ),
                Tissue::Bone,
                bone,
                &mut st,
            );
            add(
                Shape::frustum(
                    f.z(1275.0),
                    f.xy(side * 85.0, 5.0),
                    f.rxy(14.0, 14.0),
                    f.z(1690.0),
                    f.xy(side * 85.0, 5.0),
                    f.rxy(12.0, 12.0),
                ),
                Tissue::Bone,
                bone,
                &mut st,
            );
        }
        add(
            Shape::Band {
                centre: f.xy(0.0, 5.0),
                r: [48.0 * sw, 55.0 * sap],
                z_post: f.z(195.0),
                drop: 10.0 * f.s,
                half_radial: 5.0,
                half_z: 12.0,
                lo: -0.3,
                hi: 1.0,
            },
            Tissue::Bone,
            bone,
            &mut st,
        );

        Anatomy {
            frame,
            structures: st,
            hu,
            ribs,
            iliac,
            sacrum,
            kidney_top_d,
            sole_d: 1745.0,
        }
    }

    /// Whether a world point lies inside the body outline (skin).
    pub(crate) fn in_body(&self, p: [f64; 3]) -> bool {
        self.structures
            .iter()
            .filter(|s| s.outline)
            .any(|s| s.shape.contains(p))
    }

    /// The solids lesions must keep clear of.
    pub(crate) fn avoided(&self) -> impl Iterator<Item = &Shape> {
        self.structures
            .iter()
            .filter(|s| s.tissue.is_avoided_by_lesions())
            .map(|s| &s.shape)
    }
}

/// Reference points of one side's iliac vessels: aortic bifurcation,
/// common-iliac bifurcation, inguinal ligament. `side` = +1 right, −1 left.
pub(crate) fn iliac_path(side: f64) -> [[f64; 3]; 3] {
    [
        [aorta_x(770.0), spine_y(770.0) + 32.0, 770.0],
        [side * 42.0, spine_y(835.0) + 35.0, 835.0],
        [side * 75.0, 40.0, 930.0],
    ]
}
