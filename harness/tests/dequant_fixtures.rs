//! The committed dequantization fixtures (`golden/dequant/`, made by `golden/scripts/make_dequant_fixtures.py`
//! with gguf-py, whose dequantizers are bit-identical to ggml's) are intact, and candle-core — the CPU reference
//! of the op registry — dequantizes every one of them to exactly gguf-py's values: same bits for every finite
//! value (signed zeros included), NaN where gguf-py has NaN (payloads are not part of the contract).
//!
//! The GPU side runs in `ferrogem check ops --filter '^dequant'`, whose NMSE verdict cannot see the sign of a zero;
//! the GPU tests here gather every fixture through our `get_rows` kernel (full and downlevel) and compare bits too.
//! A GPU test never skips: no adapter fails it (CI has lavapipe).

use candle_core::Device;
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use ferrogem::gpu::{Category, Context, ContextOptions};
use ferrogem::ops::get_rows::get_rows;
use ferrogem::ops::mul_mat::WEIGHT_TYPES;
use ferrogem::quant::QuantType;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::PathBuf;

/// Every type the fixtures must cover, with candle's name for it.
const TYPES: [(&str, GgmlDType); 12] = [
    ("f16", GgmlDType::F16),
    ("bf16", GgmlDType::BF16),
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q8_0", GgmlDType::Q8_0),
    ("q2_k", GgmlDType::Q2K),
    ("q3_k", GgmlDType::Q3K),
    ("q4_k", GgmlDType::Q4K),
    ("q5_k", GgmlDType::Q5K),
    ("q6_k", GgmlDType::Q6K),
];

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/dequant"))
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("read golden/dequant/manifest.json");
    serde_json::from_str(&text).expect("parse manifest.json")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("read golden/dequant/{name}: {e}"))
}

fn entry<'a>(manifest: &'a serde_json::Value, ty: &str) -> (&'a serde_json::Value, usize, usize) {
    let e = &manifest[ty];
    let dim = |key: &str| e[key].as_u64().unwrap_or_else(|| panic!("manifest {ty}.{key}")) as usize;
    (e, dim("rows"), dim("row_elems"))
}

/// candle wants its blocks aligned to their f16 fields; a copy into u64 storage guarantees that.
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// The first element where `got` and `want` differ (bits, or NaN parity), and how many differ.
fn first_difference(got: &[f32], want: &[f32]) -> Option<(usize, usize)> {
    let differs = |(g, w): (&f32, &f32)| {
        if g.is_nan() || w.is_nan() { g.is_nan() != w.is_nan() } else { g.to_bits() != w.to_bits() }
    };
    let first = got.iter().zip(want).position(differs)?;
    Some((first, got.iter().zip(want).filter(|&p| differs(p)).count()))
}

#[test]
fn manifest_lists_every_type_with_matching_hashes_and_sizes() {
    let manifest = manifest();
    let listed = manifest.as_object().expect("manifest is an object").len();
    assert_eq!(listed, TYPES.len(), "manifest types");
    for (ty, _) in TYPES {
        let (e, rows, row_elems) = entry(&manifest, ty);
        for (ext, key) in [("blocks", "blocks"), ("f32", "f32")] {
            let bytes = read(&format!("{ty}.{ext}"));
            assert_eq!(bytes.len() as u64, e[format!("{key}_bytes")].as_u64().unwrap(), "{ty}.{ext} size");
            let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(sha, e[format!("{key}_sha256")].as_str().unwrap(), "{ty}.{ext} sha256");
        }
        assert_eq!(read(&format!("{ty}.f32")).len(), rows * row_elems * 4, "{ty}.f32 holds rows × row_elems f32");
    }
}

