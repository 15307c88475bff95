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
//! device = "cuda"      # where every cell trains *and* predicts (default "cpu")
//! precision = "bf16"   # likewise (default "f32")
//! [predict]    # shared options of `petseg predict` (e.g. roi = 32)
//! [slurm]      # resources for the SLURM executor (checked, not used locally)
//! partition = "gpu"
//! gpus = 1
//! ```
//!
//! Relative paths are resolved against the current directory (run from the
//! workspace root). Cell names: `<network>__<loss>__fold<k>` followed by
//! `__<key>-<value>` for each extra axis.
//!
//! `device` and `precision` may also be axes. A cell's device and precision
//! reach its `petseg train`, its resumed `train` (device only: a run keeps its
//! precision) and its `petseg predict` (unless `[predict]` sets its own).
//! A grid with a `[slurm]` table must ask for the GPUs its cells use: cells
//! on the CPU with `gpus > 0`, cells on CUDA with no GPU, or `cuda:N` with
//! `N >= gpus` (a task sees GPUs `0..gpus`) are refused when the grid is
//! loaded.

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

/// The device a cell computes on (`petseg`'s `--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// `cpu` (what a cell uses without a `device` option).
    #[default]
    Cpu,
    /// `cuda` (= `cuda:0`) or `cuda:N`.
    Cuda(u32),
}

