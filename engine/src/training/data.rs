//! Training data: JSONL lines into samples shifted for next-token prediction with a per-row training mask, and
//! the seeded order an epoch reads them in. Parsed from text, so it builds for the browser; reading the file is the
//! caller's.
//!
//! One JSON object per non-empty line, with exactly one of:
//! - `{"text": "…"}`: trained on every token. Encoded as a prompt is ([`Tokenizer::encode_prompt`]: one BOS where
//!   the model wants it, special-token text read as tokens, as HF's tokenizer does by default) and with no EOS,
//!   as HF's causal-LM scripts tokenize plain text: a text sample teaches the text, not where documents end.
//! - `{"messages": [{"role": "system" | "user" | "assistant", "content": "…"}, …]}`: rendered with the model's
//!   chat template ([`ChatTemplate::render`]) and trained only on the model's turns — each turn's text and the
//!   marker that closes it (`<turn|>`, `<end_of_turn>`), so the model learns to stop, but not the header that
//!   opens it (`<|turn>model\n`, which the prompt supplies at inference) nor the newline after the close.
//! - `{"ids": [2, 651, …]}`: token ids taken as they are (no BOS added), all trained.
//!
//! Other keys (an id, a source) are ignored, except the message fields the templates would render but training
//! does not support (`thinking`, `tool_calls`, `tool_name`), which are refused rather than silently dropped. Any
//! bad line is a [`DataError`] naming its 1-based line number.
//!
//! Length: `seq_len` counts a sample's rows (`tokens.len()`, after the shift). Rows after the last trained target
//! are dropped first (attention is causal: they change no loss, e.g. the generation prompt a chat render ends
//! with). A longer sample keeps its first `seq_len + 1` tokens, if they still hold a trained target, and
//! [`Dataset::truncated`] counts it; with [`DataOptions::refuse_long`] it is an error instead.

use crate::chat::{ChatTemplate, Message, Role};
use crate::sampling::{SplitMix64, Xoshiro256};
use crate::tokenizer::{Special, Tokenizer};
use serde_json::{Map, Value};
use std::ops::Range;

/// One sequence, already shifted: row `i` reads `tokens[i]` and is trained to predict `targets[i]`, or not
/// trained on where it is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub tokens: Vec<u32>,
    pub targets: Vec<Option<u32>>,
}

impl Sample {
    /// The rows trained on.
    pub fn trained_rows(&self) -> usize {
        self.targets.iter().filter(|t| t.is_some()).count()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataOptions {
    /// The model's vocabulary (its embedding rows, `TextConfig::vocab`): every id must be below it. It can be
    /// smaller than the tokenizer's (Ollama's Gemma 3 files), so tokenized text is checked too.
    pub vocab_size: u32,
    /// The most rows a sample may have (`--seq-len`).
    pub seq_len: u32,
    /// Refuse a sample longer than `seq_len` instead of truncating it.
    pub refuse_long: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    /// How many samples were cut to `seq_len`.
    pub truncated: usize,
}

/// Where a run is in its data, for checkpoints: sample `index` of epoch `epoch`'s [order](Dataset::order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub index: usize,
}

impl DataPosition {
    /// The position `n` samples on in a dataset of `len` samples (`len > 0`), into the next epochs past the end.
    pub fn advance(self, n: usize, len: usize) -> DataPosition {
        let (total, len) = (self.index as u64 + n as u64, len as u64);
        DataPosition { epoch: self.epoch + total / len, index: (total % len) as usize }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("line {line}: {error}")]
    Line { line: usize, error: LineError },
    #[error("the data has no samples: every line is empty")]
    Empty,
    #[error("the sequence length must be at least 1 token")]
    ZeroSeqLen,
}

/// What is wrong with one line. Messages are named by their place in `messages`, from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("has none of `text`, `messages` and `ids`")]
    NoInput,
    #[error("has more than one of `text`, `messages` and `ids`")]
    SeveralInputs,
    #[error("`{field}` is missing or not {expected}")]
    WrongType { field: String, expected: &'static str },
    #[error("`text` is empty")]
    EmptyText,
    #[error("`messages` is empty")]
    NoMessages,
    #[error("`messages[{message}]` has role `{role}`; the roles are system, user and assistant")]
    UnknownRole { message: usize, role: String },
    #[error("`messages[{message}].{key}` is not supported in training data (only role and content are read)")]
    UnsupportedKey { message: usize, key: &'static str },
    #[error("token {index} is id {id}, not below the model's vocabulary size {vocab_size}")]
    IdOutOfRange { index: usize, id: u32, vocab_size: u32 },
    #[error("the chat template failed: {0}")]
    Render(String),
    #[error(
        "the chat template renders the messages before `messages[{message}]` differently once later messages \
         follow, so the model's turn cannot be placed (Gemma 3 folds every system message into the first user \
         turn: put system messages first)"
    )]
    UnstableRender { message: usize },
    #[error(
        "the model's turn at `messages[{message}]` does not start and end between tokens: its text merges with \
         the turn's header or what follows into one token (does it start with whitespace?)"
    )]
    TurnBoundary { message: usize },
    #[error("nothing to train on (no model turn, or a single token)")]
    NothingToTrain,
    #[error("nothing to train on in the first {seq_len} tokens")]
    NothingToTrainWithin { seq_len: u32 },
    #[error(
        "{rows} rows, more than the sequence length {seq_len} (n tokens make n − 1 rows: the last is only predicted)"
    )]
    TooLong { rows: usize, seq_len: u32 },
}

