//! JSON values in Gemma 4's own notation: strings wrapped in `<|"|>` (no escaping inside), objects with sorted
//! keys, numbers as Go's `fmt` prints a float64 — which is what Ollama's renderer shows, because Go decodes every
//! JSON number to float64.

use serde_json::Value;

/// Gemma 4's string delimiter, the `<|"|>` special token.
pub(super) const Q: &str = "<|\"|>";

/// A tool-call argument or tool result: object keys bare (`formatArgValue`).
pub(super) fn format_arg_value(value: &Value) -> String {
    format_value(value, false)
}

/// A value inside a tool's schema: object keys quoted (`formatSchemaValue`).
pub(super) fn format_schema_value(value: &Value) -> String {
    format_value(value, true)
}

fn format_value(value: &Value, quote_keys: bool) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(s) => format!("{Q}{s}{Q}"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format_number(n),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| {
                    let key = if quote_keys { format!("{Q}{k}{Q}") } else { (*k).clone() };
                    format!("{key}:{}", format_value(&map[k.as_str()], quote_keys))
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| format_value(v, quote_keys)).collect();
            format!("[{}]", items.join(","))
        }
    }
}

/// Ollama's number rule: a float64 with no fraction prints as an integer (`%d` of its int64), any other as `%v`.
pub(super) fn format_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    let x = n.as_f64().unwrap_or(f64::NAN);
    if x.fract() == 0.0 && x.abs() < 9.2e18 { (x as i64).to_string() } else { go_float(x) }
}

/// Go's `%v` for a float64: the shortest digits that round-trip, in exponent form (`1.2345675e+06`, `1e-05`)
/// when the decimal exponent is below -4 or at least 6 — Go's fixed precision-6 cutoff for shortest output.
pub(super) fn go_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `1.2345675e6`, `1e-5`.
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) {
        return format!("{x}");
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Expected strings are what Go's `fmt.Sprintf("%v", x)` prints for these float64 values.
    #[test]
    fn floats_print_as_go_prints_them() {
        let cases = [
            (0.5, "0.5"),
            (2.25, "2.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.5, "123456.5"),
            (1234567.5, "1.2345675e+06"),
            (-0.125, "-0.125"),
            (1.5e300, "1.5e+300"),
        ];
        for (x, expected) in cases {
            assert_eq!(go_float(x), expected, "{x}");
        }
    }

    #[test]
    fn integral_floats_print_as_integers() {
        assert_eq!(format_arg_value(&json!(3.0)), "3");
        assert_eq!(format_arg_value(&json!(-7)), "-7");
        assert_eq!(format_arg_value(&json!(2.5)), "2.5");
    }

    #[test]
    fn objects_sort_keys_and_quote_only_schema_keys() {
        let v = json!({"b": [1, "x", null], "a": {"z": true}});
        assert_eq!(format_arg_value(&v), "{a:{z:true},b:[1,<|\"|>x<|\"|>,null]}");
        assert_eq!(
            format_schema_value(&v),
            "{<|\"|>a<|\"|>:{<|\"|>z<|\"|>:true},<|\"|>b<|\"|>:[1,<|\"|>x<|\"|>,null]}"
        );
    }
}