#[test]
fn candle_dequantizes_every_fixture_bit_exactly_like_gguf_py() {
    let manifest = manifest();
    let mut failures = Vec::new();
    for (ty, dtype) in TYPES {
        let (_, rows, row_elems) = entry(&manifest, ty);
        let blocks = read(&format!("{ty}.blocks"));
        let want: Vec<f32> = bytemuck::pod_collect_to_vec(&read(&format!("{ty}.f32")));
        let expected_blocks_bytes = rows * row_elems / dtype.block_size() * dtype.type_size();
        assert_eq!(blocks.len(), expected_blocks_bytes, "{ty}.blocks size for {rows}×{row_elems}");

        let words = aligned(&blocks);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..blocks.len()];
        let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, dtype).expect("QStorage");
        let got: Vec<f32> = QTensor::new(storage, (rows, row_elems))
            .and_then(|t| t.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap_or_else(|e| panic!("{ty}: candle dequantize: {e}"));
        assert_eq!(got.len(), want.len(), "{ty}: element count");
        if let Some((i, n)) = first_difference(&got, &want) {
            failures.push(format!(
                "{ty}: {n} of {} values differ; first at {i} (row {}, col {}): candle {:e} ({:#010x}), gguf-py {:e} ({:#010x})",
                want.len(),
                i / row_elems,
                i % row_elems,
                got[i],
                got[i].to_bits(),
                want[i],
                want[i].to_bits()
            ));
        }
    }
    assert!(failures.is_empty(), "candle differs from gguf-py:\n{}", failures.join("\n"));
}

/// Gathers every fixture whose type has a WGSL block reader (all but Q2_K and Q3_K today) and compares bits.
fn gpu_gather_matches_gguf_py(downlevel: bool) {
    let options = ContextOptions { downlevel, ..ContextOptions::from_env() };
    let ctx =
        Context::new_blocking(options).unwrap_or_else(|e| panic!("GPU test needs an adapter and found none: {e}"));
    let manifest = manifest();
    let (mut failures, mut checked) = (Vec::new(), Vec::new());
    for (ty, _) in TYPES {
        let (e, rows, row_elems) = entry(&manifest, ty);
        let ttype = QuantType::from_u32(e["ggml_type"].as_u64().unwrap() as u32).expect("a known ggml type");
        if !WEIGHT_TYPES.contains(&ttype) {
            continue;
        }
        let want: Vec<f32> = bytemuck::pod_collect_to_vec(&read(&format!("{ty}.f32")));
        let table = ctx.upload("table", Category::Weights, &read(&format!("{ty}.blocks"))).unwrap();
        let ids: Vec<u32> = (0..rows as u32).collect();
        let gids = ctx.upload("ids", Category::Scratch, bytemuck::cast_slice(&ids)).unwrap();
        let dst = ctx.alloc("dst", Category::Scratch, want.len() as u64 * 4, None).unwrap();
        let mut batch = ctx.batch(ty);
        get_rows(&mut batch, &table, ttype, row_elems as u32, rows as u32, &gids, rows as u32, &dst)
            .unwrap_or_else(|e| panic!("{ty}: get_rows: {e}"));
        batch.submit().unwrap();
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&pollster::block_on(ctx.read_bytes(&dst)).unwrap());
        if let Some((i, n)) = first_difference(&got, &want) {
            failures.push(format!(
                "{ty}: {n} of {} values differ; first at {i} (row {}, col {}): GPU {:e} ({:#010x}), gguf-py {:e} ({:#010x})",
                want.len(),
                i / row_elems,
                i % row_elems,
                got[i],
                got[i].to_bits(),
                want[i],
                want[i].to_bits()
            ));
        }
        checked.push(ty);
    }
    assert!(failures.is_empty(), "GPU (downlevel={downlevel}) differs from gguf-py:\n{}", failures.join("\n"));
    assert!(checked.len() >= 10, "only {checked:?} were gathered");
}

#[test]
fn gpu_gather_is_bit_exact_with_gguf_py() {
    gpu_gather_matches_gguf_py(false);
}

#[test]
fn gpu_gather_is_bit_exact_with_gguf_py_downlevel() {
    gpu_gather_matches_gguf_py(true);
}

#[test]
fn the_comparison_sees_signed_zeros_and_nan_parity() {
    assert_eq!(first_difference(&[1.0, 0.0], &[1.0, -0.0]), Some((1, 1)));
    assert_eq!(first_difference(&[f32::NAN, 2.0], &[-f32::NAN, 2.0]), None);
    assert_eq!(first_difference(&[f32::NAN, 2.0, 3.0], &[1.0, 2.0, 3.5]), Some((0, 2)));
}
