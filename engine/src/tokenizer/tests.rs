//! The mechanics on small hand-made vocabularies. Agreement with llama.cpp and HF on real and tiny vocabularies is
//! in `engine/tests/tokenizer_goldens.rs`.

use super::*;
use crate::gguf::{Array, GgufWriter, Value};

const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// `<pad> <eos> <bos> <unk> <mask>`, Gemma 4 markers, then `normal` texts, then the 256 byte tokens.
fn vocab(normal: &[&str]) -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<(String, i32)> = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<|turn>", "<turn|>"]
        .iter()
        .map(|t| (t.to_string(), CONTROL))
        .collect();
    // As Ollama types it; read as llama.cpp's converter writes it (USER_DEFINED).
    tokens.push(("<|channel>".into(), CONTROL));
    tokens.push(("<table>".into(), USER_DEFINED));
    tokens.extend(normal.iter().map(|t| (t.to_string(), 1)));
    tokens.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), BYTE)));
    tokens.into_iter().unzip()
}

fn gguf(entries: Vec<(&str, Value)>) -> GgufFile {
    let mut writer = GgufWriter::new(3);
    for (key, value) in entries {
        writer.add_metadata(key, value);
    }
    let bytes = writer.to_bytes().unwrap();
    GgufFile::read(&bytes[..]).unwrap()
}

fn strings(items: &[&str]) -> Value {
    Value::Array(Array::String(items.iter().map(|s| s.to_string()).collect()))
}

const BPE_NORMAL: [&str; 12] = ["\n", "\n\n", "▁", "h", "e", "l", "o", "he", "ll", "hell", "hello", "▁hello"];
/// "e l" makes "el", which is not a token.
const BPE_MERGES: [&str; 6] = ["h e", "l l", "he ll", "hell o", "▁ hello", "e l"];

