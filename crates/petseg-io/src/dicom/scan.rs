//! Finding the DICOM files under a folder and grouping them into series.
//!
//! Exports arrive with stray files next to the images: a README, a DICOMDIR,
//! an empty or cut `.dcm`, a dataset written without file meta, objects of
//! other modalities. [`scan_dir`] keeps going past them and lists each with
//! the reason it was not used ([`SkippedFile`]), as dcm2niix does. Only the
//! series a caller then picks has to be whole: [`DicomScan::single`] refuses
//! a series when an unreadable file names its SeriesInstanceUID.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

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
    /// `"PT series 1.2.3 'WB AC'"`, for messages.
    pub fn describe_short(&self) -> String {
        format!(
            "{} series {}{}",
            self.modality,
            self.uid,
            self.description
                .as_deref()
                .map(|d| format!(" '{d}'"))
                .unwrap_or_default()
        )
    }

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
    /// Files that are in no series, with the reason, in path order.
    pub skipped: Vec<SkippedFile>,
}

/// Why a file under a scanned folder is in no series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No `DICM` marker and no DICOM file name: a README, a report, ….
    NotDicom,
    /// A DICOMDIR (a media directory, no image).
    Dicomdir,
    /// A file of 0 bytes.
    Empty,
    /// A DICOM-named file (`.dcm`, `.ima`) without file meta (no `DICM`
    /// marker): its transfer syntax is unknown, so it is not read.
    NoFileMeta,
    /// A file with the `DICM` marker whose header cannot be read (cut short,
    /// corrupt, or a required tag missing or malformed).
    Unreadable,
    /// A readable series that the caller did not convert (another modality,
    /// or a CT given separately).
    UnusedSeries,
}

impl SkipReason {
    /// Whether a file skipped for this reason may be an image of any series
    /// (so that it must not belong to the series being converted).
    fn may_be_an_image(self) -> bool {
        matches!(self, SkipReason::NoFileMeta | SkipReason::Unreadable)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NotDicom => "not DICOM (no DICM marker)",
            SkipReason::Dicomdir => "a DICOMDIR (media directory, no image)",
            SkipReason::Empty => "empty file",
            SkipReason::NoFileMeta => "no DICOM file meta (no DICM marker), not read",
            SkipReason::Unreadable => "unreadable DICOM header",
            SkipReason::UnusedSeries => "in a series that is not converted",
        })
    }
}

/// A file that is in no series, and why (for the user's record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// The kind of reason.
    pub reason: SkipReason,
    /// Details: the parser's error, or the series the file belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SkippedFile {
    /// A skipped file without details.
    pub fn new(path: PathBuf, reason: SkipReason) -> Self {
        SkippedFile {
            path,
            reason,
            detail: None,
        }
    }

    /// The files of a series that is not converted, with why.
    pub fn unused_series(series: &DicomSeries, why: &str) -> Vec<SkippedFile> {
        let detail = format!("{}: {why}", series.describe_short());
        series
            .slices
            .iter()
            .map(|s| SkippedFile {
                path: s.path.clone(),
                reason: SkipReason::UnusedSeries,
                detail: Some(detail.clone()),
            })
            .collect()
    }
}

