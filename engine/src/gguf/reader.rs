//! Parsing: header, metadata and tensor infos. Tensor bytes are not read here (see [`TensorInfo::bytes`]).
//!
//! Every count and length read from the file is checked against a limit and against the bytes left before
//! anything is allocated, and every offset and size is computed with checked arithmetic.

use std::collections::HashMap;

use super::cursor::{Cursor, Field};
use super::value::{Array, Value, ValueType};
use super::{GgufError, GgufFile, TensorInfo, alignment_from_metadata};
use crate::quant::QuantType;
use crate::source::ByteSource;

pub(crate) const MAGIC: [u8; 4] = *b"GGUF";
pub const SUPPORTED_VERSIONS: [u32; 2] = [2, 3];

/// Metadata keys and tensor names: real ones are under 100 bytes.
pub const MAX_KEY_BYTES: u64 = 1 << 20;
/// String values: the longest real ones are chat templates of a few tens of KiB.
pub const MAX_STRING_BYTES: u64 = 64 << 20;
/// Elements in one array: 32 times the largest real array (Gemma 4's ~515k tokenizer merges).
pub const MAX_ARRAY_ELEMS: u64 = 1 << 24;
/// Arrays of arrays: real files nest at most twice; the limit bounds recursion.
pub const MAX_ARRAY_DEPTH: u32 = 16;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;

/// Smallest metadata entry: empty key (u64 length), type (u32), one u8 value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest tensor info: empty name (u64 length), n_dims = 0 (u32), type (u32), offset (u64).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// A tensor info as stored: its offset is relative to the data section, not yet checked.
struct RawTensorInfo {
    name: String,
    dims: Vec<u64>,
    dtype: QuantType,
    relative_offset: u64,
}

pub(super) fn parse<S: ByteSource + ?Sized>(source: &S) -> Result<GgufFile, GgufError> {
    let mut cursor = Cursor::new(source);
    let magic = cursor.take(MAGIC.len(), Field::Header("magic"))?;
    if magic != MAGIC {
        let mut found = [0; 4];
        found.copy_from_slice(magic);
        return Err(GgufError::BadMagic { found });
    }
    let version: u32 = cursor.scalar(Field::Header("version"))?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let tensor_count_offset = cursor.pos();
    let tensor_count: u64 = cursor.scalar(Field::Header("tensor_count"))?;
    let kv_count_offset = cursor.pos();
    let kv_count: u64 = cursor.scalar(Field::Header("metadata_kv_count"))?;

    cursor.check_count(kv_count, MIN_KV_BYTES, Field::Header("metadata_kv_count"), kv_count_offset)?;
    let (metadata, key_index) = read_metadata(&mut cursor, kv_count)?;

    cursor.check_count(tensor_count, MIN_TENSOR_INFO_BYTES, Field::Header("tensor_count"), tensor_count_offset)?;
    let (raw_tensors, tensor_index) = read_tensor_infos(&mut cursor, tensor_count)?;

    let alignment_bytes = alignment_from_metadata(key_index.get(super::ALIGNMENT_KEY).map(|&i| &metadata[i].1))?;
    let data_offset_bytes = cursor
        .pos()
        .checked_next_multiple_of(alignment_bytes)
        .ok_or_else(|| GgufError::InvalidAlignment { value: alignment_bytes.to_string() })?;
    let tensors = raw_tensors
        .into_iter()
        .map(|raw| place_tensor(raw, data_offset_bytes, alignment_bytes, cursor.len_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    check_layout(&tensors, data_offset_bytes, alignment_bytes, cursor.len_bytes())?;
    Ok(GgufFile { version, alignment_bytes, data_offset_bytes, metadata, key_index, tensors, tensor_index })
}

/// Entries in file order, and the index of each name in them.
type Indexed<T> = (Vec<T>, HashMap<String, usize>);

fn read_metadata<S: ByteSource + ?Sized>(
    cursor: &mut Cursor<'_, S>,
    kv_count: u64,
) -> Result<Indexed<(String, Value)>, GgufError> {
    let mut metadata = Vec::new();
    let mut key_index = HashMap::new();
    for index in 0..kv_count {
        let key_offset = cursor.pos();
        let key = cursor.string(MAX_KEY_BYTES, Field::Key { index })?;
        if key_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key, offset: key_offset });
        }
        let value_type = read_value_type(cursor, Field::ValueType { key: &key })?;
        let value = read_value(cursor, value_type, Field::Value { key: &key })?;
        key_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }
    Ok((metadata, key_index))
}

