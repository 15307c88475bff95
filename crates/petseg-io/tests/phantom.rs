//! Synthetic cohort: determinism, study statistics, anatomy, layout.

use std::collections::BTreeMap;
use std::path::Path;

use petseg_io::manifest::Manifest;
use petseg_io::nifti::{read_nifti, AnyVolume};
use petseg_io::phantom::{
    design_lesions, generate_case, targets, write_cohort, PhantomCase, PhantomConfig, Size, Tissue,
};
use rayon::prelude::*;

fn small() -> PhantomConfig {
    PhantomConfig::new(Size::Small)
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_cohort(a.path(), &small(), 2, 11).unwrap();
    write_cohort(b.path(), &small(), 2, 11).unwrap();
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta.len(), 2 * 3 + 2, "{:?}", ta.keys().collect::<Vec<_>>());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, bytes) in &ta {
        assert!(
            bytes == &tb[name],
            "{name} differs between two runs with the same seed"
        );
    }
}

#[test]
fn different_seeds_and_cases_differ() {
    let a = generate_case(&small(), 1, 0).unwrap();
    let b = generate_case(&small(), 2, 0).unwrap();
    let c = generate_case(&small(), 1, 1).unwrap();
    assert_ne!(a.pet_suv.as_raster_slice(), b.pet_suv.as_raster_slice());
    assert_ne!(a.pet_suv.as_raster_slice(), c.pet_suv.as_raster_slice());
    assert_ne!(a.ct_native.as_raster_slice(), b.ct_native.as_raster_slice());
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| generate_case(&small(), 5, 3).unwrap())
    };
    let (one, three) = (run(1), run(3));
    assert_eq!(one.pet_suv, three.pet_suv);
    assert_eq!(one.ct_native, three.ct_native);
    assert_eq!(one.ct, three.ct);
    assert_eq!(one.label, three.label);
}

#[test]
fn design_statistics_match_the_study_over_many_cases() {
    // 400 small cases, designed (not rendered): count, volume and SUVmax.
    let cfg = small();
    let designs: Vec<_> = (0..400)
        .into_par_iter()
        .map(|i| design_lesions(&cfg, 2024, i).unwrap())
        .collect();
    let n_cases = designs.len() as f64;
    let lesions: Vec<_> = designs.iter().flatten().collect();
    let mean_count = lesions.len() as f64 / n_cases;
    assert!(
        (mean_count - targets::MEAN_COUNT).abs() < 0.25,
        "mean lesion count {mean_count}"
    );
    assert!(designs
        .iter()
        .all(|d| d.len() <= targets::MAX_COUNT as usize));
    assert!(designs.iter().any(|d| d.is_empty()) && designs.iter().any(|d| d.len() >= 4));
    let mean =
        |f: &dyn Fn(usize) -> f64| (0..lesions.len()).map(f).sum::<f64>() / lesions.len() as f64;
    let vol = mean(&|i| lesions[i].volume_ml);
    let suv = mean(&|i| lesions[i].suv_max);
    // Means of heavy-tailed log-normals over ~700 lesions: ±20 % is about 3 SE.
    assert!(
        (vol / targets::VOLUME_ML.0 - 1.0).abs() < 0.2,
        "mean volume {vol} ml"
    );
    assert!(
        (suv / targets::SUV_MAX.0 - 1.0).abs() < 0.2,
        "mean SUVmax {suv}"
    );
    // Log-normal shape: the median is well below the mean.
    let mut v: Vec<f64> = lesions.iter().map(|l| l.volume_ml).collect();
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    assert!(median > 2.5 && median < 5.0, "median volume {median}");
    // Lesions in the small crop come from the regions in view, both kinds.
    assert!(lesions.iter().any(|l| l.region.is_bone()));
    assert!(lesions.iter().any(|l| !l.region.is_bone()));
}

