//! GGUF reader on hostile input: one test per kind of corruption, each asserting the specific error variant
//! (and, for a few, the exact message). Files are built with the writer and then patched by hand.

use ferrogem::gguf::{Array, GgufError, GgufFile, GgufWriter, Value};
use ferrogem::quant::QuantType;
use ferrogem::source::SourceError;

fn read(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::read(bytes)
}

/// One string key, one bool key and one tensor: small enough to patch by hand.
fn small_file() -> Vec<u8> {
    let mut writer = GgufWriter::new(3);
    writer
        .add_metadata("general.architecture", Value::String("gemma4".into()))
        .add_metadata("flag", Value::Bool(true))
        .add_tensor("weight", &[8], QuantType::F32, vec![0; 32]);
    writer.to_bytes().unwrap()
}

fn position(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).expect("pattern in file")
}

fn patched(mut bytes: Vec<u8>, at: usize, new: &[u8]) -> Vec<u8> {
    bytes[at..at + new.len()].copy_from_slice(new);
    bytes
}

/// Offset of the u64 length that precedes `text` (a key, string value or tensor name).
fn length_field(bytes: &[u8], text: &str) -> usize {
    let mut needle = (text.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(text.as_bytes());
    position(bytes, &needle)
}

/// Offset of the type field of the tensor named `name` (after its name, n_dims and dims).
fn tensor_type_field(bytes: &[u8], name: &str, n_dims: usize) -> usize {
    length_field(bytes, name) + 8 + name.len() + 4 + 8 * n_dims
}

#[test]
fn bad_magic() {
    let bytes = patched(small_file(), 0, b"GGUX");
    assert!(matches!(read(&bytes), Err(GgufError::BadMagic { found }) if &found == b"GGUX"));
}

#[test]
fn version_1_is_unsupported() {
    let err = read(&patched(small_file(), 4, &1u32.to_le_bytes())).unwrap_err();
    assert!(matches!(err, GgufError::UnsupportedVersion { version: 1 }));
}

#[test]
fn big_endian_and_future_versions_are_unsupported() {
    for version in [3u32.swap_bytes(), 4, u32::MAX] {
        let err = read(&patched(small_file(), 4, &version.to_le_bytes())).unwrap_err();
        assert!(matches!(err, GgufError::UnsupportedVersion { version: v } if v == version));
    }
}

#[test]
fn empty_file_is_truncated_magic() {
    let err = read(&[]).unwrap_err();
    assert!(
        matches!(&err, GgufError::Truncated { field, offset: 0, needed_bytes: 4, remaining_bytes: 0 } if field == "header.magic")
    );
}

#[test]
fn truncated_header() {
    let err = read(&small_file()[..10]).unwrap_err();
    assert_eq!(err.to_string(), "truncated at byte 8 reading header.tensor_count: needs 8 bytes, 2 remain");
}

#[test]
fn truncated_metadata_value() {
    let bytes = small_file();
    let text_at = length_field(&bytes, "gemma4") + 8;
    let err = read(&bytes[..text_at + 3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "truncated at byte {text_at} reading the value of metadata key `general.architecture`: needs 6 bytes, 3 remain"
        )
    );
}

#[test]
fn truncated_tensor_data() {
    let bytes = small_file();
    let err = read(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(matches!(&err, GgufError::TensorOutOfRange { tensor, len_bytes: 32, .. } if tensor == "weight"), "{err}");
}

#[test]
fn absurd_metadata_count() {
    let err = read(&patched(small_file(), 16, &u64::MAX.to_le_bytes())).unwrap_err();
    assert!(
        matches!(&err, GgufError::CountTooLarge { field, offset: 16, count: u64::MAX, .. } if field == "header.metadata_kv_count"),
        "{err}"
    );
}

#[test]
fn absurd_tensor_count() {
    let err = read(&patched(small_file(), 8, &(1u64 << 40).to_le_bytes())).unwrap_err();
    assert!(
        matches!(&err, GgufError::CountTooLarge { field, offset: 8, .. } if field == "header.tensor_count"),
        "{err}"
    );
}

#[test]
fn key_length_over_limit() {
    let bytes = small_file();
    let at = length_field(&bytes, "flag");
    let err = read(&patched(bytes, at, &(1u64 << 40).to_le_bytes())).unwrap_err();
    assert!(
        matches!(&err, GgufError::StringTooLong { field, len_bytes, .. } if field == "metadata[1].key" && *len_bytes == 1 << 40),
        "{err}"
    );
}

#[test]
fn string_length_past_end() {
    let bytes = small_file();
    let at = length_field(&bytes, "gemma4");
    let err = read(&patched(bytes, at, &100_000u64.to_le_bytes())).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { needed_bytes: 100_000, .. }), "{err}");
}

