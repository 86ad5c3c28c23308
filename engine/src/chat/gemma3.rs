//! Gemma 3 as Ollama renders it: `template/gemma3-instruct.gotmpl` run by `template.Execute`, which first joins
//! every system message into one system text (`"\n\n"` between them) and merges consecutive messages of the same
//! role. The system text goes at the top of the user turn at index 1, i.e. when a system message opens the
//! conversation. Tool messages and thinking have no place in this format and are left out. The prompt opens with
//! `<bos>` because the GGUF's `add_bos_token` makes Ollama's tokenizer add it.

use super::{Message, Role};

pub(super) fn render(messages: &[Message]) -> String {
    let system: Vec<&str> = messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.as_str()).collect();
    let system = system.join("\n\n");
    let mut collated: Vec<(Role, String)> = Vec::new();
    for message in messages {
        match collated.last_mut() {
            Some((role, content)) if *role == message.role && message.role != Role::Tool => {
                content.push_str("\n\n");
                content.push_str(&message.content);
            }
            _ => collated.push((message.role, message.content.clone())),
        }
    }
    let mut out = String::from("<bos>");
    for (i, (role, content)) in collated.iter().enumerate() {
        match role {
            Role::User => {
                out.push_str("<start_of_turn>user\n");
                if i == 1 && !system.is_empty() {
                    out.push_str(&system);
                    out.push_str("\n\n");
                }
                out.push_str(content);
                out.push_str("<end_of_turn>\n");
            }
            Role::Assistant => {
                out.push_str("<start_of_turn>model\n");
                out.push_str(content);
                out.push_str("<end_of_turn>\n");
            }
            Role::System | Role::Tool => {}
        }
    }
    if !collated.is_empty() {
        out.push_str("<start_of_turn>model\n");
    }
    out
}
