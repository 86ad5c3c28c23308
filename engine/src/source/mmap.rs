//! Memory-mapped files (native only: the browser has no filesystem to map).

use std::path::Path;

use memmap2::Mmap;

use super::{ByteSource, SourceError, read_slice_at};

/// A read-only memory map of a whole file. Tensor bytes are borrowed from the map, never copied.
#[derive(Debug)]
pub struct MmapSource {
    map: Mmap,
}

impl MmapSource {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let path = path.as_ref();
        let open_error = |source| SourceError::Open { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(open_error)?;
        // SAFETY: the map is read-only. If another process truncates or rewrites the file while it is mapped,
        // reads may see the new bytes or fault; every mmap-based model loader (llama.cpp, candle) accepts this,
        // and model files are not edited in place while a model runs.
        let map = unsafe { Mmap::map(&file) }.map_err(open_error)?;
        Ok(Self { map })
    }
}

impl ByteSource for MmapSource {
    fn len_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        read_slice_at(&self.map, offset, buf)
    }

    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_files_including_empty_ones_and_names_missing_ones() {
        let dir = std::env::temp_dir().join(format!("ferrogem-mmap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let full = dir.join("full.bin");
        let empty = dir.join("empty.bin");
        std::fs::write(&full, [7u8, 8, 9]).unwrap();
        std::fs::write(&empty, []).unwrap();

        let source = MmapSource::open(&full).unwrap();
        assert_eq!(source.len_bytes(), 3);
        assert_eq!(&*source.read_range(1, 2).unwrap(), &[8, 9]);
        assert!(matches!(source.read_range(2, 2), Err(SourceError::OutOfRange { .. })));
        assert_eq!(MmapSource::open(&empty).unwrap().len_bytes(), 0);

        let missing = dir.join("missing.bin");
        let err = MmapSource::open(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.bin"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
