//! Text ↔ token ids for Gemma 4 (BPE) and Gemma 3 (SentencePiece), from the `tokenizer.ggml.*` arrays of a GGUF,
//! matching llama.cpp's tokenizer (the spec, gemma4.md §5, §6) id for id; `golden/tokenizer/` holds the goldens
//! from llama.cpp and HF.
//!
//! Why our own code and not the `tokenizers` crate: nothing in it does Gemma 3's SentencePiece as llama.cpp runs
//! it from a GGUF — the file has scores but no merges, and llama.cpp merges any adjacent pair whose joined text is
//! a token, best score first; `tokenizers`' Unigram is a Viterbi search and its BPE needs the merges (HF rebuilds
//! Gemma 3 merges from token order, which disagrees with llama.cpp, see `golden/tokenizer/README.md`). For Gemma
//! 4 its BPE model would cover only the merge loop, which SentencePiece needs anyway ([`merge`], shared by both),
//! and it differs from llama.cpp at the edges: it turns a character missing from the vocabulary into byte tokens
//! before merging rather than after, and refuses merges whose result is not a token. The parts around it must be
//! ours anyway (llama.cpp's special-token split order, the whole-newline-run rule of llama.cpp PR #21343). And for
//! the browser build it needs its `unstable_wasm` feature and 89 crates (rayon, fancy-regex, esaxx-rs, rand, …;
//! `cargo tree --target wasm32-unknown-unknown` on tokenizers 0.23.2, which does then check for wasm32). The
//! building blocks used are `aho-corasick`, to find special-token texts ([`specials`]), and `hashbrown`'s tables.
//!
//! Speed (release, 2 shared cores): the Gemma 3 270M vocabulary (262,144 tokens) opens and builds in about 35 ms
//! with its GGUF; a BPE vocabulary of that size with 514,906 merges in about 0.2 s; 1 MB of mixed text encodes at
//! 1.4–1.8 M tokens/s. Encoding is O(n log n) in characters.

mod bpe;
mod merge;
mod specials;
mod spm;
mod stream;
mod vocab;

pub use stream::StreamDecoder;

use crate::gguf::{GgufFile, Value};
use crate::{Error, Result};
use bpe::BpeMerges;
use specials::{Fragment, SpecialSplitter};
use vocab::{Attr, GEMMA4_USER_DEFINED_TEXTS, Vocab};

const ADD_SPACE_PREFIX_KEY: &str = "tokenizer.ggml.add_space_prefix";

/// SentencePiece's visible space, U+2581 `▁`.
const SPACE_MARKER: &str = "\u{2581}";

/// What to do with special-token texts (`<bos>`, `<|turn>`, `<start_of_turn>`) in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// Every control, unknown or user-defined token text becomes its id: for rendered chat prompts.
    Parse,
    /// Control and unknown token texts are tokenized as plain text. User-defined ones (Gemma 3's whitespace runs
    /// and HTML tags, Gemma 4's channel and tool markers) still become their ids, as in llama.cpp with
    /// `parse_special = false`.
    AsText,
}

/// Control tokens in decoded text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeSpecial {
    /// Leave them out: the user-visible text. User-defined tokens (channel and tool markers) stay.
    Skip,
    /// Write their text.
    Show,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Gemma 4: rank-ordered merges (`tokenizer.ggml.model` `gemma4`, or Ollama's `llama` with pre `gemma4`).
    Gemma4Bpe,
    /// Gemma 3: score-ordered SentencePiece merges (`tokenizer.ggml.model` `llama`, no merges).
    SentencePiece,
}

impl TokenizerKind {
    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Gemma4Bpe => "gemma4-bpe",
            TokenizerKind::SentencePiece => "sentencepiece",
        }
    }
}

enum Model {
    Bpe(BpeMerges),
    SentencePiece,
}

pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    specials: SpecialSplitter,
    add_bos: bool,
}

