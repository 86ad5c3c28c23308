//! The merge loop both Gemma tokenizers share (llama.cpp's `llm_tokenizer_spm_session` and
//! `llm_tokenizer_bpe_session`): the text starts as one symbol per UTF-8 character in a linked list, every adjacent
//! pair that may merge goes into a priority queue, and the best pair (ties: leftmost) merges the right symbol into
//! the left, queueing the new pairs on both sides. A queued pair whose symbols changed since is skipped. O(n log n)
//! in characters; the two tokenizers differ only in which pairs merge and in what order ([`MergeRule`]).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// No symbol: the end of the list, or a text no merge mentions.
pub(super) const NO_SYMBOL: u32 = u32::MAX;
const NO_INDEX: usize = usize::MAX;

#[derive(Clone, Debug)]
pub(super) struct Symbol {
    /// Byte range in the text being merged; `len_bytes` 0 once merged into its left neighbour.
    pub start: usize,
    pub len_bytes: usize,
    /// What the rule knows this text as (a token id for BPE, or [`NO_SYMBOL`]); SPM looks texts up instead.
    pub id: u32,
    prev: usize,
    next: usize,
}

impl Symbol {
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.start + self.len_bytes]
    }
}

pub(super) trait MergeRule {
    /// Smaller merges first.
    type Priority: Ord;
    /// The priority of merging `left` and `right` and the merged symbol's id, or `None` if they do not merge.
    fn pair(&self, text: &str, left: &Symbol, right: &Symbol) -> Option<(Self::Priority, u32)>;
}

/// One symbol per character of `text`, each identified by `id_of(character)`.
pub(super) fn char_symbols(text: &str, id_of: impl Fn(&str) -> u32) -> Vec<Symbol> {
    let n_chars = text.chars().count();
    text.char_indices()
        .enumerate()
        .map(|(index, (start, c))| Symbol {
            start,
            len_bytes: c.len_utf8(),
            id: id_of(&text[start..start + c.len_utf8()]),
            prev: if index == 0 { NO_INDEX } else { index - 1 },
            next: if index + 1 == n_chars { NO_INDEX } else { index + 1 },
        })
        .collect()
}

struct Candidate<P> {
    priority: P,
    left: usize,
    right: usize,
    /// Both symbols' lengths when queued: if either grew (or was merged away) since, the candidate is stale.
    len_bytes: usize,
    merged_id: u32,
}

/// `BinaryHeap` pops the greatest, so the best candidate (smallest priority, then leftmost) is the greatest.
impl<P: Ord> Ord for Candidate<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.priority.cmp(&self.priority).then(other.left.cmp(&self.left))
    }
}
impl<P: Ord> PartialOrd for Candidate<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P: Ord> PartialEq for Candidate<P> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<P: Ord> Eq for Candidate<P> {}

/// Merges `symbols` (from [`char_symbols`] over `text`) until no queued pair applies; the surviving symbols are
/// those with `len_bytes > 0`, in text order.
pub(super) fn merge_symbols<R: MergeRule>(text: &str, symbols: &mut [Symbol], rule: &R) {
    let mut queue = BinaryHeap::new();
    let push = |queue: &mut BinaryHeap<Candidate<R::Priority>>, symbols: &[Symbol], left: usize, right: usize| {
        if left == NO_INDEX || right == NO_INDEX {
            return;
        }
        let (l, r) = (&symbols[left], &symbols[right]);
        if let Some((priority, merged_id)) = rule.pair(text, l, r) {
            queue.push(Candidate { priority, left, right, len_bytes: l.len_bytes + r.len_bytes, merged_id });
        }
    };
    for left in 1..symbols.len() {
        push(&mut queue, symbols, left - 1, left);
    }
    while let Some(candidate) = queue.pop() {
        let (left, right) = (candidate.left, candidate.right);
        let (left_len, right_len) = (symbols[left].len_bytes, symbols[right].len_bytes);
        if left_len == 0 || right_len == 0 || left_len + right_len != candidate.len_bytes {
            continue;
        }
        let right_next = symbols[right].next;
        symbols[left].len_bytes += right_len;
        symbols[left].id = candidate.merged_id;
        symbols[left].next = right_next;
        symbols[right].len_bytes = 0;
        if right_next != NO_INDEX {
            symbols[right_next].prev = left;
        }
        push(&mut queue, symbols, symbols[left].prev, left);
        push(&mut queue, symbols, left, right_next);
    }
}

/// The symbols left after [`merge_symbols`], in text order.
pub(super) fn surviving(symbols: &[Symbol]) -> impl Iterator<Item = &Symbol> {
    symbols.iter().filter(|symbol| symbol.len_bytes > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges any two adjacent symbols whose texts are listed, earlier entries first.
    struct ListRule(Vec<&'static str>);

    impl MergeRule for ListRule {
        type Priority = usize;
        fn pair(&self, text: &str, left: &Symbol, right: &Symbol) -> Option<(usize, u32)> {
            let joined = &text[left.start..right.start + right.len_bytes];
            self.0.iter().position(|t| *t == joined).map(|rank| (rank, 0))
        }
    }

    fn run<'t>(text: &'t str, rule: &ListRule) -> Vec<&'t str> {
        let mut symbols = char_symbols(text, |_| NO_SYMBOL);
        merge_symbols(text, &mut symbols, rule);
        surviving(&symbols).map(|s| s.text(text)).collect::<Vec<_>>()
    }

    #[test]
    fn best_pair_first_and_ties_leftmost() {
        let rule = ListRule(vec!["ab", "bc", "abc"]);
        assert_eq!(run("abc", &rule), ["abc"]);
        // "aa" at 0 and at 2 tie; the leftmost merges first, so "aaa" ends as "aa" + "a".
        assert_eq!(run("aaa", &ListRule(vec!["aa"])), ["aa", "a"]);
        assert_eq!(run("bcab", &ListRule(vec!["ab", "bc"])), ["bc", "ab"]);
    }

    #[test]
    fn stale_pairs_are_skipped_and_multibyte_characters_stay_whole() {
        // "bc" is queued first but "ab" (better) takes the b; "bc" must not merge afterwards.
        assert_eq!(run("abc", &ListRule(vec!["ab", "bc"])), ["ab", "c"]);
        assert_eq!(run("é🦀x", &ListRule(vec!["🦀x"])), ["é", "🦀x"]);
        assert!(run("", &ListRule(vec![])).is_empty());
    }
}
