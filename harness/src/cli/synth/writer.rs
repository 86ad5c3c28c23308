//! Writing a GGUF whose tensor data is generated while it is written: the header and metadata come from the
//! engine's [`GgufWriter`] (so they are encoded exactly as every other file the project writes), the tensor
//! infos and the data section are laid out here with the same rules (`gguf.cpp`: data offsets relative to an
//! aligned data section, each tensor padded to the alignment), because a multi-GB model cannot be built in
//! memory the way `GgufWriter::to_bytes` builds one.

use super::tensors::PlannedTensor;
use ferrogem::gguf::{DEFAULT_ALIGNMENT_BYTES, GgufWriter, Value};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

const GGUF_VERSION: u32 = 3;
/// Where `GgufWriter` puts the tensor count: after the magic and the version.
const TENSOR_COUNT_OFFSET_BYTES: usize = 8;

/// The bytes before the data section and where every tensor lands.
pub struct Layout {
    pub header: Vec<u8>,
    /// Per tensor, its offset from the start of the data section.
    pub offsets_bytes: Vec<u64>,
    pub data_bytes: u64,
}

impl Layout {
    pub fn file_bytes(&self) -> u64 {
        self.header.len() as u64 + self.data_bytes
    }
}

fn put_u32(out: &mut Vec<u8>, x: u32) {
    out.extend_from_slice(&x.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, x: u64) {
    out.extend_from_slice(&x.to_le_bytes());
}

/// Header, metadata and tensor infos, padded to the alignment (the default 32: no `general.alignment` is written).
pub fn layout(metadata: Vec<(String, Value)>, tensors: &[PlannedTensor]) -> Result<Layout, String> {
    let mut w = GgufWriter::new(GGUF_VERSION);
    for (key, value) in metadata {
        w.add_metadata(key, value);
    }
    // With no tensors the writer emits the header and metadata only, unpadded; the tensor count is patched in.
    let mut header = w.to_bytes().map_err(|e| e.to_string())?;
    header[TENSOR_COUNT_OFFSET_BYTES..TENSOR_COUNT_OFFSET_BYTES + 8]
        .copy_from_slice(&(tensors.len() as u64).to_le_bytes());
    let align = DEFAULT_ALIGNMENT_BYTES;
    let mut offsets_bytes = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for t in tensors {
        put_u64(&mut header, t.name.len() as u64);
        header.extend_from_slice(t.name.as_bytes());
        put_u32(&mut header, t.dims.len() as u32);
        for &d in &t.dims {
            put_u64(&mut header, d);
        }
        put_u32(&mut header, t.dtype.to_u32());
        put_u64(&mut header, offset);
        offsets_bytes.push(offset);
        offset = (offset + t.size_bytes()).next_multiple_of(align);
    }
    header.resize((header.len() as u64).next_multiple_of(align) as usize, 0);
    Ok(Layout { header, offsets_bytes, data_bytes: offset })
}

/// A buffered file that also hashes (for an Ollama blob name) and reports progress.
pub struct Sink {
    out: BufWriter<File>,
    hash: Option<Sha256>,
    bar: ProgressBar,
    written_bytes: u64,
}

impl Sink {
    pub fn create(path: &Path, total_bytes: u64, hash: bool) -> std::io::Result<Self> {
        let out = BufWriter::with_capacity(8 << 20, File::create(path)?);
        // Drawn on stderr only when it is a terminal.
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        Ok(Sink { out, hash: hash.then(Sha256::new), bar, written_bytes: 0 })
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        if let Some(h) = &mut self.hash {
            h.update(bytes);
        }
        self.written_bytes += bytes.len() as u64;
        self.bar.set_position(self.written_bytes);
        Ok(())
    }

    pub fn zeros(&mut self, n_bytes: u64) -> std::io::Result<()> {
        self.write(&vec![0u8; n_bytes as usize])
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Flushes and returns the sha256 hex if hashing.
    pub fn finish(mut self) -> std::io::Result<Option<String>> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        self.bar.finish_and_clear();
        Ok(self.hash.map(|h| super::hex(&h.finalize())))
    }
}