impl Tokenizer {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
        let model_name = gguf.get_str("tokenizer.ggml.model")?;
        let optional_str = |key: &str| match gguf.get(key) {
            Some(Value::String(text)) => Some(text.as_str()),
            _ => None,
        };
        let (pre, arch) = (optional_str("tokenizer.ggml.pre"), optional_str("general.architecture"));
        let has_merges = gguf.get(bpe::MERGES_KEY).is_some();
        let unsupported = |reason: String| Error::Unsupported { op: "tokenizer".into(), reason };
        // Ollama writes `llama` for Gemma 4 too (gemma4.md §2.4 item 1): the pre-tokenizer or the architecture with
        // merges says it is BPE, never SentencePiece.
        let gemma4 = model_name == "gemma4"
            || (model_name == "llama" && (pre == Some("gemma4") || (arch == Some("gemma4") && has_merges)));
        if gemma4 {
            let vocab = Vocab::from_gguf(gguf, &GEMMA4_USER_DEFINED_TEXTS)?;
            let merges = BpeMerges::from_gguf(gguf, &vocab)?;
            let specials = SpecialSplitter::new(&vocab)?;
            // llama.cpp forces BOS on for Gemma 4 whatever the file says (Ollama's says false): gemma4.md §2.4 item 2.
            return Ok(Tokenizer { vocab, model: Model::Bpe(merges), specials, add_bos: true });
        }
        if model_name != "llama" {
            return Err(unsupported(format!(
                "tokenizer.ggml.model `{model_name}`: only Gemma 4 BPE (`gemma4`, or `llama` with pre `gemma4`) and \
                 Gemma 3 SentencePiece (`llama`) are supported"
            )));
        }
        // With add_space_prefix, llama.cpp puts a space before text at the start and after each special token. Gemma
        // vocabularies say false (gemma4.md §5); Ollama's converter omits the key, where llama.cpp would default to
        // true, but Ollama's own Gemma 3 tokenizer adds no space. So absent means false, and true is not Gemma's.
        if gguf.get(ADD_SPACE_PREFIX_KEY).is_some() && gguf.get_bool(ADD_SPACE_PREFIX_KEY)? {
            return Err(unsupported(format!(
                "{ADD_SPACE_PREFIX_KEY} is true: that SentencePiece vocabulary is not Gemma's (Gemma's say false)"
            )));
        }
        let vocab = Vocab::from_gguf(gguf, &[])?;
        let specials = SpecialSplitter::new(&vocab)?;
        let add_bos =
            gguf.get("tokenizer.ggml.add_bos_token").is_none() || gguf.get_bool("tokenizer.ggml.add_bos_token")?;
        Ok(Tokenizer { vocab, model: Model::SentencePiece, specials, add_bos })
    }

    pub fn kind(&self) -> TokenizerKind {
        match self.model {
            Model::Bpe(_) => TokenizerKind::Gemma4Bpe,
            Model::SentencePiece => TokenizerKind::SentencePiece,
        }
    }

    /// The ids of `text`. Never adds BOS: a caller that wants one checks [`add_bos`](Self::add_bos), or renders a
    /// prompt that starts with `<bos>` and encodes it with [`Special::Parse`].
    pub fn encode(&self, text: &str, special: Special) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        for fragment in self.specials.split(&self.vocab, text, special) {
            match (fragment, &self.model) {
                (Fragment::Token(id), _) => ids.push(id),
                (Fragment::Text(raw), Model::Bpe(merges)) => merges.encode(&self.vocab, raw, &mut ids),
                (Fragment::Text(raw), Model::SentencePiece) => spm::encode(&self.vocab, raw, &mut ids),
            }
        }
        ids
    }

    /// A prompt's ids: `text` with control texts read as tokens, starting with exactly one BOS where the model
    /// wants one (what `ferrogem generate` and the browser feed the model).
    pub fn encode_prompt(&self, text: &str) -> Vec<u32> {
        let mut ids = self.encode(text, Special::Parse);
        if let (true, Some(bos)) = (self.add_bos(), self.bos())
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        ids
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }

    /// Whether a prompt should start with BOS: always for Gemma 4 (as llama.cpp), else `tokenizer.ggml.add_bos_token`
    /// (llama.cpp's default when absent: true).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }

    /// Ids that end generation, sorted: EOS, the ids in `tokenizer.ggml.eos_token_ids` (Ollama) and
    /// `eot_token_id`, and by text `<eos>`, `<end_of_turn>`, `<turn|>` and `<|tool_response>` where present.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.vocab.end_of_generation
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    /// The token's text as the vocabulary stores it (`▁` for spaces, `<0x0A>` for a byte).
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// Control tokens, including end-of-generation tokens llama.cpp makes control by their text.
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.text(id).is_some() && self.vocab.attr(id).has(Attr::CONTROL)
    }

    /// The number of token texts in the file, which may exceed the model's embedding rows (Ollama Gemma 3 files).
    pub fn vocab_len(&self) -> u32 {
        self.vocab.len() as u32
    }

    /// The text of `ids`: pieces with `▁` as spaces and byte tokens as raw bytes, concatenated, then decoded as
    /// UTF-8 once (lossy: an incomplete or invalid sequence becomes U+FFFD). Ids past the vocabulary add nothing.
    pub fn decode(&self, ids: &[u32], special: DecodeSpecial) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.push_piece_bytes(id, special, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn push_piece_bytes(&self, id: u32, special: DecodeSpecial, bytes: &mut Vec<u8>) {
        self.vocab.push_piece_bytes(id, special == DecodeSpecial::Show, bytes);
    }
}

/// One `<0xXX>` token per byte of `text`; a byte without a token adds nothing (llama.cpp drops it too for BPE).
fn push_byte_fallback(vocab: &Vocab, text: &str, ids: &mut Vec<u32>) {
    ids.extend(text.bytes().filter_map(|byte| vocab.byte_id(byte)));
}

#[cfg(test)]
mod tests;
