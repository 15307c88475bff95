//! gzip framing for `.nii.gz`: files written as a series of independently
//! compressed gzip members, each carrying its own length, so that both the
//! writer and the reader can work on members in parallel.
//!
//! A multi-member gzip file is plain RFC 1952 (gzip, zlib, nibabel, ITK and
//! the `nifti` crate all read it as one stream). Each member this crate writes
//! has the `FEXTRA` flag with one subfield, `SI1 SI2 = 'P' 'S'`, `LEN = 8`,
//! holding the member's total byte length (u64, little-endian), the same idea
//! as BGZF's `BC` subfield. A reader that finds that subfield on every member
//! can locate all members without inflating anything; files from other
//! writers are read as one stream.

use std::io::{Read, Write};

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// Uncompressed bytes per member. 1 MiB keeps every core busy on a volume
/// and costs ~0.1 % in compression ratio (deflate's window is 32 KiB).
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Largest ratio deflate can reach (about 1032:1): a header announcing more
/// voxel bytes than this times the compressed size cannot be honest.
pub(crate) const MAX_INFLATE_RATIO: u64 = 1032;

/// Length of the member header this crate writes: 10 fixed bytes, XLEN, one
/// 4-byte subfield header and its 8-byte payload.
const MEMBER_HEADER_LEN: usize = 10 + 2 + 4 + 8;
/// CRC32 + ISIZE.
const MEMBER_TRAILER_LEN: usize = 8;

/// One gzip member located by its length subfield.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    /// Byte offset of the member in the file.
    pub start: usize,
    /// Total length of the member (header, deflate data, trailer).
    pub len: usize,
    /// Uncompressed size as recorded in the trailer (ISIZE).
    pub uncompressed: u32,
}

impl Member {
    /// The member's bytes.
    pub(crate) fn bytes<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        &file[self.start..self.start + self.len]
    }
}

/// Compresses `data` into one complete gzip member with the length subfield.
/// Deterministic: no time stamp, no file name.
pub(crate) fn gzip_member(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut enc = DeflateEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::new(level),
    );
    enc.write_all(data)?;
    let body = enc.finish()?;
    let mut crc = Crc::new();
    crc.update(data);
    let total = (MEMBER_HEADER_LEN + body.len() + MEMBER_TRAILER_LEN) as u64;
    let mut out = Vec::with_capacity(total as usize);
    // ID1 ID2 CM FLG(FEXTRA) MTIME(0) XFL OS(unknown)
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&12u16.to_le_bytes());
    out.extend_from_slice(b"PS");
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(out)
}

/// The members of a file written by [`gzip_member`]s, or `None` if any part
/// of the file is not such a member (then the file is read as one stream).
pub(crate) fn indexed_members(file: &[u8]) -> Option<Vec<Member>> {
    let mut members = Vec::new();
    let mut start = 0usize;
    while start < file.len() {
        let h = file.get(start..start + MEMBER_HEADER_LEN)?;
        let ok = h[..4] == [0x1f, 0x8b, 8, 0x04]
            && h[10..12] == 12u16.to_le_bytes()
            && &h[12..14] == b"PS"
            && h[14..16] == 8u16.to_le_bytes();
        if !ok {
            return None;
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&h[16..24]);
        let len = usize::try_from(u64::from_le_bytes(len8)).ok()?;
        let end = start.checked_add(len)?;
        if len < MEMBER_HEADER_LEN + MEMBER_TRAILER_LEN || end > file.len() {
            return None;
        }
        let t = &file[end - 4..end];
        members.push(Member {
            start,
            len,
            uncompressed: u32::from_le_bytes([t[0], t[1], t[2], t[3]]),
        });
        start = end;
    }
    (!members.is_empty()).then_some(members)
}

/// Reads from `r` until EOF and returns the number of bytes seen. Used after
/// the voxels to make the gzip decoder reach (and check) the CRC trailers.
pub(crate) fn drain(mut r: impl Read, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_concatenate_to_one_gzip_stream_and_are_indexed() {
        let a: Vec<u8> = (0..5000u32).map(|v| (v % 251) as u8).collect();
        let b: Vec<u8> = (0..3000u32).map(|v| (v % 7) as u8).collect();
        let mut file = gzip_member(&a, 1).unwrap();
        let first_len = file.len();
        file.extend(gzip_member(&b, 6).unwrap());
        let members = indexed_members(&file).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].len, first_len);
        assert_eq!(members[1].uncompressed, 3000);
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&file[..])
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, [a, b].concat());
        // A plain gzip stream has no index.
        let mut plain = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
        plain.write_all(&all).unwrap();
        assert!(indexed_members(&plain.finish().unwrap()).is_none());
    }
}