impl Device {
    /// Parses `cpu`, `cuda` or `cuda:N` (petseg's spellings).
    pub fn parse(s: &str) -> Option<Device> {
        match s {
            "cpu" => Some(Device::Cpu),
            "cuda" => Some(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Slurm {
    /// The sbatch options these resources ask for (`--partition=gpu`,
    /// `--gpus=1`, …; no `--gpus` for 0 GPUs), in the script's order.
    pub fn sbatch_options(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.partition {
            out.push(format!("--partition={p}"));
        }
        if let Some(g) = self.gpus.filter(|&g| g > 0) {
            out.push(format!("--gpus={g}"));
        }
        if let Some(c) = self.cpus {
            out.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            out.push(format!("--mem={m}"));
        }
        if let Some(t) = &self.time {
            out.push(format!("--time={t}"));
        }
        out
    }
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
    /// Where it trains and predicts (its `device` axis value, else `[train]`'s).
    pub device: Device,
    /// Its `precision` (axis value, else `[train]`'s; `None`: petseg's default, f32).
    pub precision: Option<String>,
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
        g.check_compute()
            .and_then(|()| g.check_resources())
            .with_context(|| format!("grid {}", path.display()))?;
        Ok(g)
    }

    /// The values `key` takes: the axis's, else `[train]`'s one value.
    fn values_of(&self, key: &str) -> Vec<&toml::Value> {
        match self.axes.extra.get(key) {
            Some(values) => values.iter().collect(),
            None => self.train.get(key).into_iter().collect(),
        }
    }

    /// Every `device` is `cpu`, `cuda` or `cuda:N` and every `precision` `f32`
    /// or `bf16`.
    fn check_compute(&self) -> Result<()> {
        for v in self.values_of("device") {
            if v.as_str().and_then(Device::parse).is_none() {
                bail!("device = {v}: expected \"cpu\", \"cuda\" or \"cuda:N\"");
            }
        }
        for v in self.values_of("precision") {
            if !matches!(v.as_str(), Some("f32" | "bf16")) {
                bail!("precision = {v}: expected \"f32\" or \"bf16\"");
            }
        }
        Ok(())
    }

    /// With a `[slurm]` table: the GPUs asked for match the cells' devices.
    fn check_resources(&self) -> Result<()> {
        let Some(slurm) = &self.slurm else {
            return Ok(());
        };
        let gpus = slurm.gpus.unwrap_or(0);
        for cell in self.cells() {
            match cell.device {
                Device::Cpu if gpus > 0 => bail!(
                    "[slurm] gpus = {gpus}, but cell {} trains and predicts on the CPU \
                     (device \"cpu\", the default): the GPU would sit idle. \
                     Set device = \"cuda\" under [train], or gpus = 0",
                    cell.name
                ),
                Device::Cuda(_) if gpus == 0 => bail!(
                    "cell {} runs on {}, but [slurm] asks for no GPU (gpus = {}): \
                     set gpus = 1 under [slurm], or device = \"cpu\"",
                    cell.name,
                    cell.device,
                    slurm.gpus.map_or("absent".into(), |g| g.to_string())
                ),
                Device::Cuda(n) if n >= gpus => bail!(
                    "cell {} runs on cuda:{n}, but [slurm] gpus = {gpus}: a task sees \
                     GPUs 0..{}",
                    cell.name,
                    gpus - 1
                ),
                _ => {}
            }
        }
        Ok(())
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
                        let setting = |key: &str| {
                            extra
                                .iter()
                                .find(|(k, _)| k == key)
                                .map(|(_, v)| v)
                                .or_else(|| self.train.get(key))
                                .and_then(|v| v.as_str())
                        };
                        out.push(CellSpec {
                            name,
                            network: network.clone(),
                            loss: loss.clone(),
                            fold,
                            extra: extra.clone(),
                            device: setting("device")
                                .and_then(Device::parse)
                                .unwrap_or_default(),
                            precision: setting("precision").map(str::to_string),
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
    const FLAGS: [&str; 9] = [
        "config",
        "seed",
        "epochs",
        "batch_size",
        "lr",
        "patch_size",
        "val_every",
        "device",
        "precision",
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

    /// Loads `text` as a grid file; the error text when it is refused.
    fn load(text: &str) -> std::result::Result<Grid, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(&p, text).unwrap();
        Grid::load(&p).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn gpus_asked_for_must_match_the_cells_devices() {
        // GRID asks for a GPU and its cells would run on the CPU
        let e = load(GRID).unwrap_err();
        assert!(
            e.contains("gpus = 1") && e.contains("on the CPU") && e.contains("device = \"cuda\""),
            "{e}"
        );
        let cuda = GRID.replace("epochs = 2", "epochs = 2\ndevice = \"cuda\"");
        let g = load(&cuda).unwrap();
        assert!(g.cells().iter().all(|c| c.device == Device::Cuda(0)));
        // the reverse: cells on CUDA, no GPU asked for
        for no_gpu in ["gpus = 0", ""] {
            let e = load(&cuda.replace("gpus = 1", no_gpu)).unwrap_err();
            assert!(
                e.contains("runs on cuda:0") && e.contains("asks for no GPU"),
                "{e}"
            );
        }
        let e = load(&GRID.replace("epochs = 2", "epochs = 2\ndevice = \"cuda:1\"")).unwrap_err();
        assert!(e.contains("cuda:1") && e.contains("GPUs 0..0"), "{e}");
        // a device axis: its CPU cells are refused with a GPU asked for
        let axis = GRID.replace(
            "folds = [0, 1]",
            "folds = [0, 1]\ndevice = [\"cuda\", \"cpu\"]",
        );
        let e = load(&axis).unwrap_err();
        assert!(
            e.contains("device-_cpu_") && e.contains("on the CPU"),
            "{e}"
        );
        // without a [slurm] table any device goes (local runs)
        let local = axis.split("[slurm]").next().unwrap().to_string();
        let g = load(&local).unwrap();
        let devices: std::collections::BTreeSet<String> =
            g.cells().iter().map(|c| c.device.to_string()).collect();
        assert_eq!(devices.into_iter().collect::<Vec<_>>(), ["cpu", "cuda:0"]);
    }

    #[test]
    fn device_and_precision_values_are_checked() {
        let local = GRID.split("[slurm]").next().unwrap().to_string();
        let e = load(&local.replace("epochs = 2", "epochs = 2\ndevice = \"gpu\"")).unwrap_err();
        assert!(
            e.contains("device = \"gpu\"") && e.contains("cuda:N"),
            "{e}"
        );
        let e = load(&local.replace("epochs = 2", "epochs = 2\nprecision = \"fp16\"")).unwrap_err();
        assert!(e.contains("precision = \"fp16\""), "{e}");
        let g = load(&local.replace("epochs = 2", "epochs = 2\nprecision = \"bf16\"")).unwrap();
        assert!(g
            .cells()
            .iter()
            .all(|c| c.precision.as_deref() == Some("bf16")));
        assert_eq!(Device::parse("cuda:3"), Some(Device::Cuda(3)));
        assert_eq!(Device::parse("cuda:"), None);
        assert_eq!(
            train_option("device", &toml::Value::String("cuda".into())),
            ["--device", "cuda"]
        );
    }

    #[test]
    fn the_repository_grids_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps");
        let paper = Grid::load(&root.join("paper.toml")).unwrap();
        assert!(paper
            .cells()
            .iter()
            .all(|c| c.device == Device::Cuda(0) && c.precision.as_deref() == Some("bf16")));
        let smoke = Grid::load(&root.join("smoke.toml")).unwrap();
        assert!(smoke.cells().iter().all(|c| c.device == Device::Cpu));
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
