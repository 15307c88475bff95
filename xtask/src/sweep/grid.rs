//! Grid files (`sweeps/NAME.toml`) and their expansion into cells.
//!
//! ```toml
//! manifest = "data-manifests/phantom.json"   # with a split (cargo xtask split)
//! eval_on = "val"                            # "val" (the fold's) or "test"
//! [axes]
//! networks = ["attention_unet", "segresnet"]
//! losses = ["dice", "dicefocal", "l1dfl"]
//! folds = [0]
//! # any other key: a train option with one value per cell, e.g.
//! # "optim.lr" = [1e-3, 1e-4]
//! [train]      # shared train options (flags of `petseg train`, else --set KEY=VALUE)
//! epochs = 2
//! [predict]    # shared options of `petseg predict` (e.g. roi = 32)
//! [slurm]      # resources for the SLURM executor (parsed, not used locally)
//! partition = "gpu"
//! gpus = 1
//! ```
//!
//! Relative paths are resolved against the current directory (run from the
//! workspace root). Cell names: `<network>__<loss>__fold<k>` followed by
//! `__<key>-<value>` for each extra axis.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// A parsed grid file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Dataset manifest with a split.
    pub manifest: PathBuf,
    /// Which cases each cell predicts and evaluates: `val` or `test`.
    #[serde(default = "default_eval_on")]
    pub eval_on: String,
    /// The axes of the grid.
    pub axes: Axes,
    /// Train options shared by every cell.
    #[serde(default)]
    pub train: BTreeMap<String, toml::Value>,
    /// Predict options shared by every cell.
    #[serde(default)]
    pub predict: BTreeMap<String, toml::Value>,
    /// SLURM resources (for the SLURM executor; stored, unused locally).
    #[serde(default)]
    pub slurm: Option<Slurm>,
}

fn default_eval_on() -> String {
    "val".into()
}

/// The grid's axes.
#[derive(Debug, Clone, Deserialize)]
pub struct Axes {
    /// Network names (`petseg train --model`).
    pub networks: Vec<String>,
    /// Loss names (`petseg train --loss`).
    pub losses: Vec<String>,
    /// Fold indices of the manifest's split.
    #[serde(default = "default_folds")]
    pub folds: Vec<usize>,
    /// Further axes: train option → values.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Vec<toml::Value>>,
}

fn default_folds() -> Vec<usize> {
    vec![0]
}

/// SLURM resources of one array task.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slurm {
    /// Partition (`--partition`).
    pub partition: Option<String>,
    /// GPUs per task (`--gpus`).
    pub gpus: Option<u32>,
    /// CPUs per task (`--cpus-per-task`).
    pub cpus: Option<u32>,
    /// Memory (`--mem`, e.g. "64G").
    pub mem: Option<String>,
    /// Time limit (`--time`, e.g. "48:00:00").
    pub time: Option<String>,
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpec {
    /// Folder name under the results and runs folders.
    pub name: String,
    /// Network.
    pub network: String,
    /// Loss.
    pub loss: String,
    /// Fold.
    pub fold: usize,
    /// Values of the extra axes.
    pub extra: Vec<(String, toml::Value)>,
}

