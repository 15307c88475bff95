//! `petseg info FILE`: a volume's header facts at a glance.

use std::path::PathBuf;

/// Arguments of `petseg info`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  petseg info imagesTr/case_0001_0001.nii.gz")]
pub struct Args {
    /// A NIfTI file (.nii or .nii.gz).
    pub file: PathBuf,
}

/// Runs `petseg info` (NIfTI reading lands with the io work).
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::bail!("{}: NIfTI reading is not available yet", args.file.display())
}
