//! Model files that parse as GGUF but are wrong as models (issue 15): each is one field of a real golden file
//! patched by hand, and each must be refused with a message naming what is wrong, before anything is sized by it.

use ferrogem::gguf::{GgufError, GgufFile};
use ferrogem::models::TextConfig;
use ferrogem::tokenizer::Tokenizer;
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn position(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).expect("pattern in file")
}

/// The byte offset of the value of a u32 metadata key: key text, then the type id (u32), then the value.
fn u32_value_at(bytes: &[u8], key: &str) -> usize {
    let at = position(bytes, key.as_bytes()) + key.len();
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 4, "{key} is not a u32");
    at + 4
}

fn with_u32(mut bytes: Vec<u8>, key: &str, value: u32) -> Vec<u8> {
    let at = u32_value_at(&bytes, key);
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[test]
fn a_huge_block_count_is_refused_before_anything_is_sized_by_it() {
    for value in [1u32 << 31, u32::MAX, 0] {
        let bytes = with_u32(fixture("tiny-gemma3-f32.gguf"), "gemma3.block_count", value);
        let gguf = GgufFile::read(&bytes[..]).unwrap();
        let err = TextConfig::from_gguf(&gguf).unwrap_err().to_string();
        assert!(err.contains("gemma3.block_count") && err.contains(&format!("{value} layers")), "{err}");
    }
}

#[test]
fn a_block_count_below_the_layer_tensors_is_refused() {
    let bytes = fixture("tiny-gemma3-f32.gguf");
    let at = u32_value_at(&bytes, "gemma3.block_count");
    let n_layers = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let bytes = with_u32(bytes, "gemma3.block_count", n_layers - 1);
    let gguf = GgufFile::read(&bytes[..]).unwrap();
    let err = TextConfig::from_gguf(&gguf).unwrap_err().to_string();
    assert!(err.contains(&format!("blk.{}.", n_layers - 1)), "{err}");
}

#[test]
fn a_tensor_whose_type_was_changed_is_refused_by_the_layout_checks() {
    let mut bytes = fixture("tiny-gemma3-f32.gguf");
    // The tensor info of the final norm: name, n_dims (u32), dims (u64 each), type (u32); F32 is 0, F16 is 1.
    let name = b"output_norm.weight";
    let at = position(&bytes, name) + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    assert_eq!(&bytes[type_at..type_at + 4], &0u32.to_le_bytes(), "output_norm is F32 in the fixture");
    bytes[type_at..type_at + 4].copy_from_slice(&1u32.to_le_bytes());
    match GgufFile::read(&bytes[..]) {
        Err(e @ (GgufError::TensorLayout { .. } | GgufError::TrailingBytes { .. })) => {
            assert!(e.to_string().contains("output_norm.weight") || e.to_string().contains("in order"), "{e}")
        }
        Err(other) => panic!("expected a layout error, got {other}"),
        Ok(_) => panic!("a tensor whose type changed from F32 to F16 was accepted"),
    }
}

#[test]
fn a_special_token_outside_the_vocabulary_is_refused() {
    let bytes = with_u32(fixture("tiny-gemma3-f32.gguf"), "tokenizer.ggml.bos_token_id", 1 << 20);
    let gguf = GgufFile::read(&bytes[..]).unwrap();
    let Err(err) = Tokenizer::from_gguf(&gguf) else { panic!("a BOS id outside the vocabulary was accepted") };
    let message = err.to_string();
    assert!(message.contains("tokenizer.ggml.bos_token_id = 1048576") && message.contains("outside"), "{message}");
}
