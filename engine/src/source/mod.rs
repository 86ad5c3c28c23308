//! Byte-range sources: where model bytes come from.
//!
//! The GGUF reader asks a [`ByteSource`] for byte ranges instead of reading a file, so the same parser runs on a
//! memory-mapped file natively and, in the browser, on bytes held in memory or fetched later from OPFS or HTTP.
//! Sources that already hold every byte contiguously expose them through [`ByteSource::as_slice`], and readers
//! borrow from that slice instead of copying.

use std::borrow::Cow;
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
mod mmap;
#[cfg(not(target_arch = "wasm32"))]
pub use mmap::MmapSource;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {len_bytes} bytes at byte {offset}: the source has only {source_len_bytes} bytes")]
    OutOfRange { offset: u64, len_bytes: u64, source_len_bytes: u64 },

    /// A source outside this process (the browser's file handles) failed to give a range it has.
    #[error("reading {len_bytes} bytes at byte {offset} of {source_name} failed: {message}")]
    Read { source_name: String, offset: u64, len_bytes: u64, message: String },

    #[cfg(not(target_arch = "wasm32"))]
    #[error("could not open `{}`: {source}", path.display())]
    Open { path: std::path::PathBuf, source: std::io::Error },
}

/// A read-only, random-access run of bytes of known length.
pub trait ByteSource {
    fn len_bytes(&self) -> u64;

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`; a range past the end is an error, not a panic.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError>;

    /// Every byte of the source, when it already lies contiguously in memory (an mmap or a buffer).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }

    /// The bytes at `offset..offset + len_bytes`: borrowed when [`as_slice`](Self::as_slice) is available,
    /// otherwise read into a new buffer (allocated only after the range is checked against the length).
    fn read_range(&self, offset: u64, len_bytes: u64) -> Result<Cow<'_, [u8]>, SourceError> {
        if let Some(all) = self.as_slice() {
            return slice_range(all, offset, len_bytes).map(Cow::Borrowed);
        }
        let out_of_range = || SourceError::OutOfRange { offset, len_bytes, source_len_bytes: self.len_bytes() };
        let end = offset.checked_add(len_bytes).ok_or_else(out_of_range)?;
        if end > self.len_bytes() {
            return Err(out_of_range());
        }
        let mut buf = vec![0; usize::try_from(len_bytes).map_err(|_| out_of_range())?];
        self.read_at(offset, &mut buf)?;
        Ok(Cow::Owned(buf))
    }
}

/// `bytes[offset..offset + len_bytes]`, or `OutOfRange` (including when the numbers overflow `usize`).
pub(crate) fn slice_range(bytes: &[u8], offset: u64, len_bytes: u64) -> Result<&[u8], SourceError> {
    let out_of_range = || SourceError::OutOfRange { offset, len_bytes, source_len_bytes: bytes.len() as u64 };
    let start = usize::try_from(offset).map_err(|_| out_of_range())?;
    let len = usize::try_from(len_bytes).map_err(|_| out_of_range())?;
    let end = start.checked_add(len).ok_or_else(out_of_range)?;
    bytes.get(start..end).ok_or_else(out_of_range)
}

/// Copies `bytes[offset..offset + buf.len()]` into `buf`: `read_at` for every slice-backed source.
fn read_slice_at(bytes: &[u8], offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
    buf.copy_from_slice(slice_range(bytes, offset, buf.len() as u64)?);
    Ok(())
}

impl ByteSource for [u8] {
    fn len_bytes(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        read_slice_at(self, offset, buf)
    }

    fn as_slice(&self) -> Option<&[u8]> {
        Some(self)
    }
}

/// Bytes owned in memory; cheap to clone. Works on every target, including wasm32.
#[derive(Clone, Debug)]
pub struct MemSource {
    bytes: Arc<[u8]>,
}

impl MemSource {
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self { bytes: bytes.into() }
    }
}

impl From<Vec<u8>> for MemSource {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl ByteSource for MemSource {
    fn len_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        read_slice_at(&self.bytes, offset, buf)
    }

    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source without `as_slice`, like a future OPFS or HTTP source, to test the copying path.
    struct Unmapped(Vec<u8>);

    impl ByteSource for Unmapped {
        fn len_bytes(&self) -> u64 {
            self.0.len() as u64
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
            read_slice_at(&self.0, offset, buf)
        }
    }

    #[test]
    fn read_range_borrows_from_slice_sources_and_copies_otherwise() {
        let mem = MemSource::from(vec![1, 2, 3, 4, 5]);
        assert!(matches!(mem.read_range(1, 3).unwrap(), Cow::Borrowed(&[2, 3, 4])));
        let unmapped = Unmapped(vec![1, 2, 3, 4, 5]);
        assert!(matches!(unmapped.read_range(1, 3).unwrap(), Cow::Owned(v) if v == [2, 3, 4]));
    }

    #[test]
    fn reads_past_the_end_are_errors() {
        fn check<S: ByteSource + ?Sized>(source: &S) {
            assert!(source.read_range(0, 8).is_ok());
            assert!(source.read_range(8, 0).is_ok());
            for (offset, len_bytes) in [(0, 9), (8, 1), (9, 0), (u64::MAX, 2), (1, u64::MAX)] {
                let err = source.read_range(offset, len_bytes).unwrap_err();
                assert!(
                    matches!(err, SourceError::OutOfRange { offset: o, len_bytes: l, source_len_bytes: 8 } if o == offset && l == len_bytes),
                    "{err}"
                );
            }
            let mut buf = [0; 4];
            assert!(matches!(source.read_at(6, &mut buf), Err(SourceError::OutOfRange { .. })));
        }
        check(&MemSource::from(vec![0; 8]));
        check(&Unmapped(vec![0; 8]));
        check(&[0u8; 8][..]);
    }
}
