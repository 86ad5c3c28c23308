//! Writing GGUF v2/v3 files: for tests, mutation tests and synthetic models.
//!
//! The writer serializes exactly what it is given (including duplicate keys, more than four dimensions or data
//! of the wrong length), so tests can build hostile files with it; [`GgufFile::read`](super::GgufFile::read) is
//! the validator. Only the alignment must be valid, because the layout depends on it.

use super::reader::MAGIC;
use super::value::{Array, LeScalar, Value, with_array_vec};
use super::{ALIGNMENT_KEY, GgufError, alignment_from_metadata};
use crate::quant::QuantType;

/// Builds a GGUF file in memory. Tensors are laid out in the order they are added, each at the next aligned
/// offset; `general.alignment` (if added as metadata) sets the alignment, as it does for readers.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    dtype: QuantType,
    data: Vec<u8>,
}

impl GgufWriter {
    /// `version` is written as given; the layout is that of versions 2 and 3.
    pub fn new(version: u32) -> Self {
        Self { version, metadata: Vec::new(), tensors: Vec::new() }
    }

    pub fn add_metadata(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// `dims` in ggml order (ne[0] first); `data` is the tensor's bytes in `dtype`'s block layout.
    pub fn add_tensor(&mut self, name: impl Into<String>, dims: &[u64], dtype: QuantType, data: Vec<u8>) -> &mut Self {
        self.tensors.push(PendingTensor { name: name.into(), dims: dims.to_vec(), dtype, data });
        self
    }

    /// The whole file. Fails only if `general.alignment` is not a nonzero power of two.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let alignment_value = self.metadata.iter().find(|(key, _)| key == ALIGNMENT_KEY).map(|(_, value)| value);
        let alignment_bytes = alignment_from_metadata(alignment_value)?;

        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        self.version.put_le(&mut out);
        (self.tensors.len() as u64).put_le(&mut out);
        (self.metadata.len() as u64).put_le(&mut out);
        for (key, value) in &self.metadata {
            key.encode(&mut out);
            value.value_type().to_u32().put_le(&mut out);
            value.encode(&mut out);
        }
        let mut relative_offset = 0u64;
        for tensor in &self.tensors {
            tensor.name.encode(&mut out);
            (tensor.dims.len() as u32).put_le(&mut out);
            for &dim in &tensor.dims {
                dim.put_le(&mut out);
            }
            tensor.dtype.to_u32().put_le(&mut out);
            relative_offset.put_le(&mut out);
            relative_offset = align_up(relative_offset + tensor.data.len() as u64, alignment_bytes);
        }
        // Without tensors there is no data section, so no padding (and a huge alignment costs nothing).
        for tensor in &self.tensors {
            pad_to_alignment(&mut out, alignment_bytes);
            out.extend_from_slice(&tensor.data);
        }
        if !self.tensors.is_empty() {
            pad_to_alignment(&mut out, alignment_bytes);
        }
        Ok(out)
    }
}

fn align_up(offset: u64, alignment_bytes: u64) -> u64 {
    offset.next_multiple_of(alignment_bytes)
}

fn pad_to_alignment(out: &mut Vec<u8>, alignment_bytes: u64) {
    let padded_len = align_up(out.len() as u64, alignment_bytes) as usize;
    out.resize(padded_len, 0);
}

/// How a metadata value is laid out in a file (the mirror of the reader's `read_value`).
trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

impl<T: LeScalar> Encode for T {
    fn encode(&self, out: &mut Vec<u8>) {
        self.put_le(out);
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Encode for String {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u64).put_le(out);
        out.extend_from_slice(self.as_bytes());
    }
}

impl Encode for Array {
    fn encode(&self, out: &mut Vec<u8>) {
        self.elem_type().to_u32().put_le(out);
        (self.len() as u64).put_le(out);
        with_array_vec!(self, elems => elems.iter().for_each(|elem| elem.encode(out)));
    }
}

impl Encode for Value {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(x) => x.encode(out),
            Value::I8(x) => x.encode(out),
            Value::U16(x) => x.encode(out),
            Value::I16(x) => x.encode(out),
            Value::U32(x) => x.encode(out),
            Value::I32(x) => x.encode(out),
            Value::F32(x) => x.encode(out),
            Value::Bool(x) => x.encode(out),
            Value::String(x) => x.encode(out),
            Value::Array(x) => x.encode(out),
            Value::U64(x) => x.encode(out),
            Value::I64(x) => x.encode(out),
            Value::F64(x) => x.encode(out),
        }
    }
}
