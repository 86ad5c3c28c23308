//! GGUF reader: round trips through the writer, the golden fixtures, typed accessors and sources without
//! `as_slice`. Hostile input is in `gguf_hostile.rs`, random corruption in `gguf_mutation.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferrogem::gguf::{Array, GgufError, GgufFile, GgufWriter, Value};
use ferrogem::quant::QuantType;
use ferrogem::source::{ByteSource, MmapSource, SourceError};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures")
}

fn read(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::read(bytes)
}

/// A source without `as_slice`, like OPFS or HTTP: exercises the reader's windowed path and copied tensor bytes.
struct Unmapped(Vec<u8>);

impl ByteSource for Unmapped {
    fn len_bytes(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.0.as_slice().read_at(offset, buf)
    }
}

/// One entry of every value type, including empty, nested and mixed nested arrays.
fn every_value_type() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(0xAB)),
        ("t.i8", Value::I8(-7)),
        ("t.u16", Value::U16(0xBEEF)),
        ("t.i16", Value::I16(-30_000)),
        ("t.u32", Value::U32(0xDEAD_BEEF)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(-1.5e-3)),
        ("t.bool", Value::Bool(true)),
        ("t.string", Value::String("héllo ▁world".into())),
        ("t.empty_string", Value::String(String::new())),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("t.array.u8", Value::Array(Array::U8(vec![1, 2, 255]))),
        ("t.array.i8", Value::Array(Array::I8(vec![-1, 0, 1]))),
        ("t.array.u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("t.array.i16", Value::Array(Array::I16(vec![-2, 2]))),
        ("t.array.u32", Value::Array(Array::U32(vec![7; 5]))),
        ("t.array.i32", Value::Array(Array::I32(vec![256, 256, 512]))),
        ("t.array.f32", Value::Array(Array::F32(vec![0.5, -0.25]))),
        ("t.array.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        ("t.array.string", Value::Array(Array::String(vec!["a".into(), String::new(), "ccc".into()]))),
        ("t.array.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("t.array.i64", Value::Array(Array::I64(vec![i64::MIN, i64::MAX]))),
        ("t.array.f64", Value::Array(Array::F64(vec![1e300, -0.0]))),
        ("t.array.empty", Value::Array(Array::F32(vec![]))),
        (
            "t.array.nested",
            Value::Array(Array::Array(vec![
                Array::U8(vec![1]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::Bool(vec![false]), Array::Array(vec![])]),
            ])),
        ),
    ]
}

/// Tensors of several types and ranks, with sizes that do and do not fill an alignment unit.
fn sample_tensors() -> Vec<(&'static str, Vec<u64>, QuantType)> {
    vec![
        ("f32.matrix", vec![3, 2], QuantType::F32),
        ("q8_0.row", vec![64], QuantType::Q8_0),
        ("q4k.matrix", vec![256, 2], QuantType::Q4K),
        ("i8.scalar", vec![], QuantType::I8),
        ("f16.4d", vec![2, 1, 3, 1], QuantType::F16),
        ("empty", vec![0, 4], QuantType::F32),
    ]
}

/// Deterministic, distinct bytes for each tensor so that a misplaced tensor is noticed.
fn tensor_data(seed: u8, len: u64) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn sample_writer(version: u32, alignment: Option<u32>) -> GgufWriter {
    let mut writer = GgufWriter::new(version);
    if let Some(alignment) = alignment {
        writer.add_metadata("general.alignment", Value::U32(alignment));
    }
    for (key, value) in every_value_type() {
        writer.add_metadata(key, value);
    }
    for (i, (name, dims, dtype)) in sample_tensors().into_iter().enumerate() {
        let elems = dims.iter().product();
        writer.add_tensor(name, &dims, dtype, tensor_data(i as u8, dtype.bytes_for(elems).unwrap()));
    }
    writer
}

