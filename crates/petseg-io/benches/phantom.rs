//! Time per phantom case, small and full, generation and writing.
//!
//! `cargo bench -p petseg-io --bench phantom [-- SMALL_CASES FULL_CASES]`
//! (defaults 10 and 1). Also prints each tissue's median SUV and HU in the
//! full case, the check for the head glands that the small crop lacks.

use std::time::Instant;

use petseg_io::phantom::{
    generate_case, psf_blur, write_cohort, PhantomCase, PhantomConfig, Size, Tissue,
};

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

fn tissue_table(c: &PhantomCase) {
    let (t, pet, ct, lab) = (
        c.tissue.as_raster_slice(),
        c.pet_suv.as_raster_slice(),
        c.ct.as_raster_slice(),
        c.label.as_raster_slice(),
    );
    println!("  tissue        voxels  median SUV  median HU   (drawn SUV range)");
    for tissue in Tissue::ALL {
        let idx: Vec<usize> = (0..t.len())
            .filter(|&i| t[i] == tissue as u8 && lab[i] == 0)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let suv = median(idx.iter().map(|&i| pet[i]).collect());
        let hu = median(idx.iter().map(|&i| ct[i]).collect());
        let (lo, hi) = tissue.suv_range();
        println!(
            "  {:<12} {:>8} {:>10.2} {:>10.0}   ({lo}..{hi})",
            format!("{tissue:?}"),
            idx.len(),
            suv,
            hu
        );
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n_small = args.first().copied().unwrap_or(10).max(1);
    let n_full = args.get(1).copied().unwrap_or(1);
    println!("threads: {}", rayon::current_num_threads());

    let small = PhantomConfig::new(Size::Small);
    let t0 = Instant::now();
    let mut lesions = 0;
    for i in 0..n_small {
        lesions += generate_case(&small, 1, i)
            .expect("small case")
            .lesions
            .len();
    }
    let gen_small = t0.elapsed().as_secs_f64() / n_small as f64;
    let dir = tempfile::tempdir().expect("temporary folder");
    let t0 = Instant::now();
    write_cohort(&dir.path().join("small"), &small, n_small, 1).expect("small cohort");
    let write_small = t0.elapsed().as_secs_f64() / n_small as f64;
    println!(
        "small (96x72x112 PET, 200x200x~156 CT): generate {gen_small:.3} s/case, \
         generate+write {write_small:.3} s/case ({n_small} cases, {lesions} lesions)"
    );

    let full = PhantomConfig::new(Size::Full);
    for i in 0..n_full {
        let t0 = Instant::now();
        let case = generate_case(&full, 1, i).expect("full case");
        let gen = t0.elapsed().as_secs_f64();
        println!(
            "full case {i}: PET {:?}, CT native {:?}: generate {gen:.2} s, {} lesions",
            case.pet_suv.shape(),
            case.ct_native.shape(),
            case.lesions.len()
        );
        if i == 0 {
            tissue_table(&case);
        }
    }
    if n_full > 0 {
        let t0 = Instant::now();
        write_cohort(&dir.path().join("full"), &full, 1, 1).expect("full cohort");
        println!(
            "full: generate+write {:.2} s/case",
            t0.elapsed().as_secs_f64()
        );
        blur_against_scipy(&full);
    }
}

/// The PSF blur on a full PET grid, next to SciPy's `gaussian_filter` on
/// the same grid and σ (the nearest Python peer of the generator's
/// dominant image operation), measured in the same run.
fn blur_against_scipy(full: &PhantomConfig) {
    let case = generate_case(full, 1, 0).expect("full case");
    let (shape, sp) = (case.pet_suv.shape(), case.pet_suv.spacing_mm());
    let reps = 3;
    let t0 = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(psf_blur(&case.pet_suv, full.psf_fwhm_mm).expect("blur"));
    }
    let ours = t0.elapsed().as_secs_f64() / reps as f64;
    println!("full: PSF blur of the PET grid {shape:?}: {ours:.3} s");
    let sigma: Vec<f64> = sp
        .iter()
        .map(|s| full.psf_fwhm_mm / 2.354_820_045 / s)
        .collect();
    let script = format!(
        "import time, numpy as np\nfrom scipy.ndimage import gaussian_filter\n\
         a = np.asfortranarray(np.random.default_rng(0).random(({}, {}, {}), dtype=np.float32))\n\
         ts = []\n\
         for _ in range({reps}):\n    t = time.perf_counter(); gaussian_filter(a, ({:.4}, {:.4}, {:.4}), truncate=3.0, mode='nearest'); ts.append(time.perf_counter() - t)\n\
         print(f'{{sum(ts) / len(ts):.3f}}')",
        shape[0], shape[1], shape[2], sigma[0], sigma[1], sigma[2]
    );
    match std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
    {
        Ok(o) if o.status.success() => println!(
            "scipy.ndimage.gaussian_filter, same grid and σ: {} s",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        _ => println!("scipy peer skipped (python3 with numpy/scipy not available)"),
    }
}
