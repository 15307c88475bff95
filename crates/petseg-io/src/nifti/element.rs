//! Voxel element types a NIfTI file can hold, and their byte codecs.

use std::mem::MaybeUninit;

use crate::nifti::AnyVolume;
use crate::volume::Volume;

mod sealed {
    pub trait Sealed {}
}

/// A voxel type that NIfTI-1 can store and this crate can read and write:
/// `u8`, `i8`, `i16`, `u16`, `i32`, `f32`, `f64`.
///
/// The trait is sealed: the set of types is the set of NIfTI datatype codes
/// this crate supports (`docs/method/data.md` §2).
pub trait NiftiElement: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The NIfTI `datatype` code (2 = uint8, 4 = int16, 16 = float32, ...).
    const DATATYPE: i16;
    /// Bytes per voxel.
    const SIZE: usize;
    /// The numpy-style name (`"float32"`), as nibabel and `petseg info` print it.
    const NAME: &'static str;

    /// Decodes `bytes` (exactly `out.len() * SIZE` of them) into `out`.
    fn decode(bytes: &[u8], big_endian: bool, out: &mut [MaybeUninit<Self>]);
    /// Encodes `values` as little-endian bytes appended to `out`.
    fn encode_le(values: &[Self], out: &mut Vec<u8>);
    /// The value as `f64` (exact for every supported type).
    fn to_f64(self) -> f64;
    /// Wraps a volume of this type in the matching [`AnyVolume`] variant.
    fn into_any(vol: Volume<Self>) -> AnyVolume;
}

macro_rules! impl_element {
    ($t:ty, $code:expr, $name:expr, $variant:ident) => {
        impl sealed::Sealed for $t {}
        impl NiftiElement for $t {
            const DATATYPE: i16 = $code;
            const SIZE: usize = std::mem::size_of::<$t>();
            const NAME: &'static str = $name;

            fn decode(bytes: &[u8], big_endian: bool, out: &mut [MaybeUninit<Self>]) {
                debug_assert_eq!(bytes.len(), out.len() * Self::SIZE);
                let chunks = bytes.chunks_exact(Self::SIZE);
                if big_endian {
                    for (o, c) in out.iter_mut().zip(chunks) {
                        let mut a = [0u8; std::mem::size_of::<$t>()];
                        a.copy_from_slice(c);
                        o.write(<$t>::from_be_bytes(a));
                    }
                } else {
                    for (o, c) in out.iter_mut().zip(chunks) {
                        let mut a = [0u8; std::mem::size_of::<$t>()];
                        a.copy_from_slice(c);
                        o.write(<$t>::from_le_bytes(a));
                    }
                }
            }

            fn encode_le(values: &[Self], out: &mut Vec<u8>) {
                out.reserve(values.len() * Self::SIZE);
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }

            fn to_f64(self) -> f64 {
                self as f64
            }

            fn into_any(vol: Volume<Self>) -> AnyVolume {
                AnyVolume::$variant(vol)
            }
        }
    };
}

impl_element!(u8, 2, "uint8", U8);
impl_element!(i8, 256, "int8", I8);
impl_element!(i16, 4, "int16", I16);
impl_element!(u16, 512, "uint16", U16);
impl_element!(i32, 8, "int32", I32);
impl_element!(f32, 16, "float32", F32);
impl_element!(f64, 64, "float64", F64);

/// The name of a NIfTI datatype code, for error messages about codes this
/// crate does not read.
pub(crate) fn datatype_name(code: i16) -> &'static str {
    match code {
        0 => "unknown",
        1 => "binary",
        2 => "uint8",
        4 => "int16",
        8 => "int32",
        16 => "float32",
        32 => "complex64",
        64 => "float64",
        128 => "rgb24",
        256 => "int8",
        512 => "uint16",
        768 => "uint32",
        1024 => "int64",
        1280 => "uint64",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "rgba32",
        _ => "not a NIfTI datatype",
    }
}

/// Writes a byte stream into a typed, uninitialised output slice, element by
/// element, carrying partial elements across calls.
///
/// The owner of the slice may treat it as initialised only when
/// [`ByteSink::is_full`] is true: every element has then been written once.
pub(crate) struct ByteSink<'a, T: NiftiElement> {
    out: &'a mut [MaybeUninit<T>],
    pos: usize,
    carry: [u8; 8],
    ncarry: usize,
    big_endian: bool,
}

impl<'a, T: NiftiElement> ByteSink<'a, T> {
    /// A sink that fills `out` from bytes in the given byte order.
    pub(crate) fn new(out: &'a mut [MaybeUninit<T>], big_endian: bool) -> Self {
        ByteSink {
            out,
            pos: 0,
            carry: [0; 8],
            ncarry: 0,
            big_endian,
        }
    }

    /// Bytes still needed to fill the output.
    pub(crate) fn remaining_bytes(&self) -> usize {
        (self.out.len() - self.pos) * T::SIZE - self.ncarry
    }

    /// Whether every element has been written.
    pub(crate) fn is_full(&self) -> bool {
        self.pos == self.out.len()
    }

    /// Appends bytes; returns how many were used (all of them unless the
    /// output is full).
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> usize {
        let total = bytes.len();
        if self.ncarry > 0 && self.pos < self.out.len() {
            let take = (T::SIZE - self.ncarry).min(bytes.len());
            self.carry[self.ncarry..self.ncarry + take].copy_from_slice(&bytes[..take]);
            self.ncarry += take;
            bytes = &bytes[take..];
            if self.ncarry == T::SIZE {
                T::decode(
                    &self.carry[..T::SIZE],
                    self.big_endian,
                    &mut self.out[self.pos..self.pos + 1],
                );
                self.pos += 1;
                self.ncarry = 0;
            }
        }
        let n = (bytes.len() / T::SIZE).min(self.out.len() - self.pos);
        T::decode(
            &bytes[..n * T::SIZE],
            self.big_endian,
            &mut self.out[self.pos..self.pos + n],
        );
        self.pos += n;
        bytes = &bytes[n * T::SIZE..];
        if self.pos < self.out.len() && !bytes.is_empty() {
            // Fewer than SIZE bytes are left: keep them for the next call.
            self.carry[..bytes.len()].copy_from_slice(bytes);
            self.ncarry = bytes.len();
            bytes = &[];
        }
        total - bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_reassembles_elements_split_across_pushes() {
        let values: Vec<f32> = (0..37).map(|v| v as f32 * 1.25 - 3.0).collect();
        let mut bytes = Vec::new();
        f32::encode_le(&values, &mut bytes);
        let mut out = vec![MaybeUninit::<f32>::uninit(); values.len()];
        let mut sink = ByteSink::new(&mut out, false);
        // Odd-sized pieces so that elements straddle calls.
        for piece in bytes.chunks(7) {
            assert_eq!(sink.push(piece), piece.len());
        }
        assert!(sink.is_full());
        let got: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
        assert_eq!(got, values);
    }

    #[test]
    fn big_endian_decoding() {
        let mut out = [MaybeUninit::<i16>::uninit(); 2];
        i16::decode(&[0x01, 0x02, 0xff, 0xfe], true, &mut out);
        let got: Vec<i16> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
        assert_eq!(got, vec![0x0102, -2]);
    }
}
