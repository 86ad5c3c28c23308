//! Gemma 4 turns as Ollama's `Gemma4Renderer.Render` writes them (gemma4.md §6): an optional system turn
//! (thinking switch, system text, tool declarations), then one turn per message, where tool results fold into
//! the assistant turn that called the tools and adjacent assistant messages share one model turn.

use super::gemma4_schema::declaration;
use super::gemma4_values::{Q, format_arg_value};
use super::{Message, Role, Tool, ToolCall};
use crate::error::Result;

const CHANNEL_OPEN: &str = "<|channel>";
const CHANNEL_CLOSE: &str = "<channel|>";

/// What the last rendered message left open, which decides how the prompt ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trailing {
    Nothing,
    ToolCall,
    ToolResponse,
}

pub(super) fn render(messages: &[Message], tools: &[Tool], thinking: bool, large: bool) -> Result<String> {
    let mut out = String::from("<bos>");
    let (system, turns) = match messages.first() {
        Some(first) if first.role == Role::System => (Some(first.content.as_str()), &messages[1..]),
        _ => (None, messages),
    };
    if system.is_some() || !tools.is_empty() || thinking {
        out.push_str("<|turn>system\n");
        if thinking {
            out.push_str("<|think|>\n");
        }
        out.push_str(system.unwrap_or("").trim());
        for tool in tools {
            out.push_str(&declaration(tool)?);
        }
        out.push_str("<turn|>\n");
    }

    let last_user = turns.iter().rposition(|m| m.role == Role::User);
    let mut trailing = Trailing::Nothing;
    let mut previous_role: Option<Role> = None;
    for (i, message) in turns.iter().enumerate() {
        if message.role == Role::Tool {
            continue;
        }
        trailing = Trailing::Nothing;
        let is_model = message.role == Role::Assistant;
        if !(is_model && previous_role == Some(Role::Assistant)) {
            out.push_str("<|turn>");
            out.push_str(role_name(message.role));
            out.push('\n');
        }
        let thought = message.thinking.as_deref().unwrap_or("");
        if is_model && !thought.is_empty() && last_user.is_none_or(|u| i > u) {
            out.push_str("<|channel>thought\n");
            out.push_str(thought);
            out.push_str("\n<channel|>");
        }
        for call in &message.tool_calls {
            out.push_str(&format_tool_call(call));
            trailing = Trailing::ToolCall;
        }
        let mut responded = false;
        if !message.tool_calls.is_empty() {
            for response in turns[i + 1..].iter().take_while(|m| m.role == Role::Tool) {
                let name = response.tool_name.as_deref().filter(|n| !n.is_empty()).unwrap_or("unknown");
                out.push_str("<|tool_response>response:");
                out.push_str(name);
                out.push_str("{value:");
                out.push_str(&format!("{Q}{}{Q}", response.content));
                out.push_str("}<tool_response|>");
                responded = true;
                trailing = Trailing::ToolResponse;
            }
        }
        let has_content = if is_model {
            let content = strip_thinking(&message.content);
            out.push_str(&content);
            !content.trim().is_empty()
        } else {
            let content = message.content.trim();
            out.push_str(content);
            !content.is_empty()
        };

        let next_role = turns[i + 1..].iter().map(|m| m.role).find(|&r| r != Role::Tool);
        let continues = is_model && next_role == Some(Role::Assistant) && (message.tool_calls.is_empty() || responded);
        // A turn that ends in tool results with nothing after them stays open for the model's answer.
        let open_for_answer = responded && !has_content && next_role.is_none();
        if trailing == Trailing::ToolCall {
            out.push_str("<|tool_response>");
        } else if !(continues || open_for_answer) {
            out.push_str("<turn|>\n");
        }
        previous_role = Some(message.role);
    }

    match trailing {
        Trailing::Nothing => {
            out.push_str("<|turn>model\n");
            if large && !thinking {
                out.push_str("<|channel>thought\n<channel|>");
            }
        }
        Trailing::ToolResponse if thinking => out.push_str("<|channel>thought\n"),
        Trailing::ToolResponse | Trailing::ToolCall => {}
    }
    Ok(out)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "model",
        Role::Tool => "tool",
    }
}

/// `<|tool_call>call:NAME{key:value,…}<tool_call|>` with keys sorted; arguments that are not an object (Ollama's
/// arguments are always a map) render as no arguments.
pub(super) fn format_tool_call(call: &ToolCall) -> String {
    let mut out = format!("<|tool_call>call:{}{{", call.name);
    if let Some(arguments) = call.arguments.as_object() {
        let mut keys: Vec<&String> = arguments.keys().collect();
        keys.sort();
        let fields: Vec<String> =
            keys.iter().map(|k| format!("{k}:{}", format_arg_value(&arguments[k.as_str()]))).collect();
        out.push_str(&fields.join(","));
    }
    out.push_str("}<tool_call|>");
    out
}

/// Drops every `<|channel>…<channel|>` block (and an unclosed one to the end), then trims, as Ollama's
/// `stripThinking`. A `<channel|>` with no opening tag stays (the HF template would drop it; see golden/chat).
fn strip_thinking(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(CHANNEL_OPEN) {
        out.push_str(&rest[..start]);
        match rest[start..].find(CHANNEL_CLOSE) {
            Some(end) => rest = &rest[start + end + CHANNEL_CLOSE.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}
