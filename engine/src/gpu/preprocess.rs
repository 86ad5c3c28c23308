//! A small WGSL preprocessor, so kernel variants come from one source: `#include "file"`, `#define NAME value`,
//! `#ifdef NAME`, `#ifndef NAME`, `#else`, `#endif`. Defined names are replaced by their values wherever they
//! appear as whole identifiers, so numbers such as `WG_SIZE` reach `@workgroup_size(WG_SIZE)`.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PreprocessError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Nested includes deeper than this are a cycle.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Expands `file` with `defines`; `lookup` returns the text of a file by its path relative to `shaders/`.
pub fn preprocess<'a>(
    file: &str,
    defines: &[(&str, String)],
    lookup: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<String, PreprocessError> {
    let mut defined: HashMap<String, String> = defines.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    let mut lines = Vec::new();
    expand(file, &mut defined, lookup, 0, &mut lines)?;
    Ok(lines.iter().map(|l| substitute(l, &defined)).collect::<Vec<_>>().join("\n") + "\n")
}

/// One `#if…` level: whether its current branch is emitted, and whether `#else` was seen.
struct Branch {
    active: bool,
    parent_active: bool,
    seen_else: bool,
    line: usize,
}

fn expand<'a>(
    file: &str,
    defined: &mut HashMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<&'a str>,
    depth: usize,
    out: &mut Vec<String>,
) -> Result<(), PreprocessError> {
    let err = |line: usize, message: String| PreprocessError { file: file.to_owned(), line, message };
    let text = lookup(file).ok_or_else(|| err(0, "no such shader file".into()))?;
    let mut stack: Vec<Branch> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        let active = stack.last().is_none_or(|b| b.active);
        let Some(directive) = trimmed.strip_prefix('#') else {
            if active {
                out.push(raw.to_owned());
            }
            continue;
        };
        let mut words = directive.split_whitespace();
        let keyword = words.next().unwrap_or("");
        let arg = words.next();
        match (keyword, arg) {
            ("ifdef" | "ifndef", Some(name)) => {
                let is_defined = defined.contains_key(name);
                let taken = if keyword == "ifdef" { is_defined } else { !is_defined };
                stack.push(Branch { active: active && taken, parent_active: active, seen_else: false, line: line_no });
            }
            ("else", None) => {
                let b = stack.last_mut().ok_or_else(|| err(line_no, "#else without #ifdef".into()))?;
                if b.seen_else {
                    return Err(err(line_no, "second #else".into()));
                }
                b.seen_else = true;
                b.active = b.parent_active && !b.active;
            }
            ("endif", None) => {
                stack.pop().ok_or_else(|| err(line_no, "#endif without #ifdef".into()))?;
            }
            ("define", Some(name)) if active => {
                let value = words.collect::<Vec<_>>().join(" ");
                defined.insert(name.to_owned(), value);
            }
            ("define", Some(_)) => {}
            ("include", Some(path)) if active => {
                let path = path.trim_matches('"');
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(err(line_no, format!("includes nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)")));
                }
                expand(path, defined, lookup, depth + 1, out).map_err(|e| {
                    if e.line == 0 { err(line_no, format!("cannot include `{path}`: {}", e.message)) } else { e }
                })?;
            }
            ("include", Some(_)) => {}
            _ => return Err(err(line_no, format!("unknown or malformed directive `#{directive}`"))),
        }
    }
    match stack.last() {
        Some(open) => Err(err(open.line, "#ifdef without #endif".into())),
        None => Ok(()),
    }
}

/// Replaces whole identifiers that are defined names by their values.
fn substitute(line: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut ident = String::new();
    let flush = |ident: &mut String, out: &mut String| {
        match defined.get(ident.as_str()) {
            Some(value) if !value.is_empty() => out.push_str(value),
            _ => out.push_str(ident),
        }
        ident.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            ident.push(c);
        } else {
            flush(&mut ident, &mut out);
            out.push(c);
        }
    }
    flush(&mut ident, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(name: &str) -> Option<&'static str> {
        match name {
            "main.wgsl" => Some(
                "#include \"inc.wgsl\"\n#ifdef F16\nalias T = f16;\n#else\nalias T = f32;\n#endif\n@workgroup_size(WG_SIZE)\nlet x = WG_SIZEX;",
            ),
            "inc.wgsl" => Some("#ifndef F16\n// f32 only\n#endif\n#define HALF 0.5\nconst h = HALF;"),
            "loop.wgsl" => Some("#include \"loop.wgsl\""),
            "open.wgsl" => Some("#ifdef A\nx"),
            "stray.wgsl" => Some("#endif"),
            "nested.wgsl" => Some("#ifdef A\n#ifdef B\nab\n#else\na_not_b\n#endif\n#else\nnot_a\n#endif"),
            _ => None,
        }
    }

    #[test]
    fn variants_and_values() {
        let f32_src = preprocess("main.wgsl", &[("WG_SIZE", "64".into())], &files).unwrap();
        assert_eq!(f32_src, "// f32 only\nconst h = 0.5;\nalias T = f32;\n@workgroup_size(64)\nlet x = WG_SIZEX;\n");
        let f16_src = preprocess("main.wgsl", &[("WG_SIZE", "64".into()), ("F16", String::new())], &files).unwrap();
        assert!(f16_src.contains("alias T = f16;") && !f16_src.contains("f32 only"));
    }

    #[test]
    fn nested_branches() {
        let run = |d: &[(&str, String)]| preprocess("nested.wgsl", d, &files).unwrap().trim().to_owned();
        assert_eq!(run(&[]), "not_a");
        assert_eq!(run(&[("A", String::new())]), "a_not_b");
        assert_eq!(run(&[("A", String::new()), ("B", String::new())]), "ab");
    }

    #[test]
    fn malformed_sources_are_errors() {
        assert!(preprocess("loop.wgsl", &[], &files).unwrap_err().message.contains("nested deeper"));
        assert_eq!(preprocess("open.wgsl", &[], &files).unwrap_err().line, 1);
        assert!(preprocess("stray.wgsl", &[], &files).unwrap_err().message.contains("#endif without"));
        assert!(preprocess("missing.wgsl", &[], &files).is_err());
    }
}
