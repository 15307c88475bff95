//! Reading `.nii` and `.nii.gz`: header first, validated before any voxel
//! buffer is allocated; voxels decoded straight into the typed buffer.

use std::fs::File;
use std::io::Read;
use std::mem::MaybeUninit;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{IoError, Result};
use crate::nifti::element::{ByteSink, NiftiElement};
use crate::nifti::gz::{drain, indexed_members, Member, MAX_INFLATE_RATIO};
use crate::nifti::header::{parse_header, NiftiHeaderInfo, HEADER_LEN};
use crate::nifti::AnyVolume;
use crate::volume::Volume;

/// Bytes inflated per read call: large enough to amortise call overhead,
/// small enough to stay in L2 while being converted to voxels.
const READ_BUF: usize = 256 * 1024;

/// Where the voxel bytes come from, positioned just after the header.
enum Source<'a> {
    /// An uncompressed `.nii`; `len` is the file length.
    Raw { file: File, len: u64 },
    /// A gzip stream read serially (files from other writers).
    Stream {
        dec: Box<flate2::bufread::MultiGzDecoder<&'a [u8]>>,
        compressed_len: u64,
    },
    /// A file of indexed members: member 0 holds the header, the others the
    /// voxels, decoded in parallel.
    Members { file: &'a [u8], data: Vec<Member> },
}

/// Reads a whole file: header, then voxels of the stored type, then scaling.
pub(crate) fn read_any(path: &Path) -> Result<(NiftiHeaderInfo, AnyVolume)> {
    let os = |e| IoError::os(path, e);
    let mut file = File::open(path).map_err(os)?;
    let len = file.metadata().map_err(os)?.len();
    let mut magic = [0u8; 2];
    let is_gz = len >= 2 && {
        file.read_exact(&mut magic).map_err(os)?;
        magic == [0x1f, 0x8b]
    };
    if !is_gz {
        drop(file);
        let mut file = File::open(path).map_err(os)?;
        let info = header_from_stream(path, &mut file)?;
        if info.vox_offset > len {
            return Err(IoError::format(
                path,
                format!(
                    "vox_offset {} is past the end of the file ({len} bytes)",
                    info.vox_offset
                ),
            ));
        }
        if info.vox_offset + info.data_bytes > len {
            return Err(IoError::format(
                path,
                format!(
                    "header announces {} bytes of voxel data ({:?} {}) after vox_offset {}, \
                     but the file has only {} bytes there",
                    info.data_bytes,
                    info.shape,
                    info.dtype_name,
                    info.vox_offset,
                    len - info.vox_offset
                ),
            ));
        }
        let mut src = Source::Raw { file, len };
        let vol = decode_any(path, &info, &mut src)?;
        return Ok((info, vol));
    }
    drop(file);
    let bytes = std::fs::read(path).map_err(os)?;
    let (info, mut src) = open_gz(path, &bytes)?;
    let vol = decode_any(path, &info, &mut src)?;
    Ok((info, vol))
}

/// Reads and validates only the header.
pub(crate) fn read_header_only(path: &Path) -> Result<NiftiHeaderInfo> {
    let os = |e| IoError::os(path, e);
    let mut file = File::open(path).map_err(os)?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(os)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let file = File::open(path).map_err(os)?;
        let mut dec = flate2::read::MultiGzDecoder::new(file);
        return header_from_stream(path, &mut dec);
    }
    parse_header(path, &head)
}

/// Reads the 348-byte header from a stream, parses it, and skips to
/// `vox_offset` (over any extensions).
fn header_from_stream(path: &Path, r: &mut impl Read) -> Result<NiftiHeaderInfo> {
    let mut raw = Vec::with_capacity(HEADER_LEN);
    r.take(HEADER_LEN as u64)
        .read_to_end(&mut raw)
        .map_err(|e| stream_error(path, e, "the header"))?;
    let info = parse_header(path, &raw)?;
    let skip = info.vox_offset - HEADER_LEN as u64;
    let skipped = std::io::copy(&mut r.take(skip), &mut std::io::sink())
        .map_err(|e| stream_error(path, e, "the header extensions"))?;
    if skipped < skip {
        return Err(IoError::format(
            path,
            format!(
                "vox_offset {} is past the end of the data stream",
                info.vox_offset
            ),
        ));
    }
    Ok(info)
}

