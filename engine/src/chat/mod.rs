//! Conversations as prompt text, the way Ollama renders them, and the model's answer taken apart again.
//!
//! - [`ChatTemplate::render`]: Gemma 4 as Ollama's Go renderer `model/renderers/gemma4.go` (`gemma4-small` for
//!   E2B/E4B, `gemma4-large` from 12B up), Gemma 3 as Ollama's `template/gemma3-instruct.gotmpl`, both starting
//!   with one literal `<bos>` (gemma4.md §2.4 item 2, §5, §6). `golden/chat/` holds the HF templates' renders
//!   they are tested against, and where Ollama and HF differ.
//! - [`ThinkingSplitter`]: Gemma 4's thought channel `<|channel>thought\n … <channel|>` apart from the answer.
//! - [`parse_tool_calls`]: `<|tool_call>call:NAME{…}<tool_call|>` back into [`ToolCall`]s.

mod gemma3;
mod gemma4;
mod gemma4_schema;
mod gemma4_values;
mod thinking;
mod tool_calls;

pub use thinking::{Split, ThinkingSplitter};
pub use tool_calls::parse_tool_calls;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ollama also accepts `developer` for it.
    #[serde(alias = "developer")]
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    /// An assistant turn's thought channel, kept apart from `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the tool whose result this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Message {
        Message { role, content: content.into(), thinking: None, tool_calls: Vec::new(), tool_name: None }
    }

    pub fn system(content: impl Into<String>) -> Message {
        Message::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new(Role::Assistant, content)
    }

    /// The result of calling `tool_name`.
    pub fn tool(tool_name: impl Into<String>, content: impl Into<String>) -> Message {
        Message { tool_name: Some(tool_name.into()), ..Message::new(Role::Tool, content) }
    }
}

/// A call the model made: the tool's name and its arguments as a JSON object.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

/// A tool offered to the model, as Ollama's `api.Tool` function: `parameters` is a JSON schema object
/// (`{"type":"object","properties":{…},"required":[…]}`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChatTemplate {
    /// Ollama's `gemma4-small` (E2B, E4B).
    Gemma4Small,
    /// Ollama's `gemma4-large` (12B and up): an empty thought block opens the answer when thinking is off.
    Gemma4Large,
    Gemma3,
}

/// Ollama's `gemma4LargeMinParameterCount` (`server/renderer_resolution.go`).
const GEMMA4_LARGE_MIN_PARAMETERS: u64 = 12_000_000_000;

impl ChatTemplate {
    /// The template for the model's architecture. For Gemma 4 this follows Ollama's `resolveGemma4Renderer`: a
    /// name containing `e2b`/`e4b` is small and one containing `12b`/`26b`/`31b` large — here the names are the
    /// GGUF's `general.name`, `general.basename`, `general.finetune` and `general.size_label` — and otherwise
    /// the parameter count decides, counted as Ollama counts it for `model_type`: every element of every tensor
    /// in the file (an Ollama blob includes its vision and audio towers).
    pub fn for_model(gguf: &GgufFile) -> Result<ChatTemplate> {
        match gguf.architecture()? {
            "gemma3" => Ok(ChatTemplate::Gemma3),
            "gemma4" => {
                let names = ["general.name", "general.basename", "general.finetune", "general.size_label"];
                let by_name = names.iter().filter_map(|key| gguf.get_str(key).ok()).find_map(gemma4_by_name);
                Ok(by_name.unwrap_or_else(|| {
                    let parameters: u64 = gguf.tensors().iter().map(|t| t.elems()).sum();
                    if parameters >= GEMMA4_LARGE_MIN_PARAMETERS {
                        ChatTemplate::Gemma4Large
                    } else {
                        ChatTemplate::Gemma4Small
                    }
                }))
            }
            other => Err(Error::Unsupported {
                op: "chat template".into(),
                reason: format!("no chat template for architecture `{other}` (gemma3 and gemma4 have one)"),
            }),
        }
    }

    /// The whole prompt: one literal `<bos>` (the tokenizer must parse special-token text and add no BOS of its
    /// own), the conversation, and the opening of the model's turn. `thinking` turns on Gemma 4's thought
    /// channel; Gemma 3 has none and ignores it, as it ignores tools.
    pub fn render(&self, messages: &[Message], tools: &[Tool], thinking: bool) -> Result<String> {
        match self {
            ChatTemplate::Gemma4Small => gemma4::render(messages, tools, thinking, false),
            ChatTemplate::Gemma4Large => gemma4::render(messages, tools, thinking, true),
            ChatTemplate::Gemma3 => Ok(gemma3::render(messages)),
        }
    }

    /// Text that ends the model's turn. Gemma 4 also ends a turn at `<|tool_response>` after a tool call (the
    /// caller runs the tool and renders its response); Ollama's params layer for gemma4 has `<turn|>`, Gemma 3's
    /// `<end_of_turn>`.
    pub fn stop_strings(&self) -> Vec<String> {
        match self {
            ChatTemplate::Gemma4Small | ChatTemplate::Gemma4Large => {
                vec!["<turn|>".to_owned(), "<|tool_response>".to_owned()]
            }
            ChatTemplate::Gemma3 => vec!["<end_of_turn>".to_owned()],
        }
    }
}

/// Ollama's `gemma4RendererFromName`.
fn gemma4_by_name(name: &str) -> Option<ChatTemplate> {
    let lower = name.to_lowercase();
    if ["e2b", "e4b"].iter().any(|s| lower.contains(s)) {
        Some(ChatTemplate::Gemma4Small)
    } else if ["12b", "26b", "31b"].iter().any(|s| lower.contains(s)) {
        Some(ChatTemplate::Gemma4Large)
    } else {
        None
    }
}
