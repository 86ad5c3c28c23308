//! The vocabulary as llama.cpp loads it from `tokenizer.ggml.*`: token texts, attributes, scores, text → id, the
//! special ids and the end-of-generation set, with llama.cpp's by-text overrides (`llama-vocab.cpp`, `load`).

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use crate::gguf::{Array, GgufFile, Value};
use crate::{Error, Result};

const TOKENS_KEY: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE_KEY: &str = "tokenizer.ggml.token_type";
const SCORES_KEY: &str = "tokenizer.ggml.scores";

/// llama.cpp's `llama_token_attr` bits. A GGUF token type maps to one of them; llama.cpp then ORs `CONTROL` into
/// end-of-generation tokens found by text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Attr(u8);

impl Attr {
    pub const UNDEFINED: Attr = Attr(0);
    pub const UNKNOWN: Attr = Attr(1 << 0);
    pub const UNUSED: Attr = Attr(1 << 1);
    pub const NORMAL: Attr = Attr(1 << 2);
    pub const CONTROL: Attr = Attr(1 << 3);
    pub const USER_DEFINED: Attr = Attr(1 << 4);
    pub const BYTE: Attr = Attr(1 << 5);

    /// GGUF `tokenizer.ggml.token_type` values (`llama_token_type`): 1 normal … 6 byte; anything else undefined.
    fn from_token_type(token_type: i128) -> Attr {
        match token_type {
            1 => Attr::NORMAL,
            2 => Attr::UNKNOWN,
            3 => Attr::CONTROL,
            4 => Attr::USER_DEFINED,
            5 => Attr::UNUSED,
            6 => Attr::BYTE,
            _ => Attr::UNDEFINED,
        }
    }

    pub fn has(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    pub fn with(self, other: Attr) -> Attr {
        Attr(self.0 | other.0)
    }
}

/// Texts llama.cpp treats as end of generation wherever they are in a vocabulary, forcing them to CONTROL
/// (`special_eog_ids`): the Gemma entries of its list. `<|tool_response>` ends a Gemma 4 turn that called a tool.
const END_OF_GENERATION_TEXTS: [&str; 4] = ["<eos>", "<end_of_turn>", "<turn|>", "<|tool_response>"];

/// Gemma 4's channel and tool markers. llama.cpp's converter writes them USER_DEFINED (so they survive decoding as
/// text for the parser that consumes them); Ollama's writes them CONTROL (gemma4.md §2.4 item 3). Both flavours
/// are read as llama.cpp's, so the same text gives the same ids and the same decoded text.
pub(super) const GEMMA4_USER_DEFINED_TEXTS: [&str; 7] =
    ["<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", "<|\"|>"];

pub(super) struct Vocab {
    /// Every token's text, concatenated: one allocation instead of 262,144.
    all_texts: String,
    /// Token `id`'s text is `all_texts[text_ends[id - 1]..text_ends[id]]` (from 0 for id 0).
    text_ends: Vec<usize>,
    attrs: Vec<Attr>,
    scores: Vec<f32>,
    /// Text → id, storing only ids: the texts are compared in `all_texts`.
    ids_by_text: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// `<0xXX>` → id, for byte fallback; `None` where the vocabulary lacks that byte token.
    byte_ids: [Option<u32>; 256],
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Sorted, without duplicates.
    pub end_of_generation: Vec<u32>,
}

impl Vocab {
    /// `user_defined_texts`: tokens whose type is forced to USER_DEFINED (see [`GEMMA4_USER_DEFINED_TEXTS`]).
    pub fn from_gguf(gguf: &GgufFile, user_defined_texts: &[&str]) -> Result<Vocab> {
        let file_texts = gguf.get_str_array(TOKENS_KEY)?;
        let n_tokens = file_texts.len();
        if u32::try_from(n_tokens).is_err() {
            return Err(bad_vocab(format!("{TOKENS_KEY} has {n_tokens} entries, more than token ids can count")));
        }
        // Every id the LM head can produce must have a text: a shorter vocabulary is another model's.
        if let Some(rows) = gguf.tensor("token_embd.weight").and_then(|t| t.dims().get(1).copied())
            && rows > n_tokens as u64
        {
            return Err(bad_vocab(format!(
                "{TOKENS_KEY} has {n_tokens} entries but token_embd.weight has {rows} rows: the model can produce ids \
                 the vocabulary cannot spell"
            )));
        }
        let mut all_texts = String::with_capacity(file_texts.iter().map(String::len).sum());
        let mut text_ends = Vec::with_capacity(n_tokens);
        for (id, text) in file_texts.iter().enumerate() {
            // llama.cpp renames empty texts, so no special token is empty and every text is a distinct key.
            if text.is_empty() {
                all_texts.push_str(&format!("[EMPTY_{id}]"));
            } else {
                all_texts.push_str(text);
            }
            text_ends.push(all_texts.len());
        }
        let attrs = match gguf.get(TOKEN_TYPE_KEY) {
            None => vec![Attr::NORMAL; n_tokens],
            Some(value) => {
                per_token(value, TOKEN_TYPE_KEY, n_tokens, integers)?.into_iter().map(Attr::from_token_type).collect()
            }
        };
        let scores = match gguf.get(SCORES_KEY) {
            None => vec![0.0; n_tokens],
            Some(value) => per_token(value, SCORES_KEY, n_tokens, floats)?,
        };
        let mut vocab = Vocab {
            all_texts,
            text_ends,
            attrs,
            scores,
            ids_by_text: HashTable::with_capacity(n_tokens),
            hasher: DefaultHashBuilder::default(),
            byte_ids: [None; 256],
            bos: None,
            eos: None,
            end_of_generation: Vec::new(),
        };
        for id in 0..n_tokens as u32 {
            vocab.index(id);
        }
        for text in user_defined_texts {
            if let Some(id) = vocab.id(text) {
                vocab.attrs[id as usize] = Attr::USER_DEFINED;
            }
        }
        vocab.read_special_ids(gguf)?;
        for byte in 0..=255u8 {
            vocab.byte_ids[byte as usize] = vocab.id(&byte_token_text(byte));
        }
        Ok(vocab)
    }