const INPUT_KEYS: [&str; 3] = ["text", "messages", "ids"];
const UNSUPPORTED_MESSAGE_KEYS: [&str; 3] = ["thinking", "tool_calls", "tool_name"];

impl Dataset {
    /// Every sample of a JSONL text; `template` is the model's (`ChatTemplate::for_model`).
    pub fn from_jsonl(
        jsonl: &str,
        tokenizer: &Tokenizer,
        template: ChatTemplate,
        options: &DataOptions,
    ) -> Result<Dataset, DataError> {
        if options.seq_len == 0 {
            return Err(DataError::ZeroSeqLen);
        }
        let mut dataset = Dataset { samples: Vec::new(), truncated: 0 };
        let jsonl = jsonl.strip_prefix('\u{feff}').unwrap_or(jsonl);
        for (i, line) in jsonl.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
            let (sample, truncated) = parse_line(line, tokenizer, template, options)
                .map_err(|error| DataError::Line { line: i + 1, error })?;
            dataset.samples.push(sample);
            dataset.truncated += usize::from(truncated);
        }
        if dataset.samples.is_empty() {
            return Err(DataError::Empty);
        }
        Ok(dataset)
    }

    /// The order epoch `epoch` reads the samples in: a Fisher–Yates shuffle drawn from `seed` and `epoch` alone,
    /// so a resumed run recomputes it, and each epoch has its own.
    pub fn order(&self, seed: u64, epoch: u64) -> Vec<usize> {
        // The epoch is hashed before it is mixed in: seeds of nearby epochs would give overlapping SplitMix64
        // streams if they differed by a multiple of its increment.
        let mut rng = Xoshiro256::seed_from_u64(seed ^ SplitMix64(epoch).next_u64());
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        for i in (1..order.len()).rev() {
            // Uniform in 0..=i by the high half of a 64×64-bit product; its bias, under (i+1)/2⁶⁴, is immaterial.
            let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
            order.swap(i, j);
        }
        order
    }
}

