//! Finding the DICOM files under a folder and grouping them into series.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::header::SliceHeader;
use crate::error::{IoError, Result};

/// The files of one series (one SeriesInstanceUID), in scan order.
#[derive(Debug, Clone)]
pub struct DicomSeries {
    /// SeriesInstanceUID.
    pub uid: String,
    /// Modality of the first file (every file is checked to agree).
    pub modality: String,
    /// SeriesDescription, if any.
    pub description: Option<String>,
    /// One header per file, in path order (not geometric order).
    pub slices: Vec<SliceHeader>,
}

impl DicomSeries {
    /// `"PT series 1.2.3 'WB AC' (300 files, e.g. dir/IM0001.dcm)"`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} series {}{} ({} files, e.g. {})",
            self.modality,
            self.uid,
            self.description
                .as_deref()
                .map(|d| format!(" '{d}'"))
                .unwrap_or_default(),
            self.slices.len(),
            self.slices
                .first()
                .map(|s| s.path.display().to_string())
                .unwrap_or_default()
        )
    }
}

/// Everything found under a folder.
#[derive(Debug, Clone)]
pub struct DicomScan {
    /// The folder scanned.
    pub root: PathBuf,
    /// Series ordered by UID.
    pub series: Vec<DicomSeries>,
    /// Files skipped because they are not DICOM (no `DICM` marker and no
    /// `.dcm`/`.ima` extension), e.g. a README or a DICOMDIR.
    pub skipped: Vec<PathBuf>,
}

impl DicomScan {
    /// The one series of `modality` (`"PT"`, `"CT"`). Errors name what was
    /// found instead: no such series, or several (mixed series in one folder).
    pub fn single(&self, modality: &str) -> Result<&DicomSeries> {
        let matching: Vec<&DicomSeries> = self
            .series
            .iter()
            .filter(|s| s.modality == modality)
            .collect();
        let found = || {
            if self.series.is_empty() {
                "no DICOM series at all".to_string()
            } else {
                self.series
                    .iter()
                    .map(|s| s.describe())
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        };
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(IoError::format(
                &self.root,
                format!("expected a {modality} series, found {}", found()),
            )),
            _ => Err(IoError::format(
                &self.root,
                format!(
                    "expected one {modality} series, found {} mixed in one folder: {}; put each series in its own folder",
                    matching.len(),
                    matching.iter().map(|s| s.describe()).collect::<Vec<_>>().join("; ")
                ),
            )),
        }
    }

    /// The series of `modality` if there is exactly one, None if there is none,
    /// an error if there are several.
    pub fn optional(&self, modality: &str) -> Result<Option<&DicomSeries>> {
        if self.series.iter().any(|s| s.modality == modality) {
            self.single(modality).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Scans `root` recursively, reading every DICOM header (up to PixelData) in
/// parallel and grouping the files by SeriesInstanceUID.
///
/// A file with the `DICM` marker (or a `.dcm`/`.ima` name) that cannot be
/// parsed is an error naming it; other files are skipped and listed.
pub fn scan_dir(root: &Path) -> Result<DicomScan> {
    let meta = std::fs::metadata(root).map_err(|e| IoError::os(root, e))?;
    if !meta.is_dir() {
        return Err(IoError::format(root, "expected a folder of DICOM files"));
    }
    let mut files = Vec::new();
    walk(root, &mut files)?;
    files.sort();
    let classified: Vec<(PathBuf, bool)> = files
        .into_par_iter()
        .map(|p| looks_like_dicom(&p).map(|d| (p, d)))
        .collect::<Result<_>>()?;
    let (dicom, skipped): (Vec<_>, Vec<_>) = classified.into_iter().partition(|(_, d)| *d);
    let headers: Vec<SliceHeader> = dicom
        .par_iter()
        .map(|(p, _)| SliceHeader::read(p))
        .collect::<Result<_>>()?;
    let mut groups: BTreeMap<String, Vec<SliceHeader>> = BTreeMap::new();
    for h in headers {
        groups
            .entry(h.series_instance_uid.clone())
            .or_default()
            .push(h);
    }
    let mut series = Vec::with_capacity(groups.len());
    for (uid, slices) in groups {
        let first = &slices[0];
        if let Some(odd) = slices.iter().find(|s| s.modality != first.modality) {
            return Err(IoError::format(
                &odd.path,
                format!(
                    "series {uid}: Modality {} differs from {} in {}",
                    odd.modality,
                    first.modality,
                    first.path.display()
                ),
            ));
        }
        series.push(DicomSeries {
            uid,
            modality: first.modality.clone(),
            description: first.series_description.clone(),
            slices,
        });
    }
    Ok(DicomScan {
        root: root.to_path_buf(),
        series,
        skipped: skipped.into_iter().map(|(p, _)| p).collect(),
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| IoError::os(dir, e))? {
        let entry = entry.map_err(|e| IoError::os(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type().map_err(|e| IoError::os(&path, e))?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if ft.is_file() || ft.is_symlink() {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether a file should be parsed as DICOM: it has the `DICM` marker at
/// byte 128, or a `.dcm`/`.ima` extension (then a parse failure is an error).
/// DICOMDIR files (media directories, no images) are skipped.
fn looks_like_dicom(path: &Path) -> Result<bool> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_uppercase())
        .unwrap_or_default();
    if name == "DICOMDIR" {
        return Ok(false);
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "dcm" || ext == "ima" {
        return Ok(true);
    }
    let mut head = [0u8; 132];
    let mut f = std::fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(|e| IoError::os(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n == 132 && &head[128..132] == b"DICM")
}