#[test]
fn string_value_over_limit() {
    let bytes = small_file();
    let at = length_field(&bytes, "gemma4");
    let err = read(&patched(bytes, at, &((64u64 << 20) + 1).to_le_bytes())).unwrap_err();
    assert!(matches!(&err, GgufError::StringTooLong { field, .. } if field.contains("general.architecture")), "{err}");
}

fn file_with_u32_array(len: usize) -> (Vec<u8>, usize) {
    let mut writer = GgufWriter::new(3);
    writer.add_metadata("arr", Value::Array(Array::U32(vec![5; len])));
    let bytes = writer.to_bytes().unwrap();
    let count_at = length_field(&bytes, "arr") + 8 + 3 + 4 + 4;
    (bytes, count_at)
}

#[test]
fn array_longer_than_limit() {
    let (bytes, count_at) = file_with_u32_array(2);
    let err = read(&patched(bytes, count_at, &(1u64 << 40).to_le_bytes())).unwrap_err();
    assert!(matches!(err, GgufError::ArrayTooLong { count: 1099511627776, .. }), "{err}");
}

#[test]
fn array_count_past_end() {
    let (bytes, count_at) = file_with_u32_array(2);
    let err = read(&patched(bytes, count_at, &1000u64.to_le_bytes())).unwrap_err();
    assert!(matches!(err, GgufError::CountTooLarge { count: 1000, needed_bytes: 4000, .. }), "{err}");
}

fn nested(depth: u32) -> Array {
    (1..depth).fold(Array::U8(vec![1]), |inner, _| Array::Array(vec![inner]))
}

#[test]
fn nested_arrays_too_deep() {
    let mut writer = GgufWriter::new(3);
    writer.add_metadata("ok", Value::Array(nested(16)));
    assert!(read(&writer.to_bytes().unwrap()).is_ok());
    writer.add_metadata("deep", Value::Array(nested(17)));
    let err = read(&writer.to_bytes().unwrap()).unwrap_err();
    assert!(
        matches!(&err, GgufError::NestingTooDeep { field, max_depth: 16, .. } if field.contains("`deep`")),
        "{err}"
    );
}

#[test]
fn unknown_value_type() {
    let bytes = small_file();
    let type_at = length_field(&bytes, "flag") + 8 + 4;
    let err = read(&patched(bytes, type_at, &13u32.to_le_bytes())).unwrap_err();
    assert!(
        matches!(&err, GgufError::UnknownValueType { type_id: 13, offset, .. } if *offset == type_at as u64),
        "{err}"
    );
}

#[test]
fn unknown_array_element_type() {
    let (bytes, count_at) = file_with_u32_array(2);
    let err = read(&patched(bytes, count_at - 4, &99u32.to_le_bytes())).unwrap_err();
    assert!(matches!(err, GgufError::UnknownValueType { type_id: 99, .. }), "{err}");
}

#[test]
fn invalid_bool() {
    let bytes = small_file();
    let value_at = length_field(&bytes, "flag") + 8 + 4 + 4;
    let err = read(&patched(bytes, value_at, &[2])).unwrap_err();
    assert!(matches!(err, GgufError::InvalidBool { byte: 2, .. }), "{err}");
}

#[test]
fn unknown_tensor_type() {
    let bytes = small_file();
    let at = tensor_type_field(&bytes, "weight", 1);
    let err = read(&patched(bytes, at, &31u32.to_le_bytes())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("tensor_infos[0].type (tensor `weight`) at byte {at} is ggml type id 31, which ferrogem does not know")
    );
    assert!(matches!(err, GgufError::UnknownTensorType { type_id: 31, .. }));
}

#[test]
fn too_many_dims() {
    let mut writer = GgufWriter::new(3);
    writer.add_tensor("t", &[1, 1, 1, 1, 1], QuantType::F32, vec![0; 4]);
    let err = read(&writer.to_bytes().unwrap()).unwrap_err();
    assert!(matches!(err, GgufError::TooManyDims { n_dims: 5, max_dims: 4, .. }), "{err}");
}

