//! GGUF files (versions 2 and 3, little-endian), read in two phases like candle's `gguf_file`:
//! [`GgufFile::read`] parses the header, metadata and tensor infos; [`TensorInfo::bytes`] fetches one tensor's
//! bytes when asked, borrowed from the source when it is memory-mapped or in memory.
//!
//! The reader treats its input as hostile: it never panics, never reads outside the source, and never
//! allocates more than the file's own bytes justify (see the limits in [`reader`]). [`GgufWriter`] writes the
//! same format for tests and synthetic models.
//!
//! Layout reference: `ggml/src/gguf.cpp` and `gguf-py/gguf/gguf_writer.py` in llama.cpp.

mod accessors;
mod cursor;
mod error;
pub mod reader;
mod value;
mod writer;

use std::borrow::Cow;
use std::collections::HashMap;

pub use error::GgufError;
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;

use crate::quant::QuantType;
use crate::source::{ByteSource, SourceError};

/// The metadata key that sets the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Alignment when `general.alignment` is absent (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT_BYTES: u64 = 32;

/// A parsed GGUF header: metadata in file order and tensor infos whose byte ranges are known to lie inside the
/// file they were read from.
#[derive(Clone, Debug)]
pub struct GgufFile {
    version: u32,
    alignment_bytes: u64,
    data_offset_bytes: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// One tensor: name, shape, type and where its bytes are.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    dtype: QuantType,
    elems: u64,
    offset_bytes: u64,
    size_bytes: u64,
}

impl GgufFile {
    pub fn read<S: ByteSource + ?Sized>(source: &S) -> Result<Self, GgufError> {
        reader::parse(source)
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment_bytes(&self) -> u64 {
        self.alignment_bytes
    }

    /// Where the data section starts: the end of the tensor infos, aligned up.
    pub fn data_offset_bytes(&self) -> u64 {
        self.data_offset_bytes
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(key, value)| (key.as_str(), value))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Like [`tensor`](Self::tensor), with an error naming the tensor for the ones a model cannot do without.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor { name: name.to_owned() })
    }
}

impl TensorInfo {
    /// The GGUF tensor name, e.g. `blk.0.attn_q.weight`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions in ggml order: `dims()[0]` (ne[0]) varies fastest.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    pub fn dtype(&self) -> QuantType {
        self.dtype
    }

    pub fn elems(&self) -> u64 {
        self.elems
    }

    /// Absolute offset of the first byte in the file (data section offset plus the tensor's own offset).
    pub fn offset_bytes(&self) -> u64 {
        self.offset_bytes
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The tensor's bytes from `source` (the source it was parsed from): borrowed when the source is in memory or
    /// memory-mapped, copied otherwise.
    pub fn bytes<'s, S: ByteSource + ?Sized>(&self, source: &'s S) -> Result<Cow<'s, [u8]>, GgufError> {
        source
            .read_range(self.offset_bytes, self.size_bytes)
            .map_err(|source| GgufError::Source { field: format!("the bytes of tensor `{}`", self.name), source })
    }

    /// The tensor's bytes from `offset` within it into `buf`: a tile at a time, for uploads that never hold the whole
    /// tensor. A range past the tensor's end is an error.
    pub fn read_part<S: ByteSource + ?Sized>(&self, source: &S, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        let len_bytes = buf.len() as u64;
        let source_error = |source| GgufError::Source {
            field: format!("bytes {offset}..+{len_bytes} of tensor `{}`", self.name),
            source,
        };
        if offset.checked_add(len_bytes).is_none_or(|end| end > self.size_bytes) {
            let out_of_range = SourceError::OutOfRange { offset, len_bytes, source_len_bytes: self.size_bytes };
            return Err(source_error(out_of_range));
        }
        source.read_at(self.offset_bytes + offset, buf).map_err(source_error)
    }
}

/// The alignment a `general.alignment` value (or its absence) sets: a nonzero power of two of any integer type.
/// Shared by the reader and the writer so both lay out the data section the same way.
fn alignment_from_metadata(value: Option<&Value>) -> Result<u64, GgufError> {
    let Some(value) = value else {
        return Ok(DEFAULT_ALIGNMENT_BYTES);
    };
    value
        .as_integer()
        .and_then(|a| u64::try_from(a).ok())
        .filter(|a| a.is_power_of_two())
        .ok_or_else(|| GgufError::InvalidAlignment { value: value.to_string() })
}
