//! PET MIP overlays: coronal maximum-intensity projection of the PET
//! (inverted grey, window 0 to the 99.5th percentile of the MIP) with the
//! outlines of the projected GT (green) and predicted (red; yellow where
//! both) masks.
//!
//! Needs the cell's evaluation manifest and predictions folder, which
//! `cargo xtask sweep` records in `cell.json` (`eval_manifest`,
//! `predictions`); masks are read as `value > 0.5` on the PET grid (as
//! `petseg predict` writes them). Axis 1 (anterior–posterior) is
//! projected; the superior end is at the top; one voxel is drawn as
//! `SCALE × SCALE` pixels regardless of spacing.

use std::path::Path;

use anyhow::{bail, Context, Result};
use petseg_io::manifest::Manifest;
use petseg_io::nifti::read_nifti_f32;
use petseg_io::volume::Volume;
use plotters::prelude::*;

const SCALE: usize = 3;

/// One case to draw.
pub struct OverlayCase<'a> {
    /// Case id.
    pub id: &'a str,
    /// Its DSC (shown in the title).
    pub dice: f64,
}

/// Projects along axis 1: (nx, nz) image, index [x + nx * z].
fn mip(v: &Volume<f32>) -> (usize, usize, Vec<f32>) {
    let [nx, ny, nz] = v.shape();
    let d = v.data();
    let mut out = vec![f32::NEG_INFINITY; nx * nz];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let o = &mut out[x + nx * z];
                *o = o.max(d[[x, y, z]]);
            }
        }
    }
    (nx, nz, out)
}

fn outline(mask: &[bool], nx: usize, nz: usize) -> Vec<bool> {
    let at = |x: isize, z: isize| {
        x >= 0
            && z >= 0
            && (x as usize) < nx
            && (z as usize) < nz
            && mask[x as usize + nx * z as usize]
    };
    (0..nx * nz)
        .map(|i| {
            let (x, z) = ((i % nx) as isize, (i / nx) as isize);
            mask[i] && !(at(x - 1, z) && at(x + 1, z) && at(x, z - 1) && at(x, z + 1))
        })
        .collect()
}

/// Draws the cases of one cell side by side into `path`.
pub fn draw(
    title: &str,
    eval_manifest: &Path,
    predictions: &Path,
    cases: &[OverlayCase],
    path: &Path,
) -> Result<()> {
    let m = Manifest::load(eval_manifest)
        .with_context(|| format!("reading {}", eval_manifest.display()))?;
    let mut panels = Vec::new();
    for c in cases {
        let entry = m
            .case(c.id)
            .with_context(|| format!("case {} not in {}", c.id, eval_manifest.display()))?;
        let label = entry
            .label
            .as_ref()
            .with_context(|| format!("case {} has no label", c.id))?;
        let pet_path = m.resolve(&entry.pet);
        let pet =
            read_nifti_f32(&pet_path).with_context(|| format!("reading {}", pet_path.display()))?;
        let gt_path = m.resolve(label);
        let gt =
            read_nifti_f32(&gt_path).with_context(|| format!("reading {}", gt_path.display()))?;
        let pred_path = predictions.join(format!("{}.nii.gz", c.id));
        let pred = read_nifti_f32(&pred_path)
            .with_context(|| format!("reading {}", pred_path.display()))?;
        if gt.shape() != pet.shape() || pred.shape() != pet.shape() {
            bail!(
                "case {}: PET {:?}, GT {:?} and prediction {:?} grids differ",
                c.id,
                pet.shape(),
                gt.shape(),
                pred.shape()
            );
        }
        let (nx, nz, p) = mip(&pet);
        let bin = |v: &Volume<f32>| -> Vec<bool> { mip(v).2.iter().map(|&x| x > 0.5).collect() };
        let (g, q) = (outline(&bin(&gt), nx, nz), outline(&bin(&pred), nx, nz));
        let mut sorted: Vec<f32> = p.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f32::total_cmp);
        let hi = sorted
            .get(((sorted.len() as f64 - 1.0) * 0.995) as usize)
            .copied()
            .unwrap_or(1.0)
            .max(1e-6);
        panels.push((c, nx, nz, p, g, q, hi));
    }
    let width: usize = panels
        .iter()
        .map(|p| p.1 * SCALE + 20)
        .sum::<usize>()
        .max(300);
    let height = panels.iter().map(|p| p.2 * SCALE).max().unwrap_or(100) + 70;
    let root = BitMapBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    root.draw(&Text::new(title.to_string(), (10, 8), ("sans-serif", 18)))?;
    let mut x0 = 10usize;
    for (c, nx, nz, p, g, q, hi) in &panels {
        root.draw(&Text::new(
            format!("{} (DSC {:.3})", c.id, c.dice),
            (x0 as i32, 34),
            ("sans-serif", 14),
        ))?;
        for z in 0..*nz {
            for x in 0..*nx {
                let i = x + nx * z;
                let colour = match (g[i], q[i]) {
                    (true, true) => RGBColor(230, 200, 0),
                    (true, false) => RGBColor(0, 170, 0),
                    (false, true) => RGBColor(220, 0, 0),
                    _ => {
                        let t = (p[i] / hi).clamp(0.0, 1.0);
                        let v = (255.0 * (1.0 - t)) as u8;
                        RGBColor(v, v, v)
                    }
                };
                let px = (x0 + x * SCALE) as i32;
                let py = (60 + (nz - 1 - z) * SCALE) as i32;
                root.draw(&Rectangle::new(
                    [(px, py), (px + SCALE as i32, py + SCALE as i32)],
                    colour.filled(),
                ))?;
            }
        }
        x0 += nx * SCALE + 20;
    }
    root.present()?;
    Ok(())
}