fn bpe(model: &str, pre: Option<&str>) -> Tokenizer {
    let (tokens, types) = vocab(&BPE_NORMAL);
    let mut entries = vec![
        ("general.architecture", Value::String("gemma4".into())),
        ("tokenizer.ggml.model", Value::String(model.into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges", strings(&BPE_MERGES)),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    if let Some(pre) = pre {
        entries.push(("tokenizer.ggml.pre", Value::String(pre.into())));
    }
    Tokenizer::from_gguf(&gguf(entries)).unwrap()
}

fn ids(tok: &Tokenizer, texts: &[&str]) -> Vec<u32> {
    texts.iter().map(|t| tok.token_id(t).unwrap_or_else(|| panic!("{t:?} not in the vocabulary"))).collect()
}

#[test]
fn bpe_merges_by_rank_with_newline_runs_and_byte_fallback() {
    let tok = bpe("gemma4", None);
    assert_eq!(tok.kind(), TokenizerKind::Gemma4Bpe);
    // Spaces are `▁`, with no prefix space.
    assert_eq!(tok.encode("hello hello", Special::Parse), ids(&tok, &["hello", "▁hello"]));
    // A newline run that is a token is emitted whole; one that is not merges from characters (no merges here).
    assert_eq!(tok.encode("\n\nhello\n\n\n", Special::Parse), ids(&tok, &["\n\n", "hello", "\n", "\n", "\n"]));
    // A merge whose result is not a token still happens (as in llama.cpp); the result falls back to bytes.
    assert_eq!(tok.encode("el", Special::Parse), ids(&tok, &["<0x65>", "<0x6C>"]));
    // 'é' is not a token: its two UTF-8 bytes.
    assert_eq!(tok.encode("é", Special::Parse), ids(&tok, &["<0xC3>", "<0xA9>"]));
    assert!(tok.encode("", Special::Parse).is_empty());
}

#[test]
fn special_texts_split_by_mode() {
    let tok = bpe("gemma4", None);
    let parsed = tok.encode("<|turn>hello<table><|channel>", Special::Parse);
    assert_eq!(parsed, ids(&tok, &["<|turn>", "hello", "<table>", "<|channel>"]));
    // As text, control tokens are plain text; user-defined ones (`<table>`, `<|channel>` read as llama.cpp's
    // converter types it) are still split out.
    let plain = tok.encode("<|turn>hello<table><|channel>", Special::AsText);
    assert_eq!(&plain[plain.len() - 3..], ids(&tok, &["hello", "<table>", "<|channel>"]));
    assert!(plain.len() > 4 && !plain.contains(&tok.token_id("<|turn>").unwrap()));
    assert!(tok.is_control(tok.token_id("<|turn>").unwrap()));
    assert!(!tok.is_control(tok.token_id("<|channel>").unwrap()));
}

#[test]
fn ollama_gemma4_flavour_is_the_same_tokenizer() {
    let llamacpp = bpe("gemma4", None);
    for ollama in [bpe("llama", Some("gemma4")), bpe("llama", None)] {
        assert_eq!(ollama.kind(), TokenizerKind::Gemma4Bpe);
        for text in ["hello hello\n\n<|turn>x<|channel>", "é <table>"] {
            for special in [Special::Parse, Special::AsText] {
                assert_eq!(ollama.encode(text, special), llamacpp.encode(text, special), "{text:?}");
            }
        }
        // The file says add_bos_token false; Gemma 4 always gets BOS.
        assert!(ollama.add_bos());
    }
}

#[test]
fn decode_joins_bytes_skips_control_and_ignores_unknown_ids() {
    let tok = bpe("gemma4", None);
    let ids = tok.encode("<bos>hello hello<|channel>é\n", Special::Parse);
    assert_eq!(tok.decode(&ids, DecodeSpecial::Show), "<bos>hello hello<|channel>é\n");
    assert_eq!(tok.decode(&ids, DecodeSpecial::Skip), "hello hello<|channel>é\n");
    assert_eq!(tok.decode(&[u32::MAX, 2, tok.vocab_len()], DecodeSpecial::Show), "<bos>");
    let lone_lead_byte = [tok.token_id("<0xC3>").unwrap()];
    assert_eq!(tok.decode(&lone_lead_byte, DecodeSpecial::Skip), "\u{FFFD}");
}

#[test]
fn stream_decoder_holds_back_incomplete_characters() {
    let tok = bpe("gemma4", None);
    let crab = ids(&tok, &["<0xF0>", "<0x9F>", "<0xA6>", "<0x80>"]);
    let mut stream = StreamDecoder::new();
    let parts: Vec<String> = crab.iter().map(|&id| stream.push(&tok, id, DecodeSpecial::Skip)).collect();
    assert_eq!(parts, ["", "", "", "🦀"]);
    assert_eq!(stream.finish(), "");

    // Invalid and truncated sequences decode as `decode` does, whatever the split.
    let mixed = [&crab[..2], &ids(&tok, &["<0x41>", "hello", "<0xFF>", "<0xC3>"])].concat();
    let mut stream = StreamDecoder::new();
    let mut text: String = mixed.iter().map(|&id| stream.push(&tok, id, DecodeSpecial::Skip)).collect();
    text += &stream.finish();
    assert_eq!(text, tok.decode(&mixed, DecodeSpecial::Skip));
}

#[test]
fn end_of_generation_and_special_ids() {
    let tok = bpe("gemma4", None);
    assert_eq!(tok.bos(), Some(2));
    assert_eq!(tok.eos(), Some(1));
    assert_eq!(tok.end_of_generation(), ids(&tok, &["<eos>", "<turn|>"]));
    assert_eq!(tok.piece(2), Some("<bos>"));
    assert_eq!(tok.piece(tok.vocab_len()), None);
}

fn spm(add_space_prefix: Option<bool>) -> Result<Tokenizer> {
    let (tokens, types) = vocab(&["▁", "a", "b", "ab", "▁a"]);
    // Scores: "▁a" beats "ab", so " ab" is "▁a" + "b", not "▁" + "ab".
    let scores = tokens
        .iter()
        .map(|t| {
            if t == "▁a" {
                -1.0
            } else if t == "ab" {
                -2.0
            } else {
                -3.0
            }
        })
        .collect();
    let mut entries = vec![
        ("general.architecture", Value::String("gemma3".into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.scores", Value::Array(Array::F32(scores))),
    ];
    if let Some(flag) = add_space_prefix {
        entries.push(("tokenizer.ggml.add_space_prefix", Value::Bool(flag)));
    }
    Tokenizer::from_gguf(&gguf(entries))
}

#[test]
fn sentencepiece_merges_by_score() {
    // Ollama's converter writes no add_space_prefix: read as Gemma's false, no space before the text.
    for tok in [spm(Some(false)).unwrap(), spm(None).unwrap()] {
        assert_eq!(tok.kind(), TokenizerKind::SentencePiece);
        assert_eq!(tok.encode(" ab", Special::Parse), ids(&tok, &["▁a", "b"]));
        assert_eq!(tok.encode("ab", Special::Parse), ids(&tok, &["ab"]));
        assert_eq!(tok.encode("abé", Special::Parse), ids(&tok, &["ab", "<0xC3>", "<0xA9>"]));
    }
    let tok = spm(None).unwrap();
    // No add_bos_token key: llama.cpp's default for SentencePiece, true.
    assert!(tok.add_bos());
}

#[test]
fn unsupported_vocabularies_are_typed_errors() {
    let unsupported = |result: Result<Tokenizer>, needle: &str| match result {
        Err(Error::Unsupported { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
        Err(other) => panic!("expected Unsupported, got {other}"),
        Ok(_) => panic!("expected Unsupported, got a tokenizer"),
    };
    unsupported(spm(Some(true)), "add_space_prefix is true");
    let bert =
        gguf(vec![("tokenizer.ggml.model", Value::String("bert".into())), ("tokenizer.ggml.tokens", strings(&["a"]))]);
    unsupported(Tokenizer::from_gguf(&bert), "`bert`");
    let short_types = gguf(vec![
        ("tokenizer.ggml.model", Value::String("gemma4".into())),
        ("tokenizer.ggml.tokens", strings(&["a", "b"])),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1]))),
        ("tokenizer.ggml.merges", strings(&[])),
    ]);
    unsupported(Tokenizer::from_gguf(&short_types), "1 entries for 2 tokens");
    let no_model = gguf(vec![("tokenizer.ggml.tokens", strings(&["a"]))]);
    assert!(matches!(Tokenizer::from_gguf(&no_model), Err(Error::BadModelFile(_))));
}
