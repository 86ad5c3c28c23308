//! ferrogem's chat templates against the HF Jinja templates rendered by python jinja2
//! (golden/scripts/render_chat_goldens.py): byte for byte where Ollama renders as HF does, and, where Ollama's
//! renderer is known to differ, Ollama's side of the difference (golden/chat/README.md lists them).

use ferrogem::chat::{ChatTemplate, Message, Role, Tool, ToolCall, parse_tool_calls};
use ferrogem::gguf::{GgufFile, GgufWriter, Value};
use ferrogem::source::MmapSource;

#[derive(serde::Deserialize)]
struct Golden {
    source: String,
    cases: Vec<Case>,
    differences_from_ollama: Vec<Difference>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    thinking: bool,
    messages: Vec<Message>,
    tools: Vec<Tool>,
    rendered: String,
}

#[derive(serde::Deserialize)]
struct Difference {
    name: String,
    messages: Vec<Message>,
    tools: Vec<Tool>,
    hf_rendered: String,
    hf_fragment: String,
    ollama_fragment: String,
}

fn golden(name: &str) -> Golden {
    let path = format!("{}/../golden/chat/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every case of one golden file, all mismatches reported together.
fn check_golden(name: &str, template: ChatTemplate, expected_cases: usize) {
    let golden = golden(name);
    assert_eq!(golden.cases.len(), expected_cases, "{name}: case count ({})", golden.source);
    let mut failures = Vec::new();
    for case in &golden.cases {
        let ours = template.render(&case.messages, &case.tools, case.thinking).unwrap();
        if ours != case.rendered {
            failures.push(format!("{name}/{}:\n  ours: {ours:?}\n  HF:   {:?}", case.name, case.rendered));
        }
        assert_eq!(ours.matches("<bos>").count(), 1, "{name}/{}: exactly one BOS", case.name);
        assert!(ours.starts_with("<bos>"), "{name}/{}", case.name);
    }
    for difference in &golden.differences_from_ollama {
        let ours = template.render(&difference.messages, &difference.tools, false).unwrap();
        assert!(difference.hf_rendered.contains(&difference.hf_fragment), "{name}/{}: golden", difference.name);
        if !ours.contains(&difference.ollama_fragment) || ours.contains(&difference.hf_fragment) {
            failures.push(format!(
                "{name}/{} (known difference): expected Ollama's {:?}, not HF's {:?}, in\n  ours: {ours:?}",
                difference.name, difference.ollama_fragment, difference.hf_fragment
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} renders differ:\n{}",
        failures.len(),
        golden.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn gemma4_small_matches_the_hf_e2b_template() {
    check_golden("gemma4_small", ChatTemplate::Gemma4Small, 18);
}

#[test]
fn gemma4_large_matches_the_hf_31b_template() {
    check_golden("gemma4_large", ChatTemplate::Gemma4Large, 18);
}

#[test]
fn gemma3_matches_the_hf_template() {
    check_golden("gemma3", ChatTemplate::Gemma3, 4);
}

/// Ollama's `template.Execute` merges consecutive messages of one role and joins every system message into the
/// text it folds into the user turn at index 1 (`template/gemma3-instruct.gotmpl`), which HF's template rejects.
#[test]
fn gemma3_merges_consecutive_roles_as_ollama_does() {
    let messages = [
        Message::system("Be brief."),
        Message::system("Be kind."),
        Message::user("One"),
        Message::user("Two"),
        Message::tool("bash", "ignored"),
    ];
    let rendered = ChatTemplate::Gemma3.render(&messages, &[], true).unwrap();
    assert_eq!(
        rendered,
        "<bos><start_of_turn>user\nBe brief.\n\nBe kind.\n\nOne\n\nTwo<end_of_turn>\n<start_of_turn>model\n"
    );
    let late_system = [Message::user("Hi"), Message::system("ignored: not at index 0")];
    let rendered = ChatTemplate::Gemma3.render(&late_system, &[], false).unwrap();
    assert_eq!(rendered, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
}

/// `server/renderer_resolution.go`: a name with e2b/e4b is small, 12b/26b/31b large, otherwise the parameter
/// count decides (the tiny fixtures are small).
#[test]
fn templates_follow_the_architecture_and_ollamas_size_rule() {
    let fixture = |name: &str| {
        let path = format!("{}/../golden/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        ChatTemplate::for_model(&GgufFile::read(&MmapSource::open(&path).unwrap()).unwrap()).unwrap()
    };
    assert_eq!(fixture("tiny-gemma4-f32.gguf"), ChatTemplate::Gemma4Small);
    assert_eq!(fixture("tiny-gemma3-f32.gguf"), ChatTemplate::Gemma3);
    let named = |arch: &str, name: &str| {
        let mut writer = GgufWriter::new(3);
        writer.add_metadata("general.architecture", Value::String(arch.into()));
        writer.add_metadata("general.name", Value::String(name.into()));
        let bytes = writer.to_bytes().unwrap();
        ChatTemplate::for_model(&GgufFile::read(&bytes[..]).unwrap()).ok()
    };
    assert_eq!(named("gemma4", "Gemma 4 31B It"), Some(ChatTemplate::Gemma4Large));
    assert_eq!(named("gemma4", "gemma-4-26B-A4B-it"), Some(ChatTemplate::Gemma4Large));
    assert_eq!(named("gemma4", "Gemma 4 E4B It"), Some(ChatTemplate::Gemma4Small));
    assert_eq!(named("gemma4", "Gemma 4"), Some(ChatTemplate::Gemma4Small));
    assert_eq!(named("llama", "Llama 3"), None);
}

#[test]
fn stop_strings_end_the_turn() {
    assert_eq!(ChatTemplate::Gemma3.stop_strings(), ["<end_of_turn>"]);
    assert!(ChatTemplate::Gemma4Small.stop_strings().contains(&"<turn|>".to_owned()));
    assert_eq!(ChatTemplate::Gemma4Small.stop_strings(), ChatTemplate::Gemma4Large.stop_strings());
}

#[test]
fn messages_read_ollama_style_json() {
    let m: Message = serde_json::from_str(r#"{"role":"developer","content":"x"}"#).unwrap();
    assert_eq!(m.role, Role::System);
    let m: Message = serde_json::from_str(r#"{"role":"tool","content":"42","tool_name":"calc"}"#).unwrap();
    assert_eq!(m, Message::tool("calc", "42"));
    assert!(serde_json::from_str::<Message>(r#"{"role":"wizard","content":"x"}"#).is_err());
}

#[test]
fn malformed_tool_schemas_are_errors_not_panics() {
    let tool = |parameters: serde_json::Value| Tool { name: "t".into(), description: "d".into(), parameters };
    let render =
        |t: Tool| ChatTemplate::Gemma4Small.render(&[Message::user("hi")], &[t], false).map_err(|e| e.to_string());
    assert!(render(tool(serde_json::json!("not an object"))).is_err());
    assert!(render(tool(serde_json::json!({"type": 5}))).is_err());
    assert!(render(tool(serde_json::json!({"type": "object", "properties": {"x": {"type": 7}}}))).is_err());
    assert!(render(tool(serde_json::json!({"type": "object", "required": [1]}))).is_err());
    // No parameters at all is fine: a bare declaration.
    assert_eq!(
        render(tool(serde_json::Value::Null)).unwrap(),
        "<bos><|turn>system\n<|tool>declaration:t{description:<|\"|>d<|\"|>}<tool|><turn|>\n<|turn>user\nhi<turn|>\n<|turn>model\n"
    );
}

/// The call text of the golden `tool_call_rich_arguments` case (the HF template's rendering) parses back.
#[test]
fn tool_calls_parse_back_from_the_hf_rendering() {
    let case = golden("gemma4_small").cases.into_iter().find(|c| c.name == "tool_call_rich_arguments").unwrap();
    let start = case.rendered.find("<|tool_call>").unwrap();
    let end = case.rendered.find("<tool_call|>").unwrap() + "<tool_call|>".len();
    let parsed = parse_tool_calls(&case.rendered[start..end]).unwrap();
    let expected = &case.messages.iter().find(|m| !m.tool_calls.is_empty()).unwrap().tool_calls;
    assert_eq!(&parsed, expected);
}

#[test]
fn tool_calls_parse_from_model_output() {
    let text = "Sure.<|tool_call>call:get_weather{city:<|\"|>San José, \"CR\"<|\"|>,days:3,units:[<|\"|>c<|\"|>],\
                opts:{deep:true,x:null,r:-1.5e3}}<tool_call|><|tool_call>call:ping{}<tool_call|>";
    let calls = parse_tool_calls(text).unwrap();
    let expected = [
        ToolCall {
            name: "get_weather".into(),
            arguments: serde_json::json!({"city": "San José, \"CR\"", "days": 3, "units": ["c"],
                "opts": {"deep": true, "x": null, "r": -1500.0}}),
        },
        ToolCall { name: "ping".into(), arguments: serde_json::json!({}) },
    ];
    assert_eq!(calls, expected);
    // Cut off at a stop token before `<tool_call|>`: still one call.
    let cut = parse_tool_calls("<|tool_call>call:bash{command:<|\"|>ls<|\"|>}").unwrap();
    assert_eq!(cut, [ToolCall { name: "bash".into(), arguments: serde_json::json!({"command": "ls"}) }]);
    assert!(parse_tool_calls("no calls here").unwrap().is_empty());
    for bad in [
        "<|tool_call>bash{}<tool_call|>",
        "<|tool_call>call:bash{command:ls}<tool_call|>",
        "<|tool_call>call:x{a:<|\"|>open}",
    ] {
        assert!(parse_tool_calls(bad).is_err(), "{bad}");
    }
}