impl fmt::Display for SkippedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)?;
        match &self.detail {
            Some(d) => write!(f, " ({d})"),
            None => Ok(()),
        }
    }
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
            [one] => {
                self.check_no_unreadable_member(one)?;
                Ok(one)
            }
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

    /// Refuses `series` when a file skipped as unreadable (or without file
    /// meta) carries its SeriesInstanceUID: the series is then incomplete,
    /// even where the geometry checks could not see it (a first or last slice).
    fn check_no_unreadable_member(&self, series: &DicomSeries) -> Result<()> {
        for skipped in self.skipped.iter().filter(|s| s.reason.may_be_an_image()) {
            let bytes = std::fs::read(&skipped.path).map_err(|e| IoError::os(&skipped.path, e))?;
            if contains_uid(&bytes, &series.uid) {
                return Err(IoError::format(
                    &skipped.path,
                    format!(
                        "{} of {}: the file names that SeriesInstanceUID, so the series is incomplete",
                        skipped_reason(skipped),
                        series.describe_short()
                    ),
                ));
            }
        }
        Ok(())
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
/// Files that cannot be part of a series (see [`SkipReason`]) are listed in
/// [`DicomScan::skipped`] rather than failing the scan; a series whose files
/// disagree on their Modality is an error naming both files.
pub fn scan_dir(root: &Path) -> Result<DicomScan> {
    let meta = std::fs::metadata(root).map_err(|e| IoError::os(root, e))?;
    if !meta.is_dir() {
        return Err(IoError::format(root, "expected a folder of DICOM files"));
    }
    let mut files = Vec::new();
    walk(root, &mut files)?;
    files.sort();
    let read: Vec<std::result::Result<SliceHeader, SkippedFile>> = files
        .into_par_iter()
        .map(|p| match classify(&p)? {
            Some(reason) => Ok(Err(SkippedFile::new(p, reason))),
            None => Ok(SliceHeader::read(&p).map_err(|e| SkippedFile {
                detail: Some(reason_without_path(e)),
                path: p,
                reason: SkipReason::Unreadable,
            })),
        })
        .collect::<Result<_>>()?;
    let mut groups: BTreeMap<String, Vec<SliceHeader>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for r in read {
        match r {
            Ok(h) => groups
                .entry(h.series_instance_uid.clone())
                .or_default()
                .push(h),
            Err(s) => skipped.push(s),
        }
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
        skipped,
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

/// Why a file is not read as DICOM, or None when it should be: it has the
/// `DICM` marker (at byte 128 after the preamble, or at byte 0).
fn classify(path: &Path) -> Result<Option<SkipReason>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_uppercase())
        .unwrap_or_default();
    if name == "DICOMDIR" {
        return Ok(Some(SkipReason::Dicomdir));
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
    if n == 0 {
        return Ok(Some(SkipReason::Empty));
    }
    if (n == 132 && &head[128..132] == b"DICM") || (n >= 4 && &head[..4] == b"DICM") {
        return Ok(None);
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(Some(if ext == "dcm" || ext == "ima" {
        SkipReason::NoFileMeta
    } else {
        SkipReason::NotDicom
    }))
}

/// An error's message without the file name (the skipped file names it).
fn reason_without_path(e: IoError) -> String {
    match e {
        IoError::Format { reason, .. } => reason
            .strip_prefix("not a readable DICOM file: ")
            .map(str::to_string)
            .unwrap_or(reason),
        other => other.to_string(),
    }
}

/// The reason of a skipped file with its details, for messages.
fn skipped_reason(s: &SkippedFile) -> String {
    match &s.detail {
        Some(d) => format!("{} ({d})", s.reason),
        None => s.reason.to_string(),
    }
}

/// Whether `bytes` hold `uid` as a whole UID (not the prefix or the tail of
/// a longer one: the bytes around it are not digits or dots).
fn contains_uid(bytes: &[u8], uid: &str) -> bool {
    let uid = uid.as_bytes();
    if uid.is_empty() || bytes.len() < uid.len() {
        return false;
    }
    let part_of_uid = |b: u8| b.is_ascii_digit() || b == b'.';
    bytes.windows(uid.len()).enumerate().any(|(at, w)| {
        w == uid
            && (at == 0 || !part_of_uid(bytes[at - 1]))
            && bytes.get(at + uid.len()).is_none_or(|&b| !part_of_uid(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_match_whole_only() {
        assert!(contains_uid(b"\x00\x001.2.3\x00", "1.2.3"));
        assert!(contains_uid(b"1.2.3", "1.2.3"));
        assert!(!contains_uid(b"x1.2.34\x00", "1.2.3"));
        assert!(!contains_uid(b"x11.2.3\x00", "1.2.3"));
        assert!(!contains_uid(b"1.2.", "1.2.3"));
    }
}