/// An I/O error while decoding, named as a format problem of the file (a
/// truncated or corrupt gzip stream shows up here).
fn stream_error(path: &Path, e: std::io::Error, what: &str) -> IoError {
    let hint = if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "the file is truncated"
    } else {
        "corrupt or truncated gzip data"
    };
    IoError::format(path, format!("cannot read {what}: {e} ({hint})"))
}

/// Parses the header of a `.nii.gz` held in memory and picks the parallel
/// path when the file is indexed and laid out as this crate writes it.
fn open_gz<'a>(path: &Path, bytes: &'a [u8]) -> Result<(NiftiHeaderInfo, Source<'a>)> {
    let compressed_len = bytes.len() as u64;
    let check_ratio = |info: &NiftiHeaderInfo| -> Result<()> {
        let needed = info.vox_offset + info.data_bytes;
        let max = compressed_len.saturating_mul(MAX_INFLATE_RATIO) + 4096;
        if needed > max {
            return Err(IoError::format(
                path,
                format!(
                    "header announces {} bytes of voxel data ({:?} {}), but {compressed_len} \
                     bytes of gzip can hold at most {max}: truncated file or corrupt header",
                    info.data_bytes, info.shape, info.dtype_name
                ),
            ));
        }
        Ok(())
    };
    if let Some(members) = indexed_members(bytes) {
        let first = members[0];
        if u64::from(first.uncompressed) < 64 * 1024 {
            let mut head = Vec::with_capacity(first.uncompressed as usize);
            flate2::bufread::GzDecoder::new(first.bytes(bytes))
                .read_to_end(&mut head)
                .map_err(|e| stream_error(path, e, "the header"))?;
            let info = parse_header(path, &head)?;
            check_ratio(&info)?;
            let data = members[1..].to_vec();
            let total: u64 = data.iter().map(|m| u64::from(m.uncompressed)).sum();
            let aligned = data.iter().all(|m| {
                m.uncompressed > 0 && (m.uncompressed as usize).is_multiple_of(info.bytes_per_voxel)
            });
            if head.len() as u64 == info.vox_offset && total == info.data_bytes && aligned {
                return Ok((info, Source::Members { file: bytes, data }));
            }
        }
    }
    let mut dec = Box::new(flate2::bufread::MultiGzDecoder::new(bytes));
    let info = header_from_stream(path, &mut dec)?;
    check_ratio(&info)?;
    Ok((
        info,
        Source::Stream {
            dec,
            compressed_len,
        },
    ))
}

/// Decodes the voxels in the stored type and applies the scaling.
fn decode_any(path: &Path, info: &NiftiHeaderInfo, src: &mut Source) -> Result<AnyVolume> {
    fn typed<T: NiftiElement>(
        path: &Path,
        info: &NiftiHeaderInfo,
        src: &mut Source,
    ) -> Result<AnyVolume> {
        let voxels = decode_voxels::<T>(path, info, src)?;
        let vol = Volume::from_raster(info.shape, voxels, info.affine)?;
        Ok(match info.scaling {
            None => T::into_any(vol),
            Some((slope, inter)) if T::DATATYPE == f64::DATATYPE => {
                AnyVolume::F64(vol.map(|v| v.to_f64() * slope + inter))
            }
            Some((slope, inter)) => {
                AnyVolume::F32(vol.map(|v| (v.to_f64() * slope + inter) as f32))
            }
        })
    }
    match info.datatype {
        d if d == u8::DATATYPE => typed::<u8>(path, info, src),
        d if d == i8::DATATYPE => typed::<i8>(path, info, src),
        d if d == i16::DATATYPE => typed::<i16>(path, info, src),
        d if d == u16::DATATYPE => typed::<u16>(path, info, src),
        d if d == i32::DATATYPE => typed::<i32>(path, info, src),
        d if d == f32::DATATYPE => typed::<f32>(path, info, src),
        d if d == f64::DATATYPE => typed::<f64>(path, info, src),
        d => Err(IoError::format(
            path,
            format!("datatype {d} is not supported"),
        )),
    }
}