fn read_value_type<S: ByteSource + ?Sized>(
    cursor: &mut Cursor<'_, S>,
    field: Field<'_>,
) -> Result<ValueType, GgufError> {
    let offset = cursor.pos();
    let type_id: u32 = cursor.scalar(field)?;
    ValueType::from_u32(type_id).ok_or(GgufError::UnknownValueType { field: field.to_string(), offset, type_id })
}

fn read_value<S: ByteSource + ?Sized>(
    cursor: &mut Cursor<'_, S>,
    value_type: ValueType,
    field: Field<'_>,
) -> Result<Value, GgufError> {
    Ok(match value_type {
        ValueType::U8 => Value::U8(cursor.scalar(field)?),
        ValueType::I8 => Value::I8(cursor.scalar(field)?),
        ValueType::U16 => Value::U16(cursor.scalar(field)?),
        ValueType::I16 => Value::I16(cursor.scalar(field)?),
        ValueType::U32 => Value::U32(cursor.scalar(field)?),
        ValueType::I32 => Value::I32(cursor.scalar(field)?),
        ValueType::F32 => Value::F32(cursor.scalar(field)?),
        ValueType::Bool => Value::Bool(cursor.bool(field)?),
        ValueType::String => Value::String(cursor.string(MAX_STRING_BYTES, field)?),
        ValueType::Array => Value::Array(read_array(cursor, field, 1)?),
        ValueType::U64 => Value::U64(cursor.scalar(field)?),
        ValueType::I64 => Value::I64(cursor.scalar(field)?),
        ValueType::F64 => Value::F64(cursor.scalar(field)?),
    })
}

/// An array body (element type, count, elements); `depth` is 1 for an array that is not inside another.
fn read_array<S: ByteSource + ?Sized>(
    cursor: &mut Cursor<'_, S>,
    field: Field<'_>,
    depth: u32,
) -> Result<Array, GgufError> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            field: field.to_string(),
            offset: cursor.pos(),
            max_depth: MAX_ARRAY_DEPTH,
        });
    }
    let elem_type = read_value_type(cursor, field)?;
    let count_offset = cursor.pos();
    let count: u64 = cursor.scalar(field)?;
    if count > MAX_ARRAY_ELEMS {
        return Err(GgufError::ArrayTooLong {
            field: field.to_string(),
            offset: count_offset,
            count,
            max_elems: MAX_ARRAY_ELEMS,
        });
    }
    cursor.check_count(count, elem_type.min_encoded_bytes(), field, count_offset)?;
    // Below MAX_ARRAY_ELEMS, so it fits in usize on every target.
    let n = count as usize;
    Ok(match elem_type {
        ValueType::U8 => Array::U8(cursor.scalars(n, field)?),
        ValueType::I8 => Array::I8(cursor.scalars(n, field)?),
        ValueType::U16 => Array::U16(cursor.scalars(n, field)?),
        ValueType::I16 => Array::I16(cursor.scalars(n, field)?),
        ValueType::U32 => Array::U32(cursor.scalars(n, field)?),
        ValueType::I32 => Array::I32(cursor.scalars(n, field)?),
        ValueType::F32 => Array::F32(cursor.scalars(n, field)?),
        ValueType::Bool => Array::Bool((0..n).map(|_| cursor.bool(field)).collect::<Result<_, _>>()?),
        ValueType::String => {
            Array::String((0..n).map(|_| cursor.string(MAX_STRING_BYTES, field)).collect::<Result<_, _>>()?)
        }
        ValueType::Array => {
            Array::Array((0..n).map(|_| read_array(cursor, field, depth + 1)).collect::<Result<_, _>>()?)
        }
        ValueType::U64 => Array::U64(cursor.scalars(n, field)?),
        ValueType::I64 => Array::I64(cursor.scalars(n, field)?),
        ValueType::F64 => Array::F64(cursor.scalars(n, field)?),
    })
}

