//! Gemma 4's BPE (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_GEMMA4`, gemma4.md §6): spaces become `▁` with no prefix
//! space, the text splits into runs of newlines and runs of everything else (`[^\n]+|[\n]+`), a run of newlines
//! that is itself a token is emitted whole (llama.cpp PR #21343), and every other run merges from single UTF-8
//! characters by merge rank (ties leftmost). A final symbol that is not a token becomes `<0xXX>` byte tokens.
//!
//! Merges are keyed by symbol ids, not strings: every text a merge mentions (both sides and the result) gets an id,
//! the token id when the vocabulary has it and an id past the vocabulary otherwise, so a merge whose result is not
//! a token still happens, as in llama.cpp (whose ranks are keyed by the two strings).

use hashbrown::HashMap;

use super::merge::{MergeRule, NO_SYMBOL, Symbol, char_symbols, merge_symbols, surviving};
use super::vocab::Vocab;
use super::{SPACE_MARKER, push_byte_fallback};
use crate::Result;
use crate::gguf::GgufFile;

pub(super) const MERGES_KEY: &str = "tokenizer.ggml.merges";

pub(super) struct BpeMerges {
    /// (left symbol, right symbol) → (rank, merged symbol). The first listing of a pair wins, as in llama.cpp.
    ranks: HashMap<(u32, u32), (u32, u32)>,
    /// Symbol ids of texts that merges mention but the vocabulary lacks, numbered from the vocabulary's length.
    extra_symbols: HashMap<String, u32>,
}

impl BpeMerges {
    pub fn from_gguf(gguf: &GgufFile, vocab: &Vocab) -> Result<BpeMerges> {
        let merges = gguf.get_str_array(MERGES_KEY)?;
        let mut table = BpeMerges { ranks: HashMap::with_capacity(merges.len()), extra_symbols: HashMap::new() };
        let mut joined = String::new();
        for (rank, merge) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte, so a left side may itself be a space.
            let Some(split) = merge.bytes().skip(1).position(|b| b == b' ').map(|at| at + 1) else {
                continue;
            };
            let (left, right) = (&merge[..split], &merge[split + 1..]);
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let left = table.intern(vocab, left);
            let right = table.intern(vocab, right);
            let merged = table.intern(vocab, &joined);
            table.ranks.entry((left, right)).or_insert((rank as u32, merged));
        }
        Ok(table)
    }

    fn intern(&mut self, vocab: &Vocab, text: &str) -> u32 {
        if let Some(id) = self.symbol(vocab, text) {
            return id;
        }
        let id = (vocab.len() + self.extra_symbols.len()) as u32;
        self.extra_symbols.insert(text.to_owned(), id);
        id
    }

    fn symbol(&self, vocab: &Vocab, text: &str) -> Option<u32> {
        vocab.id(text).or_else(|| self.extra_symbols.get(text).copied())
    }

    /// Appends the ids of one text fragment (no special tokens in it).
    pub fn encode(&self, vocab: &Vocab, text: &str, ids: &mut Vec<u32>) {
        let escaped = text.replace(' ', SPACE_MARKER);
        for run in newline_runs(&escaped) {
            if run.starts_with('\n') {
                if let Some(id) = vocab.id(run) {
                    ids.push(id);
                    continue;
                }
            }
            let mut symbols = char_symbols(run, |c| self.symbol(vocab, c).unwrap_or(NO_SYMBOL));
            merge_symbols(run, &mut symbols, self);
            for symbol in surviving(&symbols) {
                if (symbol.id as usize) < vocab.len() {
                    ids.push(symbol.id);
                } else {
                    push_byte_fallback(vocab, symbol.text(run), ids);
                }
            }
        }
    }
}

impl MergeRule for BpeMerges {
    type Priority = u32;

    fn pair(&self, _text: &str, left: &Symbol, right: &Symbol) -> Option<(u32, u32)> {
        self.ranks.get(&(left.id, right.id)).copied()
    }
}

/// `[^\n]+|[\n]+`: the text cut where it changes between newlines and anything else.
fn newline_runs(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first_is_newline = rest.starts_with('\n');
        let end = rest.find(|c| (c == '\n') != first_is_newline).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        (!run.is_empty()).then_some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_runs_alternate() {
        let runs: Vec<&str> = newline_runs("a b\n\nc\n").collect();
        assert_eq!(runs, ["a b", "\n\n", "c", "\n"]);
        assert_eq!(newline_runs("\n").collect::<Vec<_>>(), ["\n"]);
        assert_eq!(newline_runs("").count(), 0);
    }
}