/// Allocates the voxel buffer (fallibly: a failed allocation is an error,
/// not an abort) and fills it from `src`.
fn decode_voxels<T: NiftiElement>(
    path: &Path,
    info: &NiftiHeaderInfo,
    src: &mut Source,
) -> Result<Vec<T>> {
    let n = (info.data_bytes / T::SIZE as u64) as usize;
    let mut voxels: Vec<T> = Vec::new();
    voxels.try_reserve_exact(n).map_err(|e| {
        IoError::format(
            path,
            format!(
                "cannot allocate {} bytes for the voxels: {e}",
                info.data_bytes
            ),
        )
    })?;
    let out = &mut voxels.spare_capacity_mut()[..n];
    match src {
        Source::Raw { file, len } => {
            let mut sink = ByteSink::new(out, info.big_endian);
            let mut buf = vec![0u8; READ_BUF * 4];
            fill(file, &mut sink, &mut buf).map_err(|e| stream_error(path, e, "the voxels"))?;
            if !sink.is_full() {
                return Err(IoError::format(
                    path,
                    format!("file ({len} bytes) ended before all voxels were read"),
                ));
            }
        }
        Source::Stream {
            dec,
            compressed_len,
        } => {
            let mut sink = ByteSink::new(out, info.big_endian);
            let mut buf = vec![0u8; READ_BUF];
            fill(dec, &mut sink, &mut buf).map_err(|e| stream_error(path, e, "the voxels"))?;
            if !sink.is_full() {
                return Err(IoError::format(
                    path,
                    format!(
                        "gzip stream ({compressed_len} bytes) ends after {} of {} voxel bytes: \
                         the file is truncated",
                        info.data_bytes - sink.remaining_bytes() as u64,
                        info.data_bytes
                    ),
                ));
            }
            // Reach the end so that every member's CRC is checked.
            drain(dec, &mut buf).map_err(|e| stream_error(path, e, "the gzip trailer"))?;
        }
        Source::Members { file, data } => {
            let mut slices: Vec<&mut [MaybeUninit<T>]> = Vec::with_capacity(data.len());
            let mut rest = out;
            for m in data.iter() {
                let (head, tail) = rest.split_at_mut(m.uncompressed as usize / T::SIZE);
                slices.push(head);
                rest = tail;
            }
            let big_endian = info.big_endian;
            slices.into_par_iter().zip(data.par_iter()).try_for_each(
                |(slice, m)| -> Result<()> {
                    let mut sink = ByteSink::new(slice, big_endian);
                    let mut dec = flate2::bufread::GzDecoder::new(m.bytes(file));
                    let mut buf = vec![0u8; READ_BUF];
                    let err = |e| stream_error(path, e, "the voxels");
                    fill(&mut dec, &mut sink, &mut buf).map_err(err)?;
                    let extra = drain(&mut dec, &mut buf).map_err(err)?;
                    if !sink.is_full() || extra > 0 {
                        return Err(IoError::format(
                            path,
                            format!(
                                "gzip member at byte {} does not hold the {} bytes its trailer \
                                 announces",
                                m.start, m.uncompressed
                            ),
                        ));
                    }
                    Ok(())
                },
            )?;
        }
    }
    // SAFETY: every branch above returns early unless its sinks are full,
    // i.e. each of the first `n` elements of the spare capacity was written
    // exactly once (`ByteSink` writes elements in order and counts them; the
    // member slices partition `out`).
    unsafe { voxels.set_len(n) };
    Ok(voxels)
}

/// Feeds `sink` from `r` until it is full or `r` ends; never reads past the
/// bytes the sink still needs.
fn fill<T: NiftiElement>(
    r: &mut impl Read,
    sink: &mut ByteSink<T>,
    buf: &mut [u8],
) -> std::io::Result<()> {
    while !sink.is_full() {
        let want = sink.remaining_bytes().min(buf.len());
        match r.read(&mut buf[..want]) {
            Ok(0) => return Ok(()),
            Ok(got) => {
                sink.push(&buf[..got]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