fn check_round_trip(version: u32, alignment: Option<u32>) {
    let bytes = sample_writer(version, alignment).to_bytes().unwrap();
    let file = read(&bytes).unwrap();
    let alignment_bytes = alignment.map_or(32, u64::from);
    assert_eq!(file.version(), version);
    assert_eq!(file.alignment_bytes(), alignment_bytes);
    assert_eq!(file.data_offset_bytes() % alignment_bytes, 0);

    let expected: Vec<_> =
        alignment.map(|a| ("general.alignment", Value::U32(a))).into_iter().chain(every_value_type()).collect();
    let found: Vec<_> = file.metadata().map(|(k, v)| (k, v.clone())).collect();
    assert_eq!(found, expected);

    assert_eq!(file.tensors().len(), sample_tensors().len());
    for (i, (info, (name, dims, dtype))) in file.tensors().iter().zip(sample_tensors()).enumerate() {
        assert_eq!((info.name(), info.dims(), info.dtype()), (name, dims.as_slice(), dtype));
        assert_eq!(info.offset_bytes() % alignment_bytes, 0, "{name}");
        assert_eq!(file.tensor(name), Some(info));
        assert_eq!(*info.bytes(bytes.as_slice()).unwrap(), tensor_data(i as u8, info.size_bytes()));
    }
    // The writer reproduces what it read byte for byte.
    assert_eq!(rewrite(&bytes, &file), bytes);
}

/// Writes `file` (read from `bytes`) back out through the writer.
fn rewrite(bytes: &[u8], file: &GgufFile) -> Vec<u8> {
    let mut writer = GgufWriter::new(file.version());
    for (key, value) in file.metadata() {
        writer.add_metadata(key, value.clone());
    }
    for info in file.tensors() {
        writer.add_tensor(info.name(), info.dims(), info.dtype(), info.bytes(bytes).unwrap().into_owned());
    }
    writer.to_bytes().unwrap()
}

#[test]
fn round_trip_v2_alignment_32() {
    check_round_trip(2, None);
}

#[test]
fn round_trip_v3_alignment_32() {
    check_round_trip(3, Some(32));
}

#[test]
fn round_trip_v2_alignment_64() {
    check_round_trip(2, Some(64));
}

#[test]
fn round_trip_v3_alignment_64() {
    check_round_trip(3, Some(64));
}

#[test]
fn alignment_of_any_integer_type_is_accepted() {
    let mut writer = GgufWriter::new(3);
    writer.add_metadata("general.alignment", Value::U64(256));
    writer.add_tensor("t", &[4], QuantType::F32, vec![0; 16]);
    let file = read(&writer.to_bytes().unwrap()).unwrap();
    assert_eq!(file.alignment_bytes(), 256);
    assert_eq!(file.data_offset_bytes() % 256, 0);
}