impl Grid {
    /// Reads and checks a grid file.
    pub fn load(path: &Path) -> Result<Grid> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let g: Grid =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if g.eval_on != "val" && g.eval_on != "test" {
            bail!(
                "{}: eval_on = {:?}, expected \"val\" or \"test\"",
                path.display(),
                g.eval_on
            );
        }
        for (what, empty) in [
            ("axes.networks", g.axes.networks.is_empty()),
            ("axes.losses", g.axes.losses.is_empty()),
            ("axes.folds", g.axes.folds.is_empty()),
        ] {
            if empty {
                bail!("{}: {what} is empty", path.display());
            }
        }
        if let Some((k, _)) = g.axes.extra.iter().find(|(_, v)| v.is_empty()) {
            bail!("{}: axis {k} has no values", path.display());
        }
        Ok(g)
    }

    /// All cells: networks × losses × folds × extra axes (in that nesting).
    pub fn cells(&self) -> Vec<CellSpec> {
        let mut extras: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for (k, values) in &self.axes.extra {
            extras = extras
                .iter()
                .flat_map(|e| {
                    values.iter().map(move |v| {
                        let mut e = e.clone();
                        e.push((k.clone(), v.clone()));
                        e
                    })
                })
                .collect();
        }
        let mut out = Vec::new();
        for network in &self.axes.networks {
            for loss in &self.axes.losses {
                for &fold in &self.axes.folds {
                    for extra in &extras {
                        let mut name = format!("{network}__{loss}__fold{fold}");
                        for (k, v) in extra {
                            name += &format!("__{}-{}", sanitise(k), sanitise(&v.to_string()));
                        }
                        out.push(CellSpec {
                            name,
                            network: network.clone(),
                            loss: loss.clone(),
                            fold,
                            extra: extra.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}

fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `petseg train` arguments for one option: its own flag when it has one,
/// else `--set KEY=VALUE` (TOML syntax).
pub fn train_option(key: &str, value: &toml::Value) -> Vec<String> {
    const FLAGS: [&str; 7] = [
        "config",
        "seed",
        "epochs",
        "batch_size",
        "lr",
        "patch_size",
        "val_every",
    ];
    let text = match value {
        toml::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if FLAGS.contains(&key) {
        vec![format!("--{}", key.replace('_', "-")), text]
    } else {
        vec!["--set".into(), format!("{key}={value}")]
    }
}

/// `petseg predict` arguments for one option (`--KEY VALUE`, `--KEY` for true).
pub fn predict_option(key: &str, value: &toml::Value) -> Vec<String> {
    let flag = format!("--{}", key.replace('_', "-"));
    match value {
        toml::Value::Boolean(true) => vec![flag],
        toml::Value::Boolean(false) => Vec::new(),
        toml::Value::String(s) => vec![flag, s.clone()],
        v => vec![flag, v.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: &str = r#"
manifest = "m.json"
[axes]
networks = ["segresnet", "attention_unet"]
losses = ["dice", "l1dfl"]
folds = [0, 1]
"optim.lr" = [0.001, 0.0001]
[train]
epochs = 2
"augment.patch_size" = [16, 16, 16]
[slurm]
partition = "gpu"
gpus = 1
cpus = 8
mem = "64G"
time = "48:00:00"
"#;

    #[test]
    fn expands_every_axis() {
        let g: Grid = toml::from_str(GRID).unwrap();
        let cells = g.cells();
        assert_eq!(cells.len(), 2 * 2 * 2 * 2);
        assert_eq!(cells[0].name, "segresnet__dice__fold0__optim.lr-0.001");
        assert_eq!(cells[1].name, "segresnet__dice__fold0__optim.lr-0.0001");
        let names: std::collections::BTreeSet<_> = cells.iter().map(|c| &c.name).collect();
        assert_eq!(names.len(), cells.len());
        assert_eq!(g.slurm.unwrap().mem.as_deref(), Some("64G"));
    }

    #[test]
    fn options_become_flags_or_sets() {
        assert_eq!(
            train_option("epochs", &toml::Value::Integer(2)),
            ["--epochs", "2"]
        );
        let p = toml::Value::Array(vec![16.into(), 16.into(), 16.into()]);
        assert_eq!(
            train_option("augment.patch_size", &p),
            ["--set", "augment.patch_size=[16, 16, 16]"]
        );
        assert_eq!(
            predict_option("tta", &toml::Value::Boolean(true)),
            ["--tta"]
        );
        assert_eq!(
            predict_option("roi", &toml::Value::Integer(32)),
            ["--roi", "32"]
        );
    }

    #[test]
    fn rejects_bad_grids() {
        let bad = GRID.replace("losses = [\"dice\", \"l1dfl\"]", "losses = []");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(&p, bad).unwrap();
        let e = format!("{:#}", Grid::load(&p).unwrap_err());
        assert!(e.contains("axes.losses is empty"), "{e}");
        std::fs::write(&p, GRID.replace("manifest", "manifes")).unwrap();
        assert!(Grid::load(&p).is_err());
    }
}
