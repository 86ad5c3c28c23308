//! Splitting special-token texts out of the input before tokenizing, exactly as llama.cpp's
//! `tokenizer_st_partition` does: special tokens are taken longest text first, and each one splits every remaining
//! text fragment at all its non-overlapping occurrences, left to right. So a longer token wins over a shorter one
//! that overlaps it even when the shorter one starts earlier — not the leftmost-longest rule of a single automaton
//! pass. An Aho–Corasick automaton over every special text finds the few tokens that occur at all, so the
//! llama.cpp loop runs over those instead of over thousands (Gemma 3 has 6,414 special tokens).

use aho_corasick::{AhoCorasick, MatchKind};

use super::Special;
use super::vocab::{Attr, Vocab};
use crate::{Error, Result};

/// A piece of the input: text still to tokenize, or a special token already matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

pub(super) struct SpecialSplitter {
    automaton: AhoCorasick,
    /// Per automaton pattern, in llama.cpp's processing order (longest text first).
    patterns: Vec<SpecialPattern>,
}

struct SpecialPattern {
    id: u32,
    /// Split out only in [`Special::Parse`]: control and unknown tokens. User-defined ones are always split out,
    /// as in llama.cpp (and HF, where added tokens that are not special are matched regardless).
    parse_only: bool,
}

impl SpecialSplitter {
    pub fn new(vocab: &Vocab) -> Result<SpecialSplitter> {
        let mut ids: Vec<u32> = vocab.special_ids().collect();
        // llama.cpp sorts by text length with an unstable sort, so among equal lengths its order is unspecified; it
        // matters only when two distinct special texts of one length overlap, which no Gemma vocabulary has. Ties
        // go by id here, deterministically.
        ids.sort_by_key(|&id| (std::cmp::Reverse(vocab.text(id).map_or(0, str::len)), id));
        let texts: Vec<&str> = ids.iter().filter_map(|&id| vocab.text(id)).collect();
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&texts)
            .map_err(|e| Error::Unsupported { op: "tokenizer".into(), reason: format!("special tokens: {e}") })?;
        let patterns = ids
            .iter()
            .map(|&id| SpecialPattern { id, parse_only: vocab.attr(id).has(Attr::CONTROL.with(Attr::UNKNOWN)) })
            .collect();
        Ok(SpecialSplitter { automaton, patterns })
    }

    pub fn split<'t>(&self, vocab: &Vocab, text: &'t str, special: Special) -> Vec<Fragment<'t>> {
        if text.is_empty() {
            return Vec::new();
        }
        let applies = |pattern: &SpecialPattern| special == Special::Parse || !pattern.parse_only;
        let mut occurring: Vec<usize> = self
            .automaton
            .find_overlapping_iter(text)
            .map(|m| m.pattern().as_usize())
            .filter(|&p| applies(&self.patterns[p]))
            .collect();
        occurring.sort_unstable();
        occurring.dedup();

        let mut fragments = vec![Fragment::Text(text)];
        for pattern in occurring {
            let id = self.patterns[pattern].id;
            let Some(needle) = vocab.text(id) else { continue };
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(raw) = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut rest_start = 0;
                for (start, _) in raw.match_indices(needle) {
                    if start > rest_start {
                        next.push(Fragment::Text(&raw[rest_start..start]));
                    }
                    next.push(Fragment::Token(id));
                    rest_start = start + needle.len();
                }
                if rest_start < raw.len() {
                    next.push(Fragment::Text(&raw[rest_start..]));
                }
            }
            fragments = next;
        }
        fragments
    }
}