    /// Adds `id` to the text index; a later id with the same text replaces the earlier one, as llama.cpp's
    /// `token_to_id[word] = i` does.
    fn index(&mut self, id: u32) {
        let Vocab { all_texts, text_ends, ids_by_text, hasher, .. } = self;
        let text_of = |id: u32| text_in(all_texts, text_ends, id);
        let text = text_of(id);
        let hash = hasher.hash_one(text);
        match ids_by_text.find_mut(hash, |&other| text_of(other) == text) {
            Some(slot) => *slot = id,
            None => {
                ids_by_text.insert_unique(hash, id, |&other| hasher.hash_one(text_of(other)));
            }
        }
    }

    /// BOS, EOS and the end-of-generation set, with llama.cpp's CONTROL override on end-of-generation texts.
    fn read_special_ids(&mut self, gguf: &GgufFile) -> Result<()> {
        let n_tokens = self.len();
        let special_id = |key: &str| -> Result<Option<u32>> {
            if gguf.get(key).is_none() {
                return Ok(None);
            }
            // llama.cpp ignores an id past the vocabulary with a warning; a file that names one is broken, and a
            // prompt would start with a token that does not exist, so it is refused here.
            match gguf.get_u32(key)? {
                id if (id as usize) < n_tokens => Ok(Some(id)),
                id => Err(bad_vocab(format!("{key} = {id} is outside the vocabulary of {n_tokens} tokens"))),
            }
        };
        self.bos = special_id("tokenizer.ggml.bos_token_id")?;
        self.eos = special_id("tokenizer.ggml.eos_token_id")?;
        // Not used here, but a file that names a token that does not exist is as broken as with BOS.
        for role in ["unknown", "padding", "mask", "seperator", "cls"] {
            special_id(&format!("tokenizer.ggml.{role}_token_id"))?;
        }
        let mut end_of_generation: Vec<u32> = self.eos.into_iter().collect();
        end_of_generation.extend(special_id("tokenizer.ggml.eot_token_id")?);
        // Ollama writes generation_config.json's list of stop ids.
        if let Some(Value::Array(array)) = gguf.get("tokenizer.ggml.eos_token_ids") {
            let ids = array.integers().unwrap_or_default();
            end_of_generation.extend(ids.into_iter().filter_map(|id| u32::try_from(id).ok()));
        }
        end_of_generation.extend(END_OF_GENERATION_TEXTS.iter().filter_map(|text| self.id(text)));
        end_of_generation.retain(|&id| (id as usize) < n_tokens);
        end_of_generation.sort_unstable();
        end_of_generation.dedup();
        for &id in &end_of_generation {
            if END_OF_GENERATION_TEXTS.contains(&self.text_unchecked(id)) {
                self.attrs[id as usize] = self.attrs[id as usize].with(Attr::CONTROL);
            }
        }
        self.end_of_generation = end_of_generation;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.text_ends.len()
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(text);
        self.ids_by_text.find(hash, |&id| self.text_unchecked(id) == text).copied()
    }

    pub fn text(&self, id: u32) -> Option<&str> {
        ((id as usize) < self.len()).then(|| self.text_unchecked(id))
    }

    fn text_unchecked(&self, id: u32) -> &str {
        text_in(&self.all_texts, &self.text_ends, id)
    }

