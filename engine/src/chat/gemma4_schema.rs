//! Tool declarations, `<|tool>declaration:NAME{description:…,parameters:{…}}<tool|>`, as Ollama's Gemma 4
//! renderer writes them. Ollama first decodes each parameter into its `api.ToolProperty` (keeping only `anyOf`,
//! `type`, `items`, `description`, `enum`, `properties` and `required`, and turning a list of types into the
//! text `['STRING', 'NULL']`); [`typed_property`] does the same, so a schema renders as it would through Ollama.
//! Everything below `items` stays as raw JSON, as in Ollama.

use super::Tool;
use super::gemma4_values::{Q, format_schema_value, go_float};
use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// Keys of a schema object that are never rendered as property names (Ollama's `isSchemaStandardKey`).
const STANDARD_KEYS: [&str; 5] = ["description", "type", "properties", "required", "nullable"];

pub(super) fn declaration(tool: &Tool) -> Result<String> {
    let mut out = format!("<|tool>declaration:{}{{description:{Q}{}{Q}", tool.name, tool.description);
    let params = match &tool.parameters {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        other => return Err(bad_schema(&tool.name, "parameters", "an object", other)),
    };
    let kind = match params.get("type") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(bad_schema(&tool.name, "parameters.type", "a string", other)),
    };
    let properties = match params.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(props)) => Some(typed_properties(&tool.name, props)?),
        Some(other) => return Err(bad_schema(&tool.name, "parameters.properties", "an object", other)),
    };
    let required = strings(&tool.name, "parameters.required", params.get("required"))?;
    if properties.is_some() || !kind.is_empty() {
        out.push_str(",parameters:{");
        let mut parts = Vec::new();
        if let Some(props) = properties.filter(|p| !p.is_empty()) {
            parts.push(format!("properties:{{{}}}", properties_text(&props)));
        }
        if !required.is_empty() {
            parts.push(format!("required:[{}]", quoted_list(&required)));
        }
        if !kind.is_empty() {
            parts.push(format!("type:{Q}{}{Q}", kind.to_uppercase()));
        }
        out.push_str(&parts.join(","));
        out.push('}');
    }
    out.push_str("}<tool|>");
    Ok(out)
}

fn bad_schema(tool: &str, field: &str, expected: &str, found: &Value) -> Error {
    Error::Unsupported {
        op: format!("tool `{tool}`"),
        reason: format!("its `{field}` must be {expected}, found {found}"),
    }
}

fn typed_properties(tool: &str, props: &Map<String, Value>) -> Result<Map<String, Value>> {
    props.iter().map(|(name, prop)| Ok((name.clone(), Value::Object(typed_property(tool, name, prop)?)))).collect()
}

/// Ollama's `topLevelTypedSchemaValueFromToolProperty`.
fn typed_property(tool: &str, name: &str, prop: &Value) -> Result<Map<String, Value>> {
    let Value::Object(prop) = prop else { return Err(bad_schema(tool, name, "an object", prop)) };
    let mut out = Map::new();
    let mut types = strings(tool, name, prop.get("type"))?;
    if types.is_empty() {
        types = any_of_bare_types(prop.get("anyOf"));
    }
    match types.len() {
        0 => {}
        1 => _ = out.insert("type".into(), Value::String(types[0].clone())),
        _ => {
            let listed: Vec<String> = types.iter().map(|t| format!("'{}'", t.to_uppercase())).collect();
            out.insert("type".into(), Value::String(format!("[{}]", listed.join(", "))));
        }
    }
    match prop.get("description") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) if d.is_empty() => {}
        Some(d @ Value::String(_)) => _ = out.insert("description".into(), d.clone()),
        Some(other) => return Err(bad_schema(tool, name, "a string description", other)),
    }
    match prop.get("enum") {
        None | Some(Value::Null) => {}
        Some(Value::Array(values)) if values.is_empty() => {}
        Some(values @ Value::Array(_)) => _ = out.insert("enum".into(), values.clone()),
        Some(other) => return Err(bad_schema(tool, name, "an array enum", other)),
    }
    if let Some(items) = prop.get("items").filter(|v| !v.is_null()) {
        out.insert("items".into(), items.clone());
    }
    match prop.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(nested)) => {
            _ = out.insert("properties".into(), Value::Object(typed_properties(tool, nested)?))
        }
        Some(other) => return Err(bad_schema(tool, name, "an object of properties", other)),
    }
    let required = strings(tool, name, prop.get("required"))?;
    if !required.is_empty() {
        out.insert("required".into(), required.into_iter().map(Value::String).collect());
    }
    Ok(out)
}

