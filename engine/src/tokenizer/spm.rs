//! Gemma 3's SentencePiece as llama.cpp runs it from a GGUF (`llm_tokenizer_spm_session`, gemma4.md §5): spaces
//! become `▁` (the vocabulary says `add_space_prefix = false`), and from single UTF-8 characters any adjacent pair
//! whose joined text is a token merges, highest token score first (ties leftmost). A final symbol that is not a
//! token is a single character, which becomes `<0xXX>` byte tokens.
//!
//! (llama.cpp's `resegment` also splits a non-token symbol back along its merges; every merged text here is a
//! token, so only single characters ever get there, and for them it is the byte fallback.)

use std::cmp::Ordering;

use super::merge::{MergeRule, NO_SYMBOL, Symbol, char_symbols, merge_symbols, surviving};
use super::vocab::Vocab;
use super::{SPACE_MARKER, push_byte_fallback};

/// Appends the ids of one text fragment (no special tokens in it).
pub(super) fn encode(vocab: &Vocab, text: &str, ids: &mut Vec<u32>) {
    let escaped = text.replace(' ', SPACE_MARKER);
    let mut symbols = char_symbols(&escaped, |_| NO_SYMBOL);
    merge_symbols(&escaped, &mut symbols, &ScoreRule(vocab));
    for symbol in surviving(&symbols) {
        let piece = symbol.text(&escaped);
        match vocab.id(piece) {
            Some(id) => ids.push(id),
            None => push_byte_fallback(vocab, piece, ids),
        }
    }
}

struct ScoreRule<'v>(&'v Vocab);

impl MergeRule for ScoreRule<'_> {
    type Priority = HigherScoreFirst;

    fn pair(&self, text: &str, left: &Symbol, right: &Symbol) -> Option<(HigherScoreFirst, u32)> {
        let id = self.0.id(&text[left.start..right.start + right.len_bytes])?;
        Some((HigherScoreFirst(self.0.score(id)), id))
    }
}

/// A token score ordered the way llama.cpp's comparator uses `<` and `==` on floats: higher first, and scores
/// that compare equal (0.0 and -0.0 among them, which real Gemma vocabularies contain) tie.
#[derive(Debug)]
struct HigherScoreFirst(f32);

impl Ord for HigherScoreFirst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.partial_cmp(&self.0).unwrap_or(Ordering::Equal)
    }
}
impl PartialOrd for HigherScoreFirst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for HigherScoreFirst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for HigherScoreFirst {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_scores_come_first_and_signed_zeros_tie() {
        assert!(HigherScoreFirst(-1.0) < HigherScoreFirst(-2.0));
        assert_eq!(HigherScoreFirst(0.0), HigherScoreFirst(-0.0));
    }
}