    /// Every id is in range: callers hold ids from this vocabulary or check with [`text`](Self::text) first.
    pub fn attr(&self, id: u32) -> Attr {
        self.attrs[id as usize]
    }

    pub fn score(&self, id: u32) -> f32 {
        self.scores[id as usize]
    }

    pub fn byte_id(&self, byte: u8) -> Option<u32> {
        self.byte_ids[byte as usize]
    }

    /// Ids whose text is split out of the input before tokenizing (llama.cpp's `cache_special_tokens`).
    pub fn special_ids(&self) -> impl Iterator<Item = u32> + '_ {
        let special = Attr::CONTROL.with(Attr::USER_DEFINED).with(Attr::UNKNOWN);
        (0..self.len() as u32).filter(move |&id| self.attrs[id as usize].has(special))
    }

    /// The bytes a token contributes to decoded text (llama.cpp's `token_to_piece` with lstrip 0): nothing for an
    /// id past the vocabulary, for control and unknown tokens unless `show_control`, and for unused ones.
    pub fn push_piece_bytes(&self, id: u32, show_control: bool, out: &mut Vec<u8>) {
        let Some(text) = self.text(id) else {
            return;
        };
        let attr = self.attr(id);
        if attr.has(Attr::CONTROL.with(Attr::UNKNOWN)) {
            if show_control {
                out.extend_from_slice(text.as_bytes());
            }
        } else if attr.has(Attr::USER_DEFINED) {
            out.extend_from_slice(text.as_bytes());
        } else if attr.has(Attr::NORMAL) {
            push_unescaped_spaces(text, out);
        } else if attr.has(Attr::BYTE) {
            out.extend(byte_of_token_text(text));
        }
    }
}

/// Token `id`'s text in the concatenation (`id` in range).
fn text_in<'a>(all_texts: &'a str, text_ends: &[usize], id: u32) -> &'a str {
    let id = id as usize;
    let start = if id == 0 { 0 } else { text_ends[id - 1] };
    &all_texts[start..text_ends[id]]
}

/// `<0xXX>` with upper-case hex, as SentencePiece names byte tokens.
fn byte_token_text(byte: u8) -> String {
    format!("<0x{byte:02X}>")
}

/// The byte a `<0xXX>` token stands for; llama.cpp reads the two hex digits at offset 3.
fn byte_of_token_text(text: &str) -> Option<u8> {
    text.get(3..5).and_then(|hex| u8::from_str_radix(hex, 16).ok())
}

/// SentencePiece's space marker `▁` (U+2581) back to a space.
fn push_unescaped_spaces(text: &str, out: &mut Vec<u8>) {
    let mut parts = text.split(super::SPACE_MARKER);
    if let Some(first) = parts.next() {
        out.extend_from_slice(first.as_bytes());
    }
    for part in parts {
        out.push(b' ');
        out.extend_from_slice(part.as_bytes());
    }
}

fn bad_vocab(reason: String) -> Error {
    Error::Unsupported { op: "tokenizer".into(), reason }
}

/// A per-token array: at least one entry per token (llama.cpp reads only the first `n_tokens`).
fn per_token<T>(value: &Value, key: &str, n_tokens: usize, convert: fn(&Array) -> Option<Vec<T>>) -> Result<Vec<T>> {
    let Value::Array(array) = value else {
        return Err(bad_vocab(format!("{key} is {}, expected an array", value.type_description())));
    };
    let mut values =
        convert(array).ok_or_else(|| bad_vocab(format!("{key} is {}, expected numbers", value.type_description())))?;
    if values.len() < n_tokens {
        return Err(bad_vocab(format!("{key} has {} entries for {n_tokens} tokens", values.len())));
    }
    values.truncate(n_tokens);
    Ok(values)
}

fn integers(array: &Array) -> Option<Vec<i128>> {
    array.integers()
}

fn floats(array: &Array) -> Option<Vec<f32>> {
    match array {
        Array::F32(values) => Some(values.clone()),
        Array::F64(values) => Some(values.iter().map(|&x| x as f32).collect()),
        other => other.integers().map(|values| values.into_iter().map(|x| x as f32).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens_round_trip_through_their_text() {
        for byte in [0u8, 0x0A, 0x7F, 0xE2, 0xFF] {
            assert_eq!(byte_of_token_text(&byte_token_text(byte)), Some(byte));
        }
        assert_eq!(byte_of_token_text("<0x"), None);
    }

    #[test]
    fn space_markers_become_spaces() {
        let mut out = Vec::new();
        push_unescaped_spaces("▁hello▁▁world▁", &mut out);
        assert_eq!(out, b" hello  world ");
    }
}
