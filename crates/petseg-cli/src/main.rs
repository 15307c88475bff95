//! `petseg`: lesion detection and segmentation in whole-body PET/CT.
//!
//! One verb per stage (see `petseg --help`). Each verb lives in its own module
//! under `commands/`; this file only parses arguments and dispatches.

use clap::{Parser, Subcommand};

mod commands;

/// Lesion detection and segmentation in whole-body PET/CT.
#[derive(Debug, Parser)]
#[command(name = "petseg", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert DICOM PET/CT to NIfTI: PET in SUVbw (QIBA rules), CT in HU on the PET grid.
    Convert(commands::convert::Args),
    /// Print a volume's shape, dtype, spacing, orientation, affine and value range.
    Info(commands::info::Args),
    /// Label the connected components of a mask (6/18/26) into a label image.
    Components(commands::components::Args),
    /// Lesion metrics (DSC, FPV/FNV, C1-C3 detection, TMTV, Dmax) for a case or a folder.
    Evaluate(commands::evaluate::Args),
    /// Write the synthetic PSMA PET/CT cohort (nnU-Net layout + manifest).
    Phantom(commands::phantom::Args),
    /// Train a network from a run config (TOML), or resume a run.
    Train(commands::train::Args),
    /// Segment PET/CT cases with trained (or MONAI) weights; mask on the PET grid.
    Predict(commands::predict::Args),
    /// The whole pipeline on synthetic data: cohort, split, train, predict, evaluate, report.
    Demo(commands::demo::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Volume-sized tensors come and go at every layer: keep their memory (see the docs).
    petseg_ops3d::alloc::retain_freed_memory();
    let result = match cli.command {
        Command::Convert(args) => commands::convert::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Components(args) => commands::components::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Phantom(args) => commands::phantom::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Demo(args) => commands::demo::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
