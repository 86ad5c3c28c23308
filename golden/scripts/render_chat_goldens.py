"""Chat-template goldens: conversations rendered by the real Hugging Face Jinja templates with python jinja2, so
that engine/tests/chat_templates.rs can compare ferrogem's renderer with them byte for byte.

Sources (the template texts are not committed; fetch them and pass their paths):
  gemma4-small  ollama/ollama @ fb30760996871fa9460115c753afd2c60d4ab0f7
                model/renderers/testdata/gemma4_e2b_chat_template.jinja2 (sha256 3beb16a1…, the HF E2B template)
  gemma4-large  same commit, model/renderers/testdata/gemma4_31b_chat_template.jinja2 (sha256 df269903…)
  gemma3        huggingface/transformers @ c1a83acdb3fd77f2e897215d94a5ceaf05c885f1
                src/transformers/models/gemma3/convert_gemma3_weights.py, its `_CHAT_TEMPLATE` (the template Google's
                converter writes into tokenizer_config.json; the Gemma 3 270M GGUF carries no chat template)

usage: python render_chat_goldens.py <gemma4_e2b.jinja2> <gemma4_31b.jinja2> <convert_gemma3_weights.py> <out dir>

Each conversation is written in ferrogem's own message schema (role, content, thinking, tool_calls, tool_name;
tools as name, description, parameters) and converted here to what the HF templates read (reasoning, name,
function-wrapped calls and tools). Rendering uses transformers' environment (sandboxed, trim_blocks,
lstrip_blocks, loopcontrols) and is checked to equal a plain `jinja2.Environment()` render, which is how Ollama's
own parity tests run these templates. Needs only jinja2 (3.1.6 was used).
"""

import ast
import json
import sys

import jinja2
import jinja2.sandbox

SOURCES = {
    "gemma4_small": "ollama/ollama@fb30760996871fa9460115c753afd2c60d4ab0f7 "
    "model/renderers/testdata/gemma4_e2b_chat_template.jinja2",
    "gemma4_large": "ollama/ollama@fb30760996871fa9460115c753afd2c60d4ab0f7 "
    "model/renderers/testdata/gemma4_31b_chat_template.jinja2",
    "gemma3": "huggingface/transformers@c1a83acdb3fd77f2e897215d94a5ceaf05c885f1 "
    "src/transformers/models/gemma3/convert_gemma3_weights.py _CHAT_TEMPLATE",
}

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "description": "Temperature unit", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "description": "Forecast days"},
        },
        "required": ["city"],
    },
}

BASH = {
    "name": "bash",
    "description": "Run a command",
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The command"}},
        "required": ["command"],
    },
}

# Nested schemas: an array of objects with required keys, a nested object, nullable and union-typed items.
PLANNER = {
    "name": "plan",
    "description": "Plan steps",
    "parameters": {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "description": "The steps",
                "items": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string", "description": "Step title"},
                        "minutes": {"type": "number", "nullable": True},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["title"],
                },
            },
            "owner": {
                "type": "object",
                "description": "Who owns the plan",
                "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                "required": ["name"],
            },
            "maybe": {"type": "array", "items": {"type": ["string", "null"]}},
        },
        "required": ["steps"],
    },
}


def object_tool(name, properties):
    """A tool whose parameters are an object with these properties and no description of its own."""
    return {"name": name, "description": name.capitalize(), "parameters": {"type": "object", "properties": properties}}


def call(name, arguments):
    return {"name": name, "arguments": arguments}


def user(content):
    return {"role": "user", "content": content}


def assistant(content, thinking=None, tool_calls=None):
    message = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def tool(name, content):
    return {"role": "tool", "content": content, "tool_name": name}


STEP = {"title": "wake", "minutes": 2.5, "tags": ["am"]}
WEATHER_CALL = call("get_weather", {"city": "Paris", "days": 3})

