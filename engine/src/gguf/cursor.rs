//! A forward reader over a [`ByteSource`] that never reads past the end and names the field it was reading
//! when it fails.

use std::fmt;

use super::GgufError;
use super::value::LeScalar;
use crate::source::ByteSource;

/// Bytes fetched per `read_at` from sources that are not in memory, so metadata made of many small fields costs
/// few reads (each may be an OPFS call or an HTTP range request).
const WINDOW_BYTES: u64 = 64 << 10;

/// Which part of the file is being read. Formatted only when an error is built, so reads stay allocation-free.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field<'a> {
    Header(&'static str),
    Key {
        index: u64,
    },
    ValueType {
        key: &'a str,
    },
    Value {
        key: &'a str,
    },
    /// `name` is empty until the tensor's name has been read.
    Tensor {
        index: u64,
        name: &'a str,
        part: &'static str,
    },
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Field::Header(part) => write!(f, "header.{part}"),
            Field::Key { index } => write!(f, "metadata[{index}].key"),
            Field::ValueType { key } => write!(f, "the type of metadata key `{key}`"),
            Field::Value { key } => write!(f, "the value of metadata key `{key}`"),
            Field::Tensor { index, name: "", part } => write!(f, "tensor_infos[{index}].{part}"),
            Field::Tensor { index, name, part } => write!(f, "tensor_infos[{index}].{part} (tensor `{name}`)"),
        }
    }
}

pub(crate) struct Cursor<'s, S: ?Sized> {
    source: &'s S,
    /// Every byte of the source when it is in memory; then `window` is unused.
    whole: Option<&'s [u8]>,
    len_bytes: u64,
    /// Invariant: `pos <= len_bytes`.
    pos: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl<'s, S: ByteSource + ?Sized> Cursor<'s, S> {
    pub fn new(source: &'s S) -> Self {
        Self {
            source,
            whole: source.as_slice(),
            len_bytes: source.len_bytes(),
            pos: 0,
            window: Vec::new(),
            window_start: 0,
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    pub fn remaining_bytes(&self) -> u64 {
        self.len_bytes - self.pos
    }

    /// The next `n` bytes. Callers bound `n` by a limit before calling, so `n` never comes straight from the file.
    pub fn take(&mut self, n: usize, field: Field<'_>) -> Result<&[u8], GgufError> {
        let start = self.pos;
        let truncated = |remaining_bytes| GgufError::Truncated {
            field: field.to_string(),
            offset: start,
            needed_bytes: n as u64,
            remaining_bytes,
        };
        let remaining_bytes = self.remaining_bytes();
        if n as u64 > remaining_bytes {
            return Err(truncated(remaining_bytes));
        }
        self.pos += n as u64;
        if let Some(whole) = self.whole {
            let begin = usize::try_from(start).map_err(|_| truncated(remaining_bytes))?;
            return whole.get(begin..begin + n).ok_or_else(|| truncated(remaining_bytes));
        }
        let window_end = self.window_start + self.window.len() as u64;
        if start < self.window_start || start + n as u64 > window_end {
            let fill_bytes = (n as u64).max(WINDOW_BYTES).min(remaining_bytes);
            self.window.resize(usize::try_from(fill_bytes).map_err(|_| truncated(remaining_bytes))?, 0);
            self.source
                .read_at(start, &mut self.window)
                .map_err(|source| GgufError::Source { field: field.to_string(), source })?;
            self.window_start = start;
        }
        let begin = (start - self.window_start) as usize;
        self.window.get(begin..begin + n).ok_or_else(|| truncated(remaining_bytes))
    }

    pub fn scalar<T: LeScalar>(&mut self, field: Field<'_>) -> Result<T, GgufError> {
        Ok(T::from_le_slice(self.take(T::BYTES, field)?))
    }

    /// `n` scalars; `n` is bounded by the caller (see [`take`](Self::take)).
    pub fn scalars<T: LeScalar>(&mut self, n: usize, field: Field<'_>) -> Result<Vec<T>, GgufError> {
        let bytes = self.take(n * T::BYTES, field)?;
        Ok(bytes.chunks_exact(T::BYTES).map(T::from_le_slice).collect())
    }

    pub fn bool(&mut self, field: Field<'_>) -> Result<bool, GgufError> {
        let offset = self.pos;
        match self.scalar::<u8>(field)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(GgufError::InvalidBool { field: field.to_string(), offset, byte }),
        }
    }

    /// A u64 length and that many bytes of UTF-8. The length is checked against `max_bytes` and the bytes left
    /// before the string is allocated.
    pub fn string(&mut self, max_bytes: u64, field: Field<'_>) -> Result<String, GgufError> {
        let offset = self.pos;
        let len_bytes: u64 = self.scalar(field)?;
        if len_bytes > max_bytes {
            return Err(GgufError::StringTooLong { field: field.to_string(), offset, len_bytes, max_bytes });
        }
        let bytes = self.take(len_bytes as usize, field)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(GgufError::NotUtf8 { field: field.to_string(), offset }),
        }
    }

    /// Fails unless `count` entries of at least `min_entry_bytes` each fit in the bytes left. `count_offset` is
    /// where the count itself was read.
    pub fn check_count(
        &self,
        count: u64,
        min_entry_bytes: u64,
        field: Field<'_>,
        count_offset: u64,
    ) -> Result<(), GgufError> {
        let needed_bytes = count.saturating_mul(min_entry_bytes);
        let remaining_bytes = self.remaining_bytes();
        if needed_bytes > remaining_bytes {
            return Err(GgufError::CountTooLarge {
                field: field.to_string(),
                offset: count_offset,
                count,
                needed_bytes,
                remaining_bytes,
            });
        }
        Ok(())
    }
}