/// Connected components (26-connectivity) of a binary mask; sizes.
fn components(mask: &[u8], shape: [usize; 3]) -> Vec<usize> {
    let [ni, nj, nk] = shape;
    let mut seen = vec![false; mask.len()];
    let mut sizes = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || seen[start] {
            continue;
        }
        let mut stack = vec![start];
        seen[start] = true;
        let mut n = 0;
        while let Some(idx) = stack.pop() {
            n += 1;
            let (i, j, k) = (idx % ni, (idx / ni) % nj, idx / (ni * nj));
            for dk in -1i64..=1 {
                for dj in -1i64..=1 {
                    for di in -1i64..=1 {
                        let (a, b, c) = (i as i64 + di, j as i64 + dj, k as i64 + dk);
                        if a < 0
                            || b < 0
                            || c < 0
                            || a >= ni as i64
                            || b >= nj as i64
                            || c >= nk as i64
                        {
                            continue;
                        }
                        let q = a as usize + ni * (b as usize + nj * c as usize);
                        if mask[q] != 0 && !seen[q] {
                            seen[q] = true;
                            stack.push(q);
                        }
                    }
                }
            }
        }
        sizes.push(n);
    }
    sizes
}

fn rendered(n: usize, seed: u64) -> Vec<PhantomCase> {
    (0..n)
        .into_par_iter()
        .map(|i| generate_case(&small(), seed, i).unwrap())
        .collect()
}

