//! `petseg components IN OUT`: connected components of a mask as a label image.

use std::path::PathBuf;

use anyhow::{bail, Context};
use petseg_eval::{label, BinarizePolicy, Connectivity};
use petseg_io::nifti::{read_nifti, write_nifti};
use petseg_io::Volume;

use super::evaluate::read_mask;

/// Arguments of `petseg components`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  petseg components labelsTr/case_0001.nii.gz case_0001_cc.nii.gz --connectivity 18\n\n\
The output holds labels 1..n in raster order of first appearance (0 = background), \
as uint16 when n <= 65535, else int32 (NIfTI has no uint32 in our writer)."
)]
pub struct Args {
    /// Binary mask (.nii / .nii.gz); values must be 0/1 unless --binarize.
    pub input: PathBuf,
    /// Output label image (.nii / .nii.gz).
    pub output: PathBuf,
    /// Voxel connectivity: 6, 18 or 26.
    #[arg(long, default_value_t = 18)]
    pub connectivity: u32,
    /// Treat every value > 0 as foreground instead of refusing non-binary masks.
    #[arg(long)]
    pub binarize: bool,
    /// Print the count and per-component statistics as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `petseg components`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let conn = Connectivity::from_number(args.connectivity)?;
    let policy = if args.binarize {
        BinarizePolicy::Positive
    } else {
        BinarizePolicy::Strict
    };
    let any =
        read_nifti(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let mask = read_mask(&any, policy, &args.input)?;
    let cc = label(mask.as_raster_slice(), mask.shape(), conn)?;
    let n = cc.count();
    let affine = *mask.affine();
    let write =
        |r: petseg_io::Result<()>| r.with_context(|| format!("writing {}", args.output.display()));
    if n <= u16::MAX as usize {
        let v = cc.labels().iter().map(|&l| l as u16).collect();
        write(write_nifti(
            &args.output,
            &Volume::from_raster(mask.shape(), v, affine)?,
        ))?;
    } else if n <= i32::MAX as usize {
        let v = cc.labels().iter().map(|&l| l as i32).collect();
        write(write_nifti(
            &args.output,
            &Volume::from_raster(mask.shape(), v, affine)?,
        ))?;
    } else {
        bail!(
            "{}: {n} components do not fit an int32 label image",
            args.input.display()
        );
    }
    if args.json {
        let voxel_ml = mask.voxel_volume_ml();
        let comps: Vec<serde_json::Value> = cc
            .stats()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({
                    "label": i + 1,
                    "voxels": s.voxels,
                    "volume_ml": s.voxels as f64 * voxel_ml,
                    "bbox_min": s.bbox_min,
                    "bbox_max": s.bbox_max,
                    "centroid_mm": affine.voxel_to_world(s.centroid),
                })
            })
            .collect();
        let out =
            serde_json::json!({"count": n, "connectivity": conn.number(), "components": comps});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{n} components ({}-connectivity) written to {}",
            conn.number(),
            args.output.display()
        );
    }
    Ok(())
}
