//! Tool calls in a Gemma 4 answer: `<|tool_call>call:NAME{key:value,…}<tool_call|>`, values in Gemma's notation
//! (strings between `<|"|>` delimiters with nothing escaped, bare keys, JSON numbers, true/false/null, nested
//! `{…}` and `[…]`). A call cut off before `<tool_call|>` (the model stopped at a stop token) is parsed to the end
//! of the text, as Ollama's parser does when the stream ends.

use super::ToolCall;
use super::gemma4_values::Q;
use crate::error::{Error, Result};
use serde_json::{Map, Value};

const OPEN: &str = "<|tool_call>";
const CLOSE: &str = "<tool_call|>";

/// Every tool call in `text`, in order; text around them is ignored.
pub fn parse_tool_calls(text: &str) -> Result<Vec<ToolCall>> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let body_and_after = &rest[start + OPEN.len()..];
        let (body, after) = match body_and_after.find(CLOSE) {
            Some(end) => (&body_and_after[..end], &body_and_after[end + CLOSE.len()..]),
            None => (body_and_after, ""),
        };
        calls.push(parse_call(body)?);
        rest = after;
    }
    Ok(calls)
}

fn parse_call(body: &str) -> Result<ToolCall> {
    let call = body.trim();
    let Some(call) = call.strip_prefix("call:") else { return Err(bad_call(body, "it does not start with `call:`")) };
    let Some(brace) = call.find('{') else { return Err(bad_call(body, "it has no `{` before its arguments")) };
    let name = call[..brace].trim();
    if name.is_empty() {
        return Err(bad_call(body, "the tool name is empty"));
    }
    let mut cursor = Cursor { text: call, at: brace };
    let arguments = cursor.value().map_err(|why| bad_call(body, &why))?;
    cursor.skip_space();
    if cursor.at != call.len() {
        return Err(bad_call(body, &format!("unexpected text after the arguments: `{}`", &call[cursor.at..])));
    }
    Ok(ToolCall { name: name.to_owned(), arguments })
}

fn bad_call(body: &str, why: &str) -> Error {
    Error::Unsupported { op: "parsing a tool call".into(), reason: format!("`{body}`: {why}") }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        self.at = self.text.len() - self.rest().trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        let found = self.rest().starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn value(&mut self) -> std::result::Result<Value, String> {
        self.skip_space();
        if self.eat(Q) {
            let end = self.rest().find(Q).ok_or("a string is missing its closing <|\"|>")?;
            let s = self.rest()[..end].to_owned();
            self.at += end + Q.len();
            return Ok(Value::String(s));
        }
        if self.eat("{") {
            return self.object();
        }
        if self.eat("[") {
            return self.array();
        }
        let token_end = self.rest().find(|c: char| c == ',' || c == '}' || c == ']' || c.is_whitespace());
        let token = &self.rest()[..token_end.unwrap_or(self.rest().len())];
        let value = match token {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => match serde_json::from_str::<serde_json::Number>(token) {
                Ok(n) => Value::Number(n),
                Err(_) => return Err(format!("`{token}` is not a value (strings go between <|\"|> delimiters)")),
            },
        };
        self.at += token.len();
        Ok(value)
    }

    fn object(&mut self) -> std::result::Result<Value, String> {
        let mut map = Map::new();
        loop {
            self.skip_space();
            if self.eat("}") {
                return Ok(Value::Object(map));
            }
            if !map.is_empty() && !self.eat(",") {
                return Err("expected `,` or `}` between arguments".into());
            }
            self.skip_space();
            let key = if self.eat(Q) {
                let end = self.rest().find(Q).ok_or("a key is missing its closing <|\"|>")?;
                let key = self.rest()[..end].to_owned();
                self.at += end + Q.len();
                key
            } else {
                let end = self.rest().find(|c: char| c == ':' || c == ',' || c == '{' || c == '}' || c.is_whitespace());
                let key = self.rest()[..end.unwrap_or(self.rest().len())].to_owned();
                self.at += key.len();
                key
            };
            self.skip_space();
            if key.is_empty() || !self.eat(":") {
                return Err(format!("expected `key:` at `{}`", self.rest()));
            }
            let value = self.value()?;
            map.insert(key, value);
        }
    }

    fn array(&mut self) -> std::result::Result<Value, String> {
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.eat("]") {
                return Ok(Value::Array(items));
            }
            if !items.is_empty() && !self.eat(",") {
                return Err("expected `,` or `]` between items".into());
            }
            items.push(self.value()?);
        }
    }
}