#[test]
fn rendered_cases_have_binary_separate_lesions_inside_the_body() {
    let cases = rendered(16, 77);
    let mut measured = Vec::new();
    for c in &cases {
        assert_eq!(c.pet_suv.shape(), [96, 72, 112]);
        assert!(c.ct.same_grid(&c.pet_suv, 1e-9) && c.label.same_grid(&c.pet_suv, 1e-9));
        assert!(
            c.ct_native.spacing_mm()[0] < c.pet_suv.spacing_mm()[0],
            "CT grid is finer"
        );
        assert!(!c.ct_native.same_grid(&c.ct, 1e-3));
        assert_eq!(c.pet_suv.affine().orientation_code(), "LPS");
        let label = c.label.as_raster_slice();
        assert!(label.iter().all(|&v| v <= 1), "label is binary");
        let sizes = components(label, c.label.shape());
        assert_eq!(
            sizes.len(),
            c.lesions.len(),
            "{}: one component per lesion",
            c.id
        );
        let voxel_ml = c.label.voxel_volume_ml();
        let total: f64 = c.lesions.iter().map(|l| l.volume_ml).sum();
        let n_label = label.iter().filter(|&&v| v == 1).count();
        assert!((total - n_label as f64 * voxel_ml).abs() < 1e-9);
        let (ct, tissue, pet) = (
            c.ct.as_raster_slice(),
            c.tissue.as_raster_slice(),
            c.pet_suv.as_raster_slice(),
        );
        for idx in (0..label.len()).filter(|&i| label[i] == 1) {
            assert_ne!(
                tissue[idx],
                Tissue::Air as u8,
                "{}: lesion voxel outside the body",
                c.id
            );
            assert!(ct[idx] > -500.0, "{}: lesion voxel at {} HU", c.id, ct[idx]);
        }
        // Lesions are hot over their surroundings (learnable contrast).
        for l in &c.lesions {
            let ijk = c.pet_suv.affine().world_to_voxel(l.centre_mm);
            let v = [
                ijk[0].round() as usize,
                ijk[1].round() as usize,
                ijk[2].round() as usize,
            ];
            assert_eq!(c.label.data()[v], 1, "{}: lesion centre labelled", c.id);
            assert!(l.suv_max > 2.0, "{}: SUVmax {}", c.id, l.suv_max);
            measured.push(*l);
        }
        assert!(pet.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
    assert!(measured.len() >= 15, "{} lesions", measured.len());
    // Voxelised volumes and measured SUVmax follow the designed ones.
    let sum =
        |f: &dyn Fn(&petseg_io::phantom::LesionInfo) -> f64| measured.iter().map(f).sum::<f64>();
    let vol_ratio = sum(&|l| l.volume_ml) / sum(&|l| l.design_volume_ml);
    assert!(
        (vol_ratio - 1.0).abs() < 0.05,
        "measured/designed volume {vol_ratio}"
    );
    let suv_ratio = sum(&|l| l.suv_max) / sum(&|l| l.design_suv_max);
    assert!(
        (suv_ratio - 1.0).abs() < 0.2,
        "measured/designed SUVmax {suv_ratio}"
    );
    for l in &measured {
        assert!(l.suv_mean < l.suv_max && l.suv_mean > 0.2 * l.suv_max);
    }
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Values of `vol` at voxels of `tissue` that are not lesion voxels.
fn at_tissue(c: &PhantomCase, vol: &[f32], t: Tissue) -> Vec<f32> {
    let (tis, lab) = (c.tissue.as_raster_slice(), c.label.as_raster_slice());
    (0..vol.len())
        .filter(|&i| tis[i] == t as u8 && lab[i] == 0)
        .map(|i| vol[i])
        .collect()
}

#[test]
fn organ_uptake_is_in_the_specified_ranges() {
    // Without blur and noise, every organ voxel carries its drawn SUV.
    let exact = PhantomConfig {
        psf_fwhm_mm: 0.0,
        noise_cov_at_suv6: 0.0,
        ct_noise: false,
        ..small()
    };
    for i in 0..4 {
        let c = generate_case(&exact, 31, i).unwrap();
        let pet = c.pet_suv.as_raster_slice();
        for t in Tissue::ALL {
            let (lo, hi) = t.suv_range();
            for v in at_tissue(&c, pet, t) {
                assert!(
                    v >= lo && v <= hi,
                    "{:?} at SUV {v}, expected {lo}..{hi}",
                    t
                );
            }
        }
        for t in [
            Tissue::Liver,
            Tissue::Kidney,
            Tissue::Spleen,
            Tissue::Bladder,
            Tissue::Bowel,
            Tissue::Bone,
        ] {
            assert!(
                !at_tissue(&c, pet, t).is_empty(),
                "{:?} in the small field of view",
                t
            );
        }
    }
    // With the PSF and noise, organ medians stay in range (10 % slack).
    for c in rendered(4, 32) {
        let pet = c.pet_suv.as_raster_slice();
        for t in [
            Tissue::Liver,
            Tissue::Kidney,
            Tissue::Spleen,
            Tissue::Bladder,
            Tissue::Muscle,
        ] {
            let (lo, hi) = t.suv_range();
            let m = median(at_tissue(&c, pet, t));
            assert!(
                m >= 0.9 * lo && m <= 1.1 * hi,
                "{}: {:?} median SUV {m}",
                c.id,
                t
            );
        }
        // Liver noise: CoV about 10 % (interior and edges together, so loose).
        let liver = at_tissue(&c, pet, Tissue::Liver);
        let mean = liver.iter().sum::<f32>() / liver.len() as f32;
        let sd =
            (liver.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / liver.len() as f32).sqrt();
        assert!(
            sd / mean > 0.04 && sd / mean < 0.25,
            "liver CoV {}",
            sd / mean
        );
    }
}

#[test]
fn ct_tissues_have_their_hounsfield_units() {
    for c in rendered(2, 41) {
        let ct = c.ct.as_raster_slice();
        let check = |t: Tissue, lo: f32, hi: f32| {
            let m = median(at_tissue(&c, ct, t));
            assert!(
                m >= lo && m <= hi,
                "{}: {:?} median {m} HU, expected {lo}..{hi}",
                c.id,
                t
            );
        };
        check(Tissue::Air, -1024.0, -950.0);
        check(Tissue::Lung, -900.0, -600.0);
        check(Tissue::Fat, -140.0, -60.0);
        check(Tissue::Muscle, 20.0, 70.0);
        check(Tissue::Liver, 30.0, 80.0);
        check(Tissue::Bone, 350.0, 900.0);
        assert!(
            ct.iter().all(|v| v.fract() == 0.0),
            "CT on the PET grid is in whole HU"
        );
        // The CT grid covers the PET grid: no fill value inside the PET field of view.
        assert!(ct.iter().all(|&v| v > -1024.5));
        let native = c.ct_native.as_raster_slice();
        assert!(native.iter().any(|&v| v > 600.0) && native.iter().any(|&v| v < -900.0));
    }
}

#[test]
fn followup_scans_share_the_patient() {
    let cfg = PhantomConfig {
        followup_probability: 0.5,
        ..small()
    };
    let ids: Vec<String> = (0..12)
        .map(|i| generate_case(&cfg, 3, i).unwrap().patient_id)
        .collect();
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert!(
        distinct.len() < ids.len(),
        "some patients have several scans: {ids:?}"
    );
    assert!(distinct.len() > 1);
}

#[test]
fn cohort_layout_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_cohort(dir.path(), &small(), 3, 5).unwrap();
    let loaded = Manifest::load(&dir.path().join("manifest.json")).unwrap();
    assert_eq!(loaded, m);
    loaded.check_files_exist().unwrap();
    assert_eq!(loaded.cases.len(), 3);
    for c in &loaded.cases {
        assert_eq!(c.tags["tracer"], "18F-DCFPyL");
        let case = generate_case(&small(), 5, c.id[5..].parse().unwrap()).unwrap();
        assert_eq!(c.n_lesions, Some(case.lesions.len() as u32));
        assert_eq!(c.patient_id, case.patient_id);
        let ct = read_nifti(loaded.resolve(&c.ct)).unwrap();
        let pet = read_nifti(loaded.resolve(&c.pet)).unwrap();
        let label = read_nifti(loaded.resolve(c.label.as_ref().unwrap())).unwrap();
        match (&ct, &pet, &label) {
            (AnyVolume::I16(ct), AnyVolume::F32(pet), AnyVolume::U8(label)) => {
                assert!(ct.same_grid(pet, 1e-4) && label.same_grid(pet, 1e-4));
                assert_eq!(pet.as_raster_slice(), case.pet_suv.as_raster_slice());
                assert_eq!(label.as_raster_slice(), case.label.as_raster_slice());
                assert!(ct
                    .as_raster_slice()
                    .iter()
                    .zip(case.ct.as_raster_slice())
                    .all(|(&a, &b)| a as f32 == b));
            }
            _ => panic!(
                "dtypes {} / {} / {}, expected int16 / float32 / uint8",
                ct.dtype_name(),
                pet.dtype_name(),
                label.dtype_name()
            ),
        }
    }
    let lesions: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("lesions.json")).unwrap())
            .unwrap();
    assert_eq!(lesions["seed"], 5);
    assert!(lesions["cases"]["psma_0000"].is_array());
}

