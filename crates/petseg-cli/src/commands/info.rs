//! `petseg info FILE`: a volume's header facts and value range at a glance.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use petseg_io::nifti::{read_nifti_with_header, AnyVolume, NiftiHeaderInfo};
use serde::Serialize;

/// Arguments of `petseg info`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  petseg info imagesTr/case_0001_0001.nii.gz\n  \
                        petseg info --json labelsTr/case_0001.nii.gz | jq .shape"
)]
pub struct Args {
    /// A NIfTI-1 file (.nii or .nii.gz).
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Value statistics over all voxels (NaNs counted, not included).
#[derive(Debug, Serialize)]
struct Stats {
    /// Smallest non-NaN value (`null` if every voxel is NaN).
    min: Option<f64>,
    /// Largest non-NaN value.
    max: Option<f64>,
    /// Mean of the non-NaN values.
    mean: Option<f64>,
    /// Number of NaN voxels.
    nan_count: u64,
    /// Number of non-zero voxels (a lesion mask's size, say).
    nonzero_count: u64,
}

/// Everything `petseg info` reports, in its JSON form.
#[derive(Debug, Serialize)]
struct Report {
    file: String,
    shape: [usize; 3],
    /// Type of the returned values (float32 for scaled integers).
    dtype: &'static str,
    /// Type stored in the file.
    stored_dtype: &'static str,
    /// `[slope, intercept]` applied to stored values, if any.
    scaling: Option<[f64; 2]>,
    big_endian: bool,
    spacing_mm: [f64; 3],
    origin_mm: [f64; 3],
    voxel_volume_ml: f64,
    orientation: String,
    /// `sform`, `qform` or `pixdim`.
    affine_source: &'static str,
    sform_code: i16,
    qform_code: i16,
    /// Voxel → RAS+ mm, row-major.
    affine: [[f64; 4]; 4],
    values: Stats,
}

fn stats(vol: &AnyVolume) -> Stats {
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    let (mut n, mut nan_count, mut nonzero_count) = (0u64, 0u64, 0u64);
    vol.for_each_f64(|v| {
        if v.is_nan() {
            nan_count += 1;
            return;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
        if v != 0.0 {
            nonzero_count += 1;
        }
    });
    let some = |x: f64| (n > 0).then_some(x);
    Stats {
        min: some(min),
        max: some(max),
        mean: some(sum / n.max(1) as f64),
        nan_count,
        nonzero_count,
    }
}

fn report(args: &Args, info: &NiftiHeaderInfo, vol: &AnyVolume) -> Report {
    let affine = vol.affine();
    Report {
        file: args.file.display().to_string(),
        shape: vol.shape(),
        dtype: vol.dtype_name(),
        stored_dtype: info.dtype_name,
        scaling: info.scaling.map(|(s, i)| [s, i]),
        big_endian: info.big_endian,
        spacing_mm: affine.spacing_mm(),
        origin_mm: affine.origin_mm(),
        voxel_volume_ml: affine.linear().determinant().abs() / 1000.0,
        orientation: affine.orientation_code(),
        affine_source: info.affine_source.name(),
        sform_code: info.sform_code,
        qform_code: info.qform_code,
        affine: affine.rows(),
        values: stats(vol),
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.6}"))
}

fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let [a, b, c] = r.shape;
    let [sx, sy, sz] = r.spacing_mm;
    let _ = writeln!(o, "file:         {}", r.file);
    let _ = writeln!(o, "shape:        {a} × {b} × {c} ({} voxels)", a * b * c);
    let dtype = match r.scaling {
        Some([s, i]) => format!(
            "{} (stored {}, scaled: value × {s} + {i})",
            r.dtype, r.stored_dtype
        ),
        None => r.dtype.to_string(),
    };
    let order = if r.big_endian { ", big-endian" } else { "" };
    let _ = writeln!(o, "dtype:        {dtype}{order}");
    let _ = writeln!(
        o,
        "spacing:      {sx:.4} × {sy:.4} × {sz:.4} mm ({:.6} ml per voxel)",
        r.voxel_volume_ml
    );
    let _ = writeln!(
        o,
        "orientation:  {} (affine from {}; sform_code {}, qform_code {})",
        r.orientation, r.affine_source, r.sform_code, r.qform_code
    );
    let _ = writeln!(
        o,
        "origin:       {:.4}, {:.4}, {:.4} mm",
        r.origin_mm[0], r.origin_mm[1], r.origin_mm[2]
    );
    let _ = writeln!(o, "affine:       voxel → RAS+ mm");
    for row in r.affine {
        let _ = writeln!(
            o,
            "  [{:>12.6} {:>12.6} {:>12.6} {:>12.6}]",
            row[0], row[1], row[2], row[3]
        );
    }
    let v = &r.values;
    let _ = writeln!(
        o,
        "values:       min {}  max {}  mean {}",
        fmt_opt(v.min),
        fmt_opt(v.max),
        fmt_opt(v.mean)
    );
    let _ = writeln!(
        o,
        "              {} NaN, {} non-zero voxels",
        v.nan_count, v.nonzero_count
    );
    o
}

/// Runs `petseg info`: reads the whole volume (so that a truncated or
/// corrupt file is reported, not just its header) and prints the report.
pub fn run(args: Args) -> anyhow::Result<()> {
    // The io error already names the file and its cause; flatten it so that
    // the cause is not printed twice by the error chain.
    let (info, vol) = read_nifti_with_header(&args.file)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot read the volume")?;
    let r = report(&args, &info, &vol);
    let text = if args.json {
        serde_json::to_string_pretty(&r)? + "\n"
    } else {
        render_text(&r)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`petseg info f | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}