fn read_tensor_infos<S: ByteSource + ?Sized>(
    cursor: &mut Cursor<'_, S>,
    tensor_count: u64,
) -> Result<Indexed<RawTensorInfo>, GgufError> {
    let mut tensors = Vec::new();
    let mut tensor_index = HashMap::new();
    for index in 0..tensor_count {
        let name_offset = cursor.pos();
        let name = cursor.string(MAX_KEY_BYTES, Field::Tensor { index, name: "", part: "name" })?;
        if tensor_index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor { name, offset: name_offset });
        }
        let field = |part| Field::Tensor { index, name: &name, part };

        let n_dims_offset = cursor.pos();
        let n_dims: u32 = cursor.scalar(field("n_dims"))?;
        if n_dims > MAX_DIMS {
            let field = field("n_dims").to_string();
            return Err(GgufError::TooManyDims { field, offset: n_dims_offset, n_dims, max_dims: MAX_DIMS });
        }
        let dims = cursor.scalars(n_dims as usize, field("ne"))?;

        let type_offset = cursor.pos();
        let type_id: u32 = cursor.scalar(field("type"))?;
        let dtype = QuantType::from_u32(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            field: field("type").to_string(),
            offset: type_offset,
            type_id,
        })?;
        let relative_offset = cursor.scalar(field("offset"))?;
        tensor_index.insert(name.clone(), tensors.len());
        tensors.push(RawTensorInfo { name, dims, dtype, relative_offset });
    }
    Ok((tensors, tensor_index))
}

/// As llama.cpp's loader requires: the tensors' data follow one another in the order of their infos, each padded to
/// the alignment. So no tensor's bytes overlap another's, and a tensor whose type or shape was changed (a different
/// size) moves every offset after it and is caught. The last one is held to the file's end: its data (padded at
/// most to the alignment, as writers leave it) ends the file.
fn check_layout(
    tensors: &[TensorInfo],
    data_offset_bytes: u64,
    alignment_bytes: u64,
    file_bytes: u64,
) -> Result<(), GgufError> {
    let mut expected_bytes = 0u64;
    for t in tensors {
        let offset_bytes = t.offset_bytes() - data_offset_bytes;
        if offset_bytes != expected_bytes {
            return Err(GgufError::TensorLayout { tensor: t.name().to_owned(), offset_bytes, expected_bytes });
        }
        // place_tensor checked that the tensor ends inside the file, so neither sum overflows.
        expected_bytes += t.size_bytes().next_multiple_of(alignment_bytes);
    }
    if let Some(last) = tensors.last()
        && file_bytes > data_offset_bytes + expected_bytes
    {
        return Err(GgufError::TrailingBytes {
            tensor: last.name().to_owned(),
            extra_bytes: file_bytes - data_offset_bytes - expected_bytes,
        });
    }
    Ok(())
}

/// Sizes a tensor and checks that its bytes are aligned and inside the file.
fn place_tensor(
    raw: RawTensorInfo,
    data_offset_bytes: u64,
    alignment_bytes: u64,
    file_bytes: u64,
) -> Result<TensorInfo, GgufError> {
    let RawTensorInfo { name, dims, dtype, relative_offset } = raw;
    let Some(elems) = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)) else {
        return Err(GgufError::ShapeOverflow { tensor: name, dims, dtype });
    };
    // ggml stores whole blocks per row; a scalar (no dims) is one row of one element.
    let ne0 = dims.first().copied().unwrap_or(1);
    if !ne0.is_multiple_of(dtype.block_elems()) {
        return Err(GgufError::RowNotBlockAligned { tensor: name, ne0, dtype, block_elems: dtype.block_elems() });
    }
    let Some(size_bytes) = dtype.bytes_for(elems) else {
        return Err(GgufError::ShapeOverflow { tensor: name, dims, dtype });
    };
    let offset_bytes = data_offset_bytes.saturating_add(relative_offset);
    if offset_bytes.checked_add(size_bytes).is_none_or(|end| end > file_bytes) {
        return Err(GgufError::TensorOutOfRange {
            tensor: name,
            offset: offset_bytes,
            len_bytes: size_bytes,
            file_bytes,
        });
    }
    if !offset_bytes.is_multiple_of(alignment_bytes) {
        return Err(GgufError::MisalignedTensor { tensor: name, offset: offset_bytes, alignment_bytes });
    }
    Ok(TensorInfo { name, dims, dtype, elems, offset_bytes, size_bytes })
}