#[test]
fn example_manifest_matches_the_generator() {
    // data-manifests/phantom-small.json describes
    // `petseg phantom --out demo-out/phantom-small --cases 24 --seed 42`.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/phantom-small.json");
    let m = Manifest::load(&path).unwrap();
    assert_eq!(m.root, Path::new("../demo-out/phantom-small"));
    assert_eq!(m.cases.len(), 24);
    let cfg = small();
    for (i, c) in m.cases.iter().enumerate() {
        assert_eq!(c.id, petseg_io::phantom::case_id(i));
        let patient = petseg_io::phantom::patient_number(42, i, cfg.followup_probability);
        assert_eq!(c.patient_id, petseg_io::phantom::patient_id(patient));
        assert_eq!(
            c.n_lesions,
            Some(design_lesions(&cfg, 42, i).unwrap().len() as u32),
            "{}",
            c.id
        );
    }
    assert!(m.patients().len() < 24, "some patients have several scans");
}

#[test]
fn lesion_ranges_bound_every_drawn_lesion() {
    let cfg = PhantomConfig {
        lesion_suv_max_range: (8.0, 40.0),
        lesion_volume_range_ml: (1.0, 20.0),
        ..small()
    };
    let mut n = 0;
    for i in 0..60 {
        for l in design_lesions(&cfg, 5, i).unwrap() {
            assert!((8.0..=40.0).contains(&l.suv_max), "SUVmax {}", l.suv_max);
            assert!(
                (1.0..=20.0).contains(&l.volume_ml),
                "volume {}",
                l.volume_ml
            );
            n += 1;
        }
    }
    assert!(n > 50, "only {n} lesions drawn");
    // The default keeps the study's range, faint lesions included.
    let faint = (0..60)
        .flat_map(|i| design_lesions(&small(), 5, i).unwrap())
        .filter(|l| l.suv_max < 8.0)
        .count();
    assert!(faint > 0);
    for (suv, vol) in [
        ((0.5, 10.0), (1.0, 2.0)),
        ((9.0, 8.0), (1.0, 2.0)),
        ((3.0, 9.0), (0.0, 2.0)),
    ] {
        let bad = PhantomConfig {
            lesion_suv_max_range: suv,
            lesion_volume_range_ml: vol,
            ..small()
        };
        let err = design_lesions(&bad, 5, 0).unwrap_err().to_string();
        assert!(err.contains("range"), "{err}");
    }
}

#[test]
fn invalid_lesion_range_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cohort");
    let cfg = PhantomConfig {
        lesion_suv_max_range: (200.0, 120.0),
        ..small()
    };
    let err = write_cohort(&out, &cfg, 2, 1).unwrap_err().to_string();
    assert!(err.contains("lesion SUVmax range"), "{err}");
    assert!(
        !out.exists(),
        "a refused config left {} behind",
        out.display()
    );
}