/// One line's sample, and whether it was truncated.
fn parse_line(
    line: &str,
    tokenizer: &Tokenizer,
    template: ChatTemplate,
    options: &DataOptions,
) -> Result<(Sample, bool), LineError> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde's position names line 1 of the one line it read; the column is what helps.
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = e.to_string();
        LineError::Json(match message.strip_suffix(&suffix) {
            Some(what) => format!("column {}: {what}", e.column()),
            None => message,
        })
    })?;
    let Value::Object(object) = value else { return Err(LineError::NotAnObject) };
    let present: Vec<&str> = INPUT_KEYS.into_iter().filter(|key| object.contains_key(*key)).collect();
    let (ids, trained) = match present[..] {
        [] => return Err(LineError::NoInput),
        ["text"] => {
            let text = object["text"].as_str().ok_or_else(|| wrong_type("text", "a string"))?;
            if text.is_empty() {
                return Err(LineError::EmptyText);
            }
            let ids = tokenizer.encode_prompt(text);
            let trained = vec![true; ids.len()];
            (ids, trained)
        }
        ["messages"] => chat_tokens(&messages(&object["messages"])?, tokenizer, template)?,
        ["ids"] => {
            let ids = ids(&object["ids"])?;
            let trained = vec![true; ids.len()];
            (ids, trained)
        }
        _ => return Err(LineError::SeveralInputs),
    };
    shift(ids, trained, options)
}

fn wrong_type(field: impl Into<String>, expected: &'static str) -> LineError {
    LineError::WrongType { field: field.into(), expected }
}

fn ids(value: &Value) -> Result<Vec<u32>, LineError> {
    let expected = "an array of token ids (integers from 0)";
    let list = value.as_array().ok_or_else(|| wrong_type("ids", expected))?;
    list.iter()
        .enumerate()
        .map(|(i, id)| {
            id.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| wrong_type(format!("ids[{i}]"), expected))
        })
        .collect()
}

fn messages(value: &Value) -> Result<Vec<Message>, LineError> {
    let list = value.as_array().ok_or_else(|| wrong_type("messages", "an array of messages"))?;
    if list.is_empty() {
        return Err(LineError::NoMessages);
    }
    list.iter().enumerate().map(|(i, message)| message_at(i, message)).collect()
}

fn message_at(i: usize, value: &Value) -> Result<Message, LineError> {
    let object: &Map<String, Value> =
        value.as_object().ok_or_else(|| wrong_type(format!("messages[{i}]"), "an object with role and content"))?;
    if let Some(key) = UNSUPPORTED_MESSAGE_KEYS.into_iter().find(|key| object.contains_key(*key)) {
        return Err(LineError::UnsupportedKey { message: i, key });
    }
    let string = |key: &str| {
        object.get(key).and_then(Value::as_str).ok_or_else(|| wrong_type(format!("messages[{i}].{key}"), "a string"))
    };
    let (role, content) = (string("role")?, string("content")?);
    match role {
        "system" => Ok(Message::system(content)),
        "user" => Ok(Message::user(content)),
        "assistant" => Ok(Message::assistant(content)),
        _ => Err(LineError::UnknownRole { message: i, role: role.to_owned() }),
    }
}

/// How a template writes the model's turn: the header that opens it, what the generation prompt adds after the
/// header (Gemma 4 large's empty thought block, which a turn in the history does not have), and the marker that
/// closes it.
struct ModelTurn {
    header: &'static str,
    prompt_tail: &'static str,
    close: &'static str,
}

impl ModelTurn {
    fn of(template: ChatTemplate) -> ModelTurn {
        match template {
            ChatTemplate::Gemma4Small => ModelTurn { header: "<|turn>model\n", prompt_tail: "", close: "<turn|>" },
            ChatTemplate::Gemma4Large => {
                ModelTurn { header: "<|turn>model\n", prompt_tail: "<|channel>thought\n<channel|>", close: "<turn|>" }
            }
            ChatTemplate::Gemma3 => {
                ModelTurn { header: "<start_of_turn>model\n", prompt_tail: "", close: "<end_of_turn>" }
            }
        }
    }
}