/// The types of an `anyOf` whose branches each give only a type (Ollama's `simpleAnyOfTypes`), else none.
fn any_of_bare_types(any_of: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(branches)) = any_of else { return Vec::new() };
    let mut types: Vec<String> = Vec::new();
    for branch in branches {
        let Value::Object(branch) = branch else { return Vec::new() };
        let branch_types = type_strings(branch.get("type"));
        let set = |key: &str| branch.get(key).is_some_and(|v| !is_empty_value(v));
        if branch_types.is_empty()
            || ["anyOf", "items", "description", "enum", "properties", "required"].iter().any(|k| set(k))
        {
            return Vec::new();
        }
        for t in branch_types {
            if !types.contains(&t) {
                types.push(t);
            }
        }
    }
    types
}

fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A string or a list of strings (`api.PropertyType`, `required`), checked.
fn strings(tool: &str, field: &str, value: Option<&Value>) -> Result<Vec<String>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(type_strings(value)),
        Some(other) => Err(bad_schema(tool, field, "a string or an array of strings", other)),
    }
}

/// The strings in a string or list, others skipped (Ollama's `normalizeStringSlice` on raw JSON).
fn type_strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn quoted_list(items: &[String]) -> String {
    items.iter().map(|s| format!("{Q}{s}{Q}")).collect::<Vec<_>>().join(",")
}

/// `NAME:{description:…,enum:[…],items:{…},nullable:true,properties:{…},required:[…],type:…}` per property,
/// sorted by name (Ollama's `writeSchemaProperties`).
fn properties_text(props: &Map<String, Value>) -> String {
    let mut names: Vec<&String> = props.keys().filter(|k| !STANDARD_KEYS.contains(&k.as_str())).collect();
    names.sort();
    let mut rendered = Vec::new();
    for name in names {
        let Value::Object(prop) = &props[name.as_str()] else { continue };
        let mut parts = Vec::new();
        if let Some(d) = prop.get("description").and_then(Value::as_str).filter(|d| !d.is_empty()) {
            parts.push(format!("description:{Q}{d}{Q}"));
        }
        let types: Vec<String> = type_strings(prop.get("type")).iter().map(|t| t.to_uppercase()).collect();
        let first_type = types.first().map_or("", String::as_str);
        if first_type == "STRING" {
            if let Some(Value::Array(values)) = prop.get("enum").filter(|v| !is_empty_value(v)) {
                let values: Vec<String> = values.iter().map(|v| format!("{Q}{}{Q}", go_print(v))).collect();
                parts.push(format!("enum:[{}]", values.join(",")));
            }
        } else if first_type == "ARRAY" {
            if let Some(Value::Object(items)) =
                prop.get("items").filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
            {
                parts.push(format!("items:{{{}}}", items_text(items)));
            }
        }
        if prop.get("nullable") == Some(&Value::Bool(true)) {
            parts.push("nullable:true".into());
        }
        if first_type == "OBJECT" {
            let nested = match prop.get("properties") {
                Some(Value::Object(nested)) => properties_text(nested),
                _ => properties_text(prop),
            };
            parts.push(format!("properties:{{{nested}}}"));
            let required = type_strings(prop.get("required"));
            if !required.is_empty() {
                parts.push(format!("required:[{}]", quoted_list(&required)));
            }
        }
        match types.len() {
            0 => {}
            1 => parts.push(format!("type:{Q}{}{Q}", types[0])),
            _ => parts.push(format!("type:[{}]", quoted_list(&types))),
        }
        rendered.push(format!("{name}:{{{}}}", parts.join(",")));
    }
    rendered.join(",")
}

/// An array's `items` schema, keys sorted, null values skipped (Ollama's `writeSchemaItemsSpec`).
fn items_text(items: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = items.keys().filter(|k| !items[k.as_str()].is_null()).collect();
    keys.sort();
    let rendered: Vec<String> = keys
        .into_iter()
        .map(|key| {
            let value = &items[key.as_str()];
            match key.as_str() {
                "properties" => {
                    format!("properties:{{{}}}", value.as_object().map(properties_text).unwrap_or_default())
                }
                "required" => format!("required:[{}]", quoted_list(&type_strings(Some(value)))),
                "type" => {
                    let types: Vec<String> = type_strings(Some(value)).iter().map(|t| t.to_uppercase()).collect();
                    match types.len() {
                        0 => String::new(),
                        1 => format!("type:{Q}{}{Q}", types[0]),
                        _ => format!("type:[{}]", quoted_list(&types)),
                    }
                }
                _ => format!("{key}:{}", format_schema_value(value)),
            }
        })
        .collect();
    rendered.join(",")
}

/// Go's `fmt.Sprintf("%v", v)` for a JSON-decoded value (an enum entry).
fn go_print(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_float(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(items) => format!("[{}]", items.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys.iter().map(|k| format!("{k}:{}", go_print(&map[k.as_str()]))).collect();
            format!("map[{}]", fields.join(" "))
        }
    }
}