# (name, messages, tools, thinking), rendered by both Gemma 4 templates.
GEMMA4_CASES = [
    ("user_only", [user("Hello")], [], False),
    ("system_user", [SYSTEM, user("Hi there")], [], False),
    ("thinking_on", [user("What is 2+2?")], [], True),
    ("system_thinking_on", [SYSTEM, user("What is 2+2?")], [], True),
    ("whitespace_trimmed", [{"role": "system", "content": "  Be brief. \n"}, user("\n  padded  \n")], [], False),
    (
        "multi_turn_thinking_stripped",
        [user("Hi"), assistant("Hello! How can I help?", thinking="The user greets me."), user("Tell me a joke")],
        [],
        False,
    ),
    (
        "multi_turn_thinking_stripped_thinking_on",
        [
            SYSTEM,
            user("Hi"),
            assistant("<|channel>thought\nold thought<channel|>Hello! How can I help?", thinking="Greeting."),
            user("Tell me a joke"),
        ],
        [],
        True,
    ),
    ("assistant_last_thinking_kept", [user("Hi"), assistant("Hello.", thinking="Be polite.")], [], True),
    ("adjacent_assistants_share_turn", [user("Start"), assistant("One."), assistant("Two."), user("More")], [], False),
    ("tools_declared", [user("What's the weather in Paris?")], [WEATHER], False),
    ("tools_declared_system_thinking", [SYSTEM, user("What's the weather?")], [WEATHER, BASH], True),
    ("nested_schema", [user("Plan my day")], [PLANNER], False),
    (
        "tool_call_and_response",
        [user("Weather in Paris?"), assistant("", tool_calls=[WEATHER_CALL]), tool("get_weather", "15 degrees, sunny")],
        [WEATHER],
        False,
    ),
    (
        "tool_call_and_response_thinking_on",
        [user("Weather in Paris?"), assistant("", tool_calls=[WEATHER_CALL]), tool("get_weather", "15 degrees, sunny")],
        [WEATHER],
        True,
    ),
    (
        "tool_call_response_answer_next_user",
        [
            user("Weather in Paris?"),
            assistant("Let me check.", thinking="Use the tool.", tool_calls=[WEATHER_CALL]),
            tool("get_weather", "15 degrees, sunny"),
            assistant("It is 15 degrees and sunny in Paris."),
            user("Thanks! And tomorrow?"),
        ],
        [WEATHER],
        False,
    ),
    (
        "tool_call_without_response",
        [user("List files"), assistant("", tool_calls=[call("bash", {"command": "ls -la"})])],
        [BASH],
        False,
    ),
    (
        "tool_call_rich_arguments",
        [
            user("Go"),
            assistant("", tool_calls=[call("plan", {"steps": [STEP], "owner": None, "ok": True})]),
            tool("plan", "planned: 'wake' at 7"),
            assistant("Planned."),
        ],
        [PLANNER],
        False,
    ),
    (
        "typed_property_union_type",
        [user("Hi")],
        [object_tool("maybe_name", {"name": {"type": ["string", "null"], "description": "Name"}})],
        False,
    ),
]

READ = {
    "name": "read",
    "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
TWO_CALLS = [call("bash", {"command": "ls"}), call("read", {"path": "go.mod"})]
Q = '<|"|>'


# Where Ollama's Go renderer and the HF template disagree (rendered with the E2B template only): ferrogem follows
# Ollama, so its render must differ from the HF one, contain `ollama_fragment` where HF has `hf_fragment`.
GEMMA4_DIFFERENCES = [
    (
        "tool_response_name_without_call_ids",
        [user("List and read"), assistant("", tool_calls=TWO_CALLS), tool("bash", "payload")],
        [BASH, READ],
        f"response:read{{value:{Q}payload{Q}}}",
        f"response:bash{{value:{Q}payload{Q}}}",
    ),
    (
        "tool_response_without_name",
        [user("List and read"), assistant("", tool_calls=TWO_CALLS), {"role": "tool", "content": "payload"}],
        [BASH, READ],
        f"response:read{{value:{Q}payload{Q}}}",
        f"response:unknown{{value:{Q}payload{Q}}}",
    ),
    (
        "any_of_property",
        [user("Pick")],
        [object_tool("pick", {"value": {"anyOf": [{"type": "string"}, {"type": "number"}], "description": "Value"}})],
        f"value:{{description:{Q}Value{Q},type:{Q}{Q}}}",
        f"value:{{description:{Q}Value{Q},type:{Q}['STRING', 'NUMBER']{Q}}}",
    ),
    (
        "property_named_type",
        [user("Set")],
        [object_tool("set", {"type": {"type": "string"}, "x": {"type": "number"}})],
        f"properties:{{type:{{type:{Q}STRING{Q}}},x:{{type:{Q}NUMBER{Q}}}}}",
        f"properties:{{x:{{type:{Q}NUMBER{Q}}}}}",
    ),
    (
        "orphan_channel_close_in_content",
        [user("Hi"), assistant("Hello<channel|> there"), user("Again")],
        [],
        "Hello there<turn|>",
        "Hello<channel|> there<turn|>",
    ),
    (
        "mixed_case_argument_keys",
        [user("Go"), assistant("", tool_calls=[call("bash", {"a": 1, "B": 2})]), tool("bash", "ok")],
        [BASH],
        "call:bash{a:1,B:2}",
        "call:bash{B:2,a:1}",
    ),
    (
        "float_arguments",
        [user("Go"), assistant("", tool_calls=[call("bash", {"big": 1234567.5, "whole": 3.0})]), tool("bash", "ok")],
        [BASH],
        "call:bash{big:1234567.5,whole:3.0}",
        "call:bash{big:1.2345675e+06,whole:3}",
    ),
]

# Gemma 3: roles must alternate in the HF template; system text goes into the first user turn.
GEMMA3_DIFFERENCES = [
    (
        "content_whitespace_kept",
        [user("  Hello  "), assistant(" Hi! "), user("Bye")],
        [],
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi!<end_of_turn>",
        "<start_of_turn>user\n  Hello  <end_of_turn>\n<start_of_turn>model\n Hi! <end_of_turn>",
    ),
]

GEMMA3_CASES = [
    ("user_only", [user("Hello, how are you?")]),
    ("system_user", [SYSTEM, user("Hello, how are you?")]),
    (
        "user_assistant_user",
        [user("Hello, how are you?"), assistant("I'm doing great. How can I help you?"), user("Show me templating!")],
    ),
    (
        "system_user_assistant_user",
        [SYSTEM, user("Hello, how are you?"), assistant("I'm doing great. How can I help you?"), user("Show me!")],
    ),
]


def hf_message(message):
    out = {"role": message["role"], "content": message["content"]}
    if message.get("thinking"):
        out["reasoning"] = message["thinking"]
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in message["tool_calls"]
        ]
    if message.get("tool_name"):
        out["name"] = message["tool_name"]
    return out


