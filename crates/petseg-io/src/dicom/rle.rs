//! RLE Lossless encoding (DICOM PS3.5 Annex G) of 16-bit grey-scale frames.
//!
//! dicom-rs 0.10.1 decodes RLE but has no encoder, so the writer of
//! synthetic series uses this one. A frame is a 64-byte header (segment count
//! and offsets) followed by one PackBits-coded segment per byte plane: the
//! most significant bytes of every pixel first, then the least significant.
//! Each row is coded on its own (runs never cross a row), and each segment is
//! padded to an even length.

/// Encodes one frame of 16-bit samples (row-major, `columns` per row).
pub fn encode_frame_u16(samples: &[u16], columns: usize) -> Vec<u8> {
    let high: Vec<u8> = samples.iter().map(|s| (s >> 8) as u8).collect();
    let low: Vec<u8> = samples.iter().map(|s| (s & 0xFF) as u8).collect();
    let segments = [
        encode_segment(&high, columns),
        encode_segment(&low, columns),
    ];
    let mut out = Vec::with_capacity(64 + segments.iter().map(Vec::len).sum::<usize>());
    let mut header = [0u32; 16];
    header[0] = segments.len() as u32;
    let mut offset = 64u32;
    for (s, seg) in segments.iter().enumerate() {
        header[1 + s] = offset;
        offset += seg.len() as u32;
    }
    for h in header {
        out.extend_from_slice(&h.to_le_bytes());
    }
    for seg in &segments {
        out.extend_from_slice(seg);
    }
    out
}

/// PackBits over each row of a byte plane, padded to even length.
fn encode_segment(plane: &[u8], columns: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(plane.len() / 2 + 16);
    for row in plane.chunks(columns.max(1)) {
        encode_row(row, &mut out);
    }
    if out.len() % 2 == 1 {
        // -128 is the PackBits no-op: a decoder that reads it skips it.
        out.push(0x80);
    }
    out
}

fn encode_row(row: &[u8], out: &mut Vec<u8>) {
    let n = row.len();
    let mut i = 0;
    let mut literal_start = 0;
    while i < n {
        // Length of the run of equal bytes starting at i (at most 128).
        let mut run = 1;
        while i + run < n && run < 128 && row[i + run] == row[i] {
            run += 1;
        }
        if run >= 3 {
            flush_literal(&row[literal_start..i], out);
            out.push((257 - run) as u8);
            out.push(row[i]);
            i += run;
            literal_start = i;
        } else {
            i += 1;
            if i - literal_start == 128 {
                flush_literal(&row[literal_start..i], out);
                literal_start = i;
            }
        }
    }
    flush_literal(&row[literal_start..n], out);
}

fn flush_literal(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(128) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward PackBits decoder (PS3.5 G.3.2), for round trips.
    fn decode_segment(seg: &[u8], expected_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < seg.len() && out.len() < expected_len {
            let h = seg[i] as i8;
            i += 1;
            if h >= 0 {
                let n = h as usize + 1;
                out.extend_from_slice(&seg[i..i + n]);
                i += n;
            } else if h != -128 {
                let n = 1 - h as isize;
                out.extend(std::iter::repeat_n(seg[i], n as usize));
                i += 1;
            }
        }
        out
    }

    #[test]
    fn round_trip_of_runs_literals_and_long_rows() {
        let columns = 300;
        let mut samples = Vec::new();
        for r in 0..7u32 {
            for c in 0..columns as u32 {
                let v = match r {
                    0 => 0u16,                      // one long run per plane
                    1 => (c * 7919 % 65536) as u16, // literals
                    2 => {
                        if c % 5 < 3 {
                            1000
                        } else {
                            c as u16
                        }
                    } // mixed
                    3 => 0xFFFF,
                    _ => ((c / 3) * 257 + r) as u16,
                };
                samples.push(v);
            }
        }
        let frame = encode_frame_u16(&samples, columns);
        let header: Vec<u32> = frame[..64]
            .chunks(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(header[0], 2);
        assert_eq!(header[1], 64);
        let (o1, o2) = (header[1] as usize, header[2] as usize);
        assert_eq!(o2 % 2, 0);
        assert_eq!(frame.len() % 2, 0);
        let high = decode_segment(&frame[o1..o2], samples.len());
        let low = decode_segment(&frame[o2..], samples.len());
        let back: Vec<u16> = high
            .iter()
            .zip(&low)
            .map(|(h, l)| ((*h as u16) << 8) | *l as u16)
            .collect();
        assert_eq!(back, samples);
        // Runs compress: a constant frame is tiny.
        assert!(encode_frame_u16(&vec![5u16; 128 * 128], 128).len() < 2000);
    }
}