#[test]
fn tensor_offset_out_of_range() {
    let bytes = small_file();
    let offset_at = tensor_type_field(&bytes, "weight", 1) + 4;
    for offset in [1u64 << 20, u64::MAX - 31] {
        let err = read(&patched(bytes.clone(), offset_at, &offset.to_le_bytes())).unwrap_err();
        assert!(matches!(&err, GgufError::TensorOutOfRange { tensor, .. } if tensor == "weight"), "{err}");
    }
}

#[test]
fn tensor_offset_misaligned() {
    let mut writer = GgufWriter::new(3);
    writer.add_tensor("weight", &[8], QuantType::F32, vec![0; 32]).add_tensor(
        "last",
        &[8],
        QuantType::F32,
        vec![0; 32],
    );
    let bytes = writer.to_bytes().unwrap();
    let offset_at = tensor_type_field(&bytes, "weight", 1) + 4;
    let err = read(&patched(bytes, offset_at, &4u64.to_le_bytes())).unwrap_err();
    assert!(matches!(err, GgufError::MisalignedTensor { alignment_bytes: 32, .. }), "{err}");
}

#[test]
fn shape_overflow() {
    for dims in [[u64::MAX, 2], [1 << 62, 1]] {
        let mut writer = GgufWriter::new(3);
        writer.add_tensor("t", &dims, QuantType::F32, vec![]);
        let err = read(&writer.to_bytes().unwrap()).unwrap_err();
        assert!(
            matches!(&err, GgufError::ShapeOverflow { tensor, dtype: QuantType::F32, .. } if tensor == "t"),
            "{err}"
        );
    }
}

#[test]
fn row_not_block_aligned() {
    let mut writer = GgufWriter::new(3);
    writer.add_tensor("t", &[33, 32], QuantType::Q4_0, vec![0; 18 * 33]);
    let err = read(&writer.to_bytes().unwrap()).unwrap_err();
    assert!(matches!(err, GgufError::RowNotBlockAligned { ne0: 33, block_elems: 32, .. }), "{err}");
}

#[test]
fn duplicate_key() {
    let mut writer = GgufWriter::new(3);
    writer.add_metadata("k", Value::U8(1)).add_metadata("k", Value::U8(2));
    let err = read(&writer.to_bytes().unwrap()).unwrap_err();
    assert!(matches!(&err, GgufError::DuplicateKey { key, offset: 38 } if key == "k"), "{err}");
}

#[test]
fn duplicate_tensor() {
    let mut writer = GgufWriter::new(3);
    writer.add_tensor("t", &[1], QuantType::F32, vec![0; 4]).add_tensor("t", &[1], QuantType::F32, vec![0; 4]);
    let err = read(&writer.to_bytes().unwrap()).unwrap_err();
    assert!(matches!(&err, GgufError::DuplicateTensor { name, .. } if name == "t"), "{err}");
}

#[test]
fn non_utf8_strings() {
    for (text, field) in
        [("flag", "metadata[1].key"), ("gemma4", "general.architecture"), ("weight", "tensor_infos[0].name")]
    {
        let bytes = small_file();
        let at = length_field(&bytes, text) + 8;
        let err = read(&patched(bytes, at, &[0xFF])).unwrap_err();
        assert!(
            matches!(&err, GgufError::NotUtf8 { field: f, offset } if f.contains(field) && *offset == at as u64 - 8),
            "{err}"
        );
    }
}

#[test]
fn invalid_alignment() {
    for value in [Value::U32(0), Value::U32(48), Value::I32(-32), Value::String("32".into())] {
        let mut writer = GgufWriter::new(3);
        writer.add_metadata("general.alignment", value.clone());
        assert!(matches!(writer.to_bytes(), Err(GgufError::InvalidAlignment { .. })), "writer accepted {value}");
        // Write it under another key of the same length, then rename it, to get it past the writer.
        let mut writer = GgufWriter::new(3);
        writer.add_metadata("general.alignmenX", value.clone());
        let bytes = writer.to_bytes().unwrap();
        let at = position(&bytes, b"general.alignmenX");
        let err = read(&patched(bytes, at, b"general.alignment")).unwrap_err();
        assert!(matches!(&err, GgufError::InvalidAlignment { value: v } if *v == value.to_string()), "{err}");
    }
}

#[test]
fn tensor_bytes_from_a_shorter_source_are_an_error() {
    let bytes = small_file();
    let file = read(&bytes).unwrap();
    let info = file.require_tensor("weight").unwrap();
    let err = info.bytes(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(matches!(err, GgufError::Source { source: SourceError::OutOfRange { .. }, .. }), "{err}");
}
