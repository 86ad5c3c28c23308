//! Decoding while tokens arrive one at a time. A character may be split over several byte tokens (`<0xF0>`,
//! `<0x9F>`, …), so bytes that could still become a character are held back until they do. Everything pushed plus
//! [`StreamDecoder::finish`] equals [`Tokenizer::decode`] of all the ids.

use super::{DecodeSpecial, Tokenizer};

#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Bytes not yet returned: at most an incomplete UTF-8 sequence between calls.
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The text completed by token `id`; empty while a character is still incomplete.
    pub fn push(&mut self, tok: &Tokenizer, id: u32, special: DecodeSpecial) -> String {
        tok.push_piece_bytes(id, special, &mut self.pending);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(valid) => {
                    text.push_str(valid);
                    self.pending.clear();
                    return text;
                }
                Err(error) => {
                    let valid_up_to = error.valid_up_to();
                    text.push_str(std::str::from_utf8(&self.pending[..valid_up_to]).unwrap_or_default());
                    let Some(invalid_len) = error.error_len() else {
                        // An incomplete sequence at the end: keep it for the next token.
                        self.pending.drain(..valid_up_to);
                        return text;
                    };
                    // Invalid whatever follows: one U+FFFD, as `String::from_utf8_lossy` writes it.
                    text.push(char::REPLACEMENT_CHARACTER);
                    self.pending.drain(..valid_up_to + invalid_len);
                }
            }
        }
    }

    /// What is still held back, lossily decoded (an incomplete sequence at the end becomes U+FFFD).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}
