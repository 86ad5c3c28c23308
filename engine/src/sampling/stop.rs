//! Stop strings over streamed text. A stop string can arrive split across any number of tokens, so text that
//! could still turn out to be the start of one is held back until it is decided either way.

/// What one [`StopMatcher::push`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopStep {
    /// Text that can no longer be part of a stop string: safe to show now.
    pub emit: String,
    /// A stop string was found; `emit` ends right before it, and the matcher takes no more text.
    pub stopped: bool,
}

pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match before any text).
    pub fn new(stops: Vec<String>) -> StopMatcher {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        StopMatcher { stops, held: String::new(), stopped: false }
    }

    pub fn push(&mut self, text: &str) -> StopStep {
        if self.stopped {
            return StopStep { emit: String::new(), stopped: true };
        }
        self.held.push_str(text);
        let earliest = self.stops.iter().filter_map(|stop| self.held.find(stop.as_str())).min();
        if let Some(at) = earliest {
            self.held.truncate(at);
            self.stopped = true;
            return StopStep { emit: std::mem::take(&mut self.held), stopped: true };
        }
        let keep_bytes = self.longest_pending_prefix();
        let emit = self.held[..self.held.len() - keep_bytes].to_owned();
        self.held.drain(..self.held.len() - keep_bytes);
        StopStep { emit, stopped: false }
    }

    /// The text still held back (none once a stop string matched: what followed it is dropped).
    pub fn finish(self) -> String {
        if self.stopped { String::new() } else { self.held }
    }

    /// Bytes at the end of the held text that are a proper prefix of some stop string. Such a suffix always starts
    /// on a character boundary, because stop strings are valid UTF-8 and cannot start with a continuation byte.
    fn longest_pending_prefix(&self) -> usize {
        let held = self.held.as_str();
        self.stops
            .iter()
            .filter_map(|stop| {
                (1..=(stop.len() - 1).min(held.len()))
                    .rev()
                    .find(|&n| stop.is_char_boundary(n) && held.ends_with(&stop[..n]))
            })
            .max()
            .unwrap_or(0)
    }
}