#[test]
fn golden_fixtures_parse_with_expected_tensor_types() {
    use QuantType::*;
    // gemma4 counts are the README's; gemma3 counts were measured (the README: "the same pattern without F16").
    let expected: [(&str, &[(QuantType, usize)]); 12] = [
        ("tiny-gemma4-f32", &[(F32, 102)]),
        ("tiny-gemma4-Q8_0", &[(F16, 6), (F32, 50), (Q8_0, 46)]),
        ("tiny-gemma4-Q6_K", &[(F16, 6), (F32, 50), (Q6K, 8), (Q8_0, 38)]),
        ("tiny-gemma4-Q5_K_M", &[(F16, 6), (F32, 50), (Q5K, 6), (Q5_1, 34), (Q6K, 2), (Q8_0, 4)]),
        ("tiny-gemma4-Q4_K_M", &[(F16, 6), (F32, 50), (Q4K, 6), (Q5_0, 34), (Q6K, 2), (Q8_0, 4)]),
        ("tiny-gemma4-Q4_0", &[(F16, 6), (F32, 50), (Q4_0, 44), (Q8_0, 2)]),
        ("tiny-gemma3-f32", &[(F32, 80)]),
        ("tiny-gemma3-Q8_0", &[(F32, 37), (Q8_0, 43)]),
        ("tiny-gemma3-Q6_K", &[(F32, 37), (Q6K, 6), (Q8_0, 37)]),
        ("tiny-gemma3-Q5_K_M", &[(F32, 37), (Q5K, 4), (Q5_1, 34), (Q6K, 2), (Q8_0, 3)]),
        ("tiny-gemma3-Q4_K_M", &[(F32, 37), (Q4K, 4), (Q5_0, 34), (Q6K, 2), (Q8_0, 3)]),
        ("tiny-gemma3-Q4_0", &[(F32, 37), (Q4_0, 42), (Q8_0, 1)]),
    ];
    for (name, counts) in expected {
        let source = MmapSource::open(fixtures_dir().join(format!("{name}.gguf"))).unwrap();
        let file = GgufFile::read(&source).unwrap();
        let architecture = name.split('-').nth(1).unwrap();
        assert_eq!(file.architecture().unwrap(), architecture, "{name}");
        assert_eq!(file.version(), 3, "{name}");
        let mut found = BTreeMap::new();
        for info in file.tensors() {
            *found.entry(info.dtype().name()).or_insert(0) += 1;
            let bytes = info.bytes(&source).unwrap();
            assert_eq!(bytes.len() as u64, info.size_bytes(), "{name}: {}", info.name());
            assert!(
                info.offset_bytes() >= file.data_offset_bytes()
                    && info.offset_bytes() + info.size_bytes() <= source.len_bytes()
            );
        }
        let expected: BTreeMap<_, _> = counts.iter().map(|&(dtype, n)| (dtype.name(), n)).collect();
        assert_eq!(found, expected, "{name}");
        assert_eq!(file.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 512, "{name}");
    }
}