def hf_tool(tool_def):
    return {"type": "function", "function": dict(tool_def)}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def render(source, **kwargs):
    hf_env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    hf_env.globals["raise_exception"] = raise_exception
    text = hf_env.from_string(source).render(**kwargs)
    plain_env = jinja2.Environment()
    plain_env.globals["raise_exception"] = raise_exception
    plain = plain_env.from_string(source).render(**kwargs)
    assert text == plain, f"transformers-style and plain jinja2 renders differ:\n{text!r}\n{plain!r}"
    return text


def gemma3_template(converter_path):
    module = ast.parse(open(converter_path).read())
    for node in module.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_CHAT_TEMPLATE" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{converter_path} has no _CHAT_TEMPLATE")


def main():
    small_path, large_path, gemma3_path, out_dir = sys.argv[1:5]
    for key, path in [("gemma4_small", small_path), ("gemma4_large", large_path)]:
        source = open(path).read()
        cases = []
        for name, messages, tools, thinking in GEMMA4_CASES:
            rendered = hf_render(source, messages, tools, thinking)
            case = {"name": name, "thinking": thinking, "messages": messages, "tools": tools, "rendered": rendered}
            cases.append(case)
        differences = differences_of(source, GEMMA4_DIFFERENCES) if key == "gemma4_small" else []
        write(out_dir, key, cases, differences)
    source = gemma3_template(gemma3_path)
    cases = []
    for name, messages in GEMMA3_CASES:
        rendered = hf_render(source, messages, [], False)
        cases.append({"name": name, "thinking": False, "messages": messages, "tools": [], "rendered": rendered})
    write(out_dir, "gemma3", cases, differences_of(source, GEMMA3_DIFFERENCES))


def hf_render(source, messages, tools, thinking):
    kwargs = {"messages": [hf_message(m) for m in messages], "bos_token": "<bos>", "add_generation_prompt": True}
    if tools:
        kwargs["tools"] = [hf_tool(t) for t in tools]
    if thinking:
        kwargs["enable_thinking"] = True
    return render(source, **kwargs)


def differences_of(source, differences):
    out = []
    for name, messages, tools, hf_fragment, ollama_fragment in differences:
        rendered = hf_render(source, messages, tools, False)
        assert hf_fragment in rendered, f"{name}: the HF render no longer has {hf_fragment!r}:\n{rendered}"
        out.append(
            {
                "name": name,
                "thinking": False,
                "messages": messages,
                "tools": tools,
                "hf_rendered": rendered,
                "hf_fragment": hf_fragment,
                "ollama_fragment": ollama_fragment,
            }
        )
    return out


def write(out_dir, key, cases, differences):
    path = f"{out_dir}/{key}.json"
    golden = {"template": key, "source": SOURCES[key], "jinja2": jinja2.__version__, "cases": cases}
    golden["differences_from_ollama"] = differences
    with open(path, "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{path}: {len(cases)} cases, {len(differences)} known differences")


if __name__ == "__main__":
    main()
