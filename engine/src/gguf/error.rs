//! Everything that can be wrong with a GGUF file, each naming the field and, while parsing, the byte offset.
//!
//! `field` strings look like `header.tensor_count`, `metadata[5].key`, `metadata `general.name``,
//! `tensor_infos[3].type`; offsets are absolute byte offsets into the file.

use crate::quant::QuantType;
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: it starts with {found:02x?}, not the magic bytes `GGUF`")]
    BadMagic { found: [u8; 4] },

    #[error(
        "GGUF version {version} is not supported; only versions 2 and 3 are (re-convert the model with a current llama.cpp)"
    )]
    UnsupportedVersion { version: u32 },

    #[error("truncated at byte {offset} reading {field}: needs {needed_bytes} bytes, {remaining_bytes} remain")]
    Truncated { field: String, offset: u64, needed_bytes: u64, remaining_bytes: u64 },

    #[error(
        "{field} at byte {offset} is {count}, but that many entries need at least {needed_bytes} bytes and only \
         {remaining_bytes} remain"
    )]
    CountTooLarge { field: String, offset: u64, count: u64, needed_bytes: u64, remaining_bytes: u64 },

    #[error("{field} at byte {offset} is an array of {count} elements, over the limit of {max_elems}")]
    ArrayTooLong { field: String, offset: u64, count: u64, max_elems: u64 },

    #[error("{field} at byte {offset} is a string of {len_bytes} bytes, over the limit of {max_bytes}")]
    StringTooLong { field: String, offset: u64, len_bytes: u64, max_bytes: u64 },

    #[error("{field} at byte {offset} is not valid UTF-8")]
    NotUtf8 { field: String, offset: u64 },

    #[error("{field} at byte {offset} has unknown value type {type_id} (known: 0..=12)")]
    UnknownValueType { field: String, offset: u64, type_id: u32 },

    #[error("{field} at byte {offset} is a bool stored as {byte}; only 0 and 1 are valid")]
    InvalidBool { field: String, offset: u64, byte: u8 },

    #[error("{field} at byte {offset} nests arrays more than {max_depth} deep")]
    NestingTooDeep { field: String, offset: u64, max_depth: u32 },

    #[error("metadata key `{key}` at byte {offset} appears more than once")]
    DuplicateKey { key: String, offset: u64 },

    #[error("tensor `{name}` at byte {offset} appears more than once")]
    DuplicateTensor { name: String, offset: u64 },

    #[error("{field} at byte {offset} is {n_dims}, but ggml tensors have at most {max_dims} dimensions")]
    TooManyDims { field: String, offset: u64, n_dims: u32, max_dims: u32 },

    #[error("{field} at byte {offset} is ggml type id {type_id}, which ferrogem does not know")]
    UnknownTensorType { field: String, offset: u64, type_id: u32 },

    #[error("general.alignment is {value}; it must be an integer that is a nonzero power of two")]
    InvalidAlignment { value: String },

    #[error("tensor `{tensor}` has dims {dims:?} of type {dtype}: its size in bytes overflows u64")]
    ShapeOverflow { tensor: String, dims: Vec<u64>, dtype: QuantType },

    #[error("tensor `{tensor}` has ne[0] = {ne0}, not a multiple of the {block_elems}-element {dtype} block")]
    RowNotBlockAligned { tensor: String, ne0: u64, dtype: QuantType, block_elems: u64 },

    #[error("tensor `{tensor}` starts at byte {offset}, which is not a multiple of the alignment {alignment_bytes}")]
    MisalignedTensor { tensor: String, offset: u64, alignment_bytes: u64 },

    #[error("tensor `{tensor}` needs {len_bytes} bytes at byte {offset}, past the end of the {file_bytes}-byte file")]
    TensorOutOfRange { tensor: String, offset: u64, len_bytes: u64, file_bytes: u64 },

    #[error(
        "tensor `{tensor}` has its data at byte {offset_bytes} of the data section, but the tensors before it end at \
         {expected_bytes}: tensor data must follow in order without gaps or overlaps (a changed type or shape?)"
    )]
    TensorLayout { tensor: String, offset_bytes: u64, expected_bytes: u64 },

    #[error(
        "the file goes on {extra_bytes} bytes past the data of its last tensor `{tensor}`: a tensor's type or shape \
         was changed, or the file was damaged"
    )]
    TrailingBytes { tensor: String, extra_bytes: u64 },

    #[error("tensor `{tensor}` {problem}")]
    BadTensor { tensor: String, problem: String },

    #[error("metadata key `{key}` is missing")]
    MissingKey { key: String },

    #[error("metadata key `{key}` is {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: String },

    #[error("metadata key `{key}` holds {value}, which does not fit in {target}")]
    IntegerOutOfRange { key: String, value: i128, target: &'static str },

    #[error("metadata key `{key}` has {found} entries, expected one per layer ({expected})")]
    LayerCount { key: String, expected: usize, found: usize },

    #[error("tensor `{name}` is not in the file")]
    MissingTensor { name: String },

    #[error("could not read {field}: {source}")]
    Source { field: String, source: SourceError },
}