#[test]
fn golden_gemma4_per_layer_keys() {
    let source = MmapSource::open(fixtures_dir().join("tiny-gemma4-Q4_K_M.gguf")).unwrap();
    let file = GgufFile::read(&source).unwrap();
    let n_layers = file.get_u32("gemma4.block_count").unwrap() as usize;
    assert_eq!(n_layers, 6);
    // README: layers typed s,s,s,f,s,f; double-wide MLP (256 -> 512) on the 2 KV-shared layers.
    assert_eq!(file.get_u32_per_layer("gemma4.feed_forward_length", n_layers).unwrap(), [256, 256, 256, 256, 512, 512]);
    assert_eq!(file.get_u32_per_layer("gemma4.attention.head_count_kv", n_layers).unwrap(), [2; 6]);
    assert_eq!(
        file.get_bool_array("gemma4.attention.sliding_window_pattern").unwrap(),
        [true, true, true, false, true, false]
    );
    assert_eq!(file.get_f32("gemma4.final_logit_softcapping").unwrap(), 30.0);
    assert!(file.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(file.require_tensor("blk.5.ffn_down.weight").is_ok());
}

#[test]
fn windowed_and_mapped_sources_read_the_same() {
    let path = fixtures_dir().join("tiny-gemma4-Q4_0.gguf");
    let mapped = MmapSource::open(&path).unwrap();
    let unmapped = Unmapped(std::fs::read(&path).unwrap());
    let (a, b) = (GgufFile::read(&mapped).unwrap(), GgufFile::read(&unmapped).unwrap());
    assert!(a.metadata().eq(b.metadata()));
    assert_eq!(a.tensors(), b.tensors());
    for info in a.tensors() {
        assert_eq!(info.bytes(&mapped).unwrap(), info.bytes(&unmapped).unwrap());
    }
    // A string array larger than the reader's 64 KiB window.
    let tokens: Vec<String> = (0..20_000).map(|i| format!("token-{i}")).collect();
    let mut writer = GgufWriter::new(3);
    writer.add_metadata("big", Value::Array(Array::String(tokens.clone())));
    let file = GgufFile::read(&Unmapped(writer.to_bytes().unwrap())).unwrap();
    assert_eq!(file.get_str_array("big").unwrap(), tokens);
}

#[test]
fn accessors_accept_every_integer_width_that_fits() {
    let mut writer = GgufWriter::new(3);
    writer
        .add_metadata("general.architecture", Value::String("gemma4".into()))
        .add_metadata("u8", Value::U8(7))
        .add_metadata("i64", Value::I64(1 << 31))
        .add_metadata("negative", Value::I32(-1))
        .add_metadata("huge", Value::U64(1 << 32))
        .add_metadata("f64", Value::F64(0.5))
        .add_metadata("per_layer.u16", Value::Array(Array::U16(vec![1, 2, 3])))
        .add_metadata("per_layer.negative", Value::Array(Array::I32(vec![1, -2, 3])))
        .add_metadata("per_layer.strings", Value::Array(Array::String(vec![])));
    let file = read(&writer.to_bytes().unwrap()).unwrap();
    assert_eq!(file.architecture().unwrap(), "gemma4");
    assert_eq!(file.get_u32("u8").unwrap(), 7);
    assert_eq!(file.get_u32("i64").unwrap(), 1 << 31);
    assert_eq!(file.get_f32("f64").unwrap(), 0.5);
    assert_eq!(file.get_u32_per_layer("u8", 3).unwrap(), [7, 7, 7]);
    assert_eq!(file.get_u32_per_layer("per_layer.u16", 3).unwrap(), [1, 2, 3]);
    assert!(matches!(file.get_array("per_layer.u16"), Ok(Array::U16(v)) if v == &[1, 2, 3]));

    let err = file.get_u32("huge").unwrap_err();
    assert!(
        matches!(&err, GgufError::IntegerOutOfRange { key, value, target: "u32" } if key == "huge" && *value == 1 << 32)
    );
    assert_eq!(err.to_string(), "metadata key `huge` holds 4294967296, which does not fit in u32");
    assert!(matches!(file.get_u32("negative"), Err(GgufError::IntegerOutOfRange { value: -1, .. })));
    assert!(matches!(
        file.get_u32_per_layer("per_layer.negative", 3),
        Err(GgufError::IntegerOutOfRange { value: -2, .. })
    ));
    assert!(matches!(
        file.get_u32_per_layer("per_layer.u16", 4),
        Err(GgufError::LayerCount { expected: 4, found: 3, .. })
    ));
    assert!(matches!(file.get_u32_per_layer("per_layer.strings", 0), Err(GgufError::WrongType { .. })));
}

#[test]
fn accessor_errors_name_the_key() {
    let mut writer = GgufWriter::new(3);
    writer.add_metadata("name", Value::String("x".into())).add_metadata("count", Value::U32(1));
    let file = read(&writer.to_bytes().unwrap()).unwrap();
    let err = file.get_u32("missing.key").unwrap_err();
    assert!(matches!(&err, GgufError::MissingKey { key } if key == "missing.key"));
    assert_eq!(err.to_string(), "metadata key `missing.key` is missing");
    let err = file.get_u32("name").unwrap_err();
    assert_eq!(err.to_string(), "metadata key `name` is string, expected an integer");
    assert!(matches!(file.architecture(), Err(GgufError::MissingKey { .. })));
    for err in [
        file.get_f32("name").unwrap_err(),
        file.get_bool("name").unwrap_err(),
        file.get_str("count").unwrap_err(),
        file.get_array("count").unwrap_err(),
        file.get_str_array("count").unwrap_err(),
        file.get_bool_array("name").unwrap_err(),
    ] {
        assert!(matches!(err, GgufError::WrongType { .. }), "{err}");
    }
    let err = file.require_tensor("output.weight").unwrap_err();
    assert_eq!(err.to_string(), "tensor `output.weight` is not in the file");
}
