//! Gemma 4's thought channel apart from the answer, while the text streams in. The model writes
//! `<|channel>thought\n…<channel|>` before (or between) parts of its answer. Like Ollama's Gemma 4 parser, the
//! channel name `thought\n` is dropped, whitespace around the tags is trimmed (the answer's before `<|channel>`
//! and after `<channel|>`, the thinking's before `<channel|>`), and text that might be the start of a tag is
//! held back until it is decided. Unlike Ollama's, the result never depends on how the text was cut into
//! pieces: whitespace is held until it is known whether a tag follows.

const OPEN: &str = "<|channel>";
const CLOSE: &str = "<channel|>";
const CHANNEL_NAME: &str = "thought\n";

/// The text of one push, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub thinking: String,
    pub answer: String,
}

pub struct ThinkingSplitter {
    in_thought: bool,
    /// Right after `<|channel>`: the channel name may still be arriving.
    at_channel_name: bool,
    /// Right after `<channel|>`: whitespace here is dropped.
    at_answer_start: bool,
    held: String,
}

impl Default for ThinkingSplitter {
    fn default() -> Self {
        ThinkingSplitter::new()
    }
}

impl ThinkingSplitter {
    /// For output that starts as answer text (the usual case).
    pub fn new() -> ThinkingSplitter {
        ThinkingSplitter { in_thought: false, at_channel_name: false, at_answer_start: false, held: String::new() }
    }

    /// For output that starts inside the thought channel: the prompt already ended with `<|channel>thought\n`
    /// (Gemma 4 with thinking on, continuing after a tool response).
    pub fn in_thought() -> ThinkingSplitter {
        ThinkingSplitter { in_thought: true, ..ThinkingSplitter::new() }
    }

    pub fn push(&mut self, text: &str) -> Split {
        self.held.push_str(text);
        let mut split = Split::default();
        loop {
            if self.in_thought {
                if self.at_channel_name {
                    if self.held.starts_with(CHANNEL_NAME) {
                        self.held.drain(..CHANNEL_NAME.len());
                    } else if CHANNEL_NAME.starts_with(self.held.as_str()) {
                        return split;
                    }
                    self.at_channel_name = false;
                }
                let Some(at) = self.held.find(CLOSE) else { break };
                split.thinking.push_str(self.held[..at].trim_end());
                self.held.drain(..at + CLOSE.len());
                self.in_thought = false;
                self.at_answer_start = true;
            } else {
                if self.at_answer_start {
                    let trimmed = self.held.trim_start().len();
                    self.held.drain(..self.held.len() - trimmed);
                    if self.held.is_empty() {
                        return split;
                    }
                    self.at_answer_start = false;
                }
                let Some(at) = self.held.find(OPEN) else { break };
                split.answer.push_str(self.held[..at].trim_end());
                self.held.drain(..at + OPEN.len());
                self.in_thought = true;
                self.at_channel_name = true;
            }
        }
        let tag = if self.in_thought { CLOSE } else { OPEN };
        let keep = undecided_suffix_bytes(&self.held, tag);
        let ready: String = self.held.drain(..self.held.len() - keep).collect();
        if self.in_thought {
            split.thinking.push_str(&ready)
        } else {
            split.answer.push_str(&ready)
        }
        split
    }

    /// Whatever was held back, where it belongs; an unclosed thought ends here.
    pub fn finish(self) -> Split {
        // Right after `<channel|>` nothing is held: `push` drops whitespace there as it comes.
        if self.in_thought {
            Split { thinking: self.held, answer: String::new() }
        } else {
            Split { thinking: String::new(), answer: self.held }
        }
    }
}

/// The bytes at the end of `held` that may not be emitted yet: a proper prefix of `tag`, together with the
/// whitespace before it, or trailing whitespace alone (it is dropped if a tag follows).
fn undecided_suffix_bytes(held: &str, tag: &str) -> usize {
    let partial_tag = (1..tag.len().min(held.len() + 1)).rev().find(|&n| held.ends_with(&tag[..n])).unwrap_or(0);
    let before = &held[..held.len() - partial_tag];
    partial_tag + (before.len() - before.trim_end().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `text` pushed whole, and checks that every cut into three pieces gives the same result.
    fn split_any_way(start_in_thought: bool, text: &str) -> (String, String) {
        let run = |pieces: &[&str]| {
            let mut splitter = if start_in_thought { ThinkingSplitter::in_thought() } else { ThinkingSplitter::new() };
            let (mut thinking, mut answer) = (String::new(), String::new());
            for piece in pieces.iter().copied() {
                let split = splitter.push(piece);
                thinking.push_str(&split.thinking);
                answer.push_str(&split.answer);
            }
            let rest = splitter.finish();
            (thinking + &rest.thinking, answer + &rest.answer)
        };
        let whole = run(&[text]);
        let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        for &a in &cuts {
            for &b in cuts.iter().filter(|&&b| b >= a) {
                assert_eq!(run(&[&text[..a], &text[a..b], &text[b..]]), whole, "cut at {a}, {b} of {text:?}");
            }
        }
        whole
    }

    fn pair(thinking: &str, answer: &str) -> (String, String) {
        (thinking.to_owned(), answer.to_owned())
    }

    #[test]
    fn thought_channel_is_separated_from_the_answer() {
        let text = "<|channel>thought\nLet me think.\n<channel|>\n\nThe answer is 4.";
        assert_eq!(split_any_way(false, text), pair("Let me think.", "The answer is 4."));
    }

    #[test]
    fn answers_without_a_channel_pass_through() {
        assert_eq!(split_any_way(false, "Hello, wörld!\n"), pair("", "Hello, wörld!\n"));
        assert_eq!(split_any_way(false, "a <|chan but no tag"), pair("", "a <|chan but no tag"));
    }

    #[test]
    fn whitespace_around_the_tags_is_trimmed() {
        let text = "Sure. <|channel>thought\nhmm  <channel|> Done";
        assert_eq!(split_any_way(false, text), pair("hmm", "Sure.Done"));
    }

    #[test]
    fn output_that_starts_inside_the_channel() {
        assert_eq!(split_any_way(true, "reasoning\n<channel|>answer"), pair("reasoning", "answer"));
    }

    #[test]
    fn other_channel_names_and_unclosed_thoughts_are_kept() {
        assert_eq!(split_any_way(false, "<|channel>analysis\nx<channel|>y"), pair("analysis\nx", "y"));
        assert_eq!(split_any_way(false, "<|channel>thought\nstill thinking "), pair("still thinking ", ""));
    }
}