/// The tokens of a conversation's render through its last model turn, and which are trained.
///
/// The model's turns are placed by rendering the conversation prefix by prefix rather than by searching the
/// render for turn markers, which message text may contain too. Each run of assistant messages is one turn (both
/// templates write adjacent ones into one): the render of the messages before it, less its generation prompt,
/// must be where the whole render starts, followed by the turn's header; the trained text runs from there to the
/// end of the last close marker in the render of the messages through the turn (also a prefix of the whole).
/// The render is then tokenized piece by piece at those boundaries, and the pieces must add up to the tokens of
/// the whole render, which proves every boundary falls between tokens.
fn chat_tokens(
    messages: &[Message],
    tokenizer: &Tokenizer,
    template: ChatTemplate,
) -> Result<(Vec<u32>, Vec<bool>), LineError> {
    let turn = ModelTurn::of(template);
    let generation_prompt = format!("{}{}", turn.header, turn.prompt_tail);
    let render = |n: usize| template.render(&messages[..n], &[], false).map_err(|e| LineError::Render(e.to_string()));
    // The first n messages as they stand in a longer conversation. (Gemma 3 writes no generation prompt for no
    // messages.)
    let history = |n: usize| -> Result<String, LineError> {
        let mut text = render(n)?;
        if text.ends_with(generation_prompt.as_str()) {
            text.truncate(text.len() - generation_prompt.len());
        }
        Ok(text)
    };
    let whole = render(messages.len())?;

    let mut turns: Vec<(usize, Range<usize>)> = Vec::new();
    let mut k = 0;
    while k < messages.len() {
        if messages[k].role != Role::Assistant {
            k += 1;
            continue;
        }
        let first = k;
        while messages.get(k).is_some_and(|m| m.role == Role::Assistant) {
            k += 1;
        }
        let unstable = LineError::UnstableRender { message: first };
        let before = history(first)?;
        if !whole.starts_with(&before) || !whole[before.len()..].starts_with(turn.header) {
            return Err(unstable);
        }
        let start = before.len() + turn.header.len();
        let through = history(k)?;
        if !whole.starts_with(&through) || through.len() < start {
            return Err(unstable);
        }
        let end = through[start..].rfind(turn.close).ok_or(unstable)? + start + turn.close.len();
        turns.push((first, start..end));
    }

    let whole_ids = tokenizer.encode(&whole, Special::Parse);
    let (mut ids, mut trained) = (Vec::new(), Vec::new());
    let mut at = 0;
    for (message, range) in turns {
        for (piece, train) in [(at..range.start, false), (range.clone(), true)] {
            ids.extend(tokenizer.encode(&whole[piece], Special::Parse));
            trained.resize(ids.len(), train);
            if !whole_ids.starts_with(&ids) {
                return Err(LineError::TurnBoundary { message });
            }
        }
        at = range.end;
    }
    Ok((ids, trained))
}

/// The sample of `ids` where `trained[i]` says whether `ids[i]` is a target, cut to the length policy (module doc).
fn shift(mut ids: Vec<u32>, mut trained: Vec<bool>, options: &DataOptions) -> Result<(Sample, bool), LineError> {
    if let Some((index, &id)) = ids.iter().enumerate().find(|(_, id)| **id >= options.vocab_size) {
        return Err(LineError::IdOutOfRange { index, id, vocab_size: options.vocab_size });
    }
    // Rows after the last trained target change no loss; a lone first token is never a target.
    let drop_untrained_tail = |ids: &mut Vec<u32>, trained: &mut Vec<bool>| {
        let keep = trained.iter().skip(1).rposition(|&t| t).map_or(0, |i| i + 2);
        ids.truncate(keep);
        trained.truncate(keep);
    };
    drop_untrained_tail(&mut ids, &mut trained);
    if ids.is_empty() {
        return Err(LineError::NothingToTrain);
    }
    let max_tokens = options.seq_len as usize + 1;
    let truncated = ids.len() > max_tokens;
    if truncated {
        if options.refuse_long {
            return Err(LineError::TooLong { rows: ids.len() - 1, seq_len: options.seq_len });
        }
        ids.truncate(max_tokens);
        trained.truncate(max_tokens);
        drop_untrained_tail(&mut ids, &mut trained);
        if ids.is_empty() {
            return Err(LineError::NothingToTrainWithin { seq_len: options.seq_len });
        }
    }
    let targets = ids.iter().zip(&trained).skip(1).map(|(&id, &train)| train.then_some(id)).collect();
    ids.pop();
    Ok((Sample { tokens: ids, targets }, truncated))
}
