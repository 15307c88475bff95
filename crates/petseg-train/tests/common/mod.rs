//! Small synthetic cases and configs shared by the training tests.
#![allow(dead_code)]

use std::path::Path;

use petseg_augment::PreparedCase;
use petseg_io::{Affine, Volume};
use petseg_train::config::RunConfig;

/// A 24³ case: CT in [0, 1], PET background ~1 with a hot sphere of
/// radius 3 at a case-dependent place, labelled.
pub fn sphere_case(id: usize, nan_pet: bool) -> PreparedCase {
    let n = 24;
    let aff = Affine::from_spacing_origin([2.0; 3], [0.0; 3]).unwrap();
    let c = [
        8.0 + (id % 3) as f64 * 4.0,
        12.0,
        10.0 + (id % 2) as f64 * 4.0,
    ];
    let inside = |i: usize, j: usize, k: usize| {
        let d2 = (i as f64 - c[0]).powi(2) + (j as f64 - c[1]).powi(2) + (k as f64 - c[2]).powi(2);
        d2 <= 9.0
    };
    let ct = ndarray::Array3::from_shape_fn((n, n, n), |(i, j, k)| ((i + j + k) % 7) as f32 / 7.0);
    let pet = ndarray::Array3::from_shape_fn((n, n, n), |(i, j, k)| {
        if nan_pet && i % 4 == 3 && j % 4 == 3 {
            f32::NAN
        } else if inside(i, j, k) {
            8.0
        } else {
            1.0 + ((i * 7 + j * 3 + k) % 5) as f32 * 0.1
        }
    });
    let label = ndarray::Array3::from_shape_fn((n, n, n), |(i, j, k)| u8::from(inside(i, j, k)));
    PreparedCase::from_volumes(
        format!("case{id}"),
        &[Volume::new(ct, aff), Volume::new(pet, aff)],
        Some(&Volume::new(label, aff)),
        &[0.0, 0.0],
        1,
    )
    .unwrap()
}

/// A tiny SegResNet run: 16³ patches, batch 2, 2 steps per epoch.
pub fn tiny_config(run_dir: &Path, epochs: usize) -> RunConfig {
    let text = format!(
        r#"
seed = 7
run_dir = "{}"
checkpoint_every_steps = 1
[data]
manifest = "unused.json"
[model]
name = "segresnet"
init_filters = 4
norm_groups = 2
blocks_down = [1, 1]
blocks_up = [1]
[loss]
name = "l1dfl"
[augment]
patch_size = [16, 16, 16]
[optimizer]
lr = 1e-2
[schedule]
epochs = {epochs}
batch_size = 2
steps_per_epoch = 2
grad_clip = 5.0
[validation]
every_epochs = 2
window = {{ roi = [16, 16, 16], overlap = 0.25, mode = "gaussian" }}
"#,
        run_dir.display()
    );
    let cfg: RunConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}
