//! Filters that emit YAML-safe text, so no value can break the structure of a template.

use base64::Engine;
use minijinja::{Environment, Error, ErrorKind, Value};
use sha2::{Digest, Sha256};

pub fn register(env: &mut Environment<'_>) {
    env.add_filter("toyaml", toyaml);
    env.add_filter("quote", quote);
    env.add_filter("nindent", nindent);
    env.add_filter("indent", indent);
    env.add_filter("b64encode", b64encode);
    env.add_filter("sha256", sha256);
}

/// Any value as block YAML (no trailing newline); pair with `nindent` inside a mapping.
fn toyaml(value: Value) -> Result<String, Error> {
    if value.is_undefined() {
        return Err(Error::new(ErrorKind::UndefinedError, "toyaml: value is undefined"));
    }
    let text =
        serde_saphyr::to_string(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("toyaml: {e}")))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// A double-quoted YAML scalar (JSON string syntax, which YAML accepts). Numbers and booleans
/// are quoted as their text, so `"8080"` stays a string.
fn quote(value: Value) -> Result<String, Error> {
    if value.is_undefined() {
        // Strict undefined does not stop a filter from receiving an undefined value: refuse it here.
        return Err(Error::new(ErrorKind::UndefinedError, "quote: value is undefined"));
    }
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None if value.is_none() => String::new(),
        // minijinja prints Python-style `True`; Kubernetes and YAML users expect `true`.
        None if value.kind() == minijinja::value::ValueKind::Bool => value.is_true().to_string(),
        None => value.to_string(),
    };
    serde_json::to_string(&text).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// The widest indentation a template may ask for: deeper YAML than this is not a manifest.
pub const MAX_INDENT: usize = 64;

fn too_large(filter: &str, bytes: usize) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{filter}: a result of {bytes} bytes is over the limit of {} bytes", super::MAX_TEMPLATE_OUTPUT),
    )
}

/// Indents every non-empty line by `width` spaces, the first one too when `first` is set.
/// The width and the result are bounded, so no template can make the operator allocate without end.
fn indent_lines(filter: &str, text: &str, width: usize, first: bool) -> Result<String, Error> {
    if width > MAX_INDENT {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{filter}: width {width} is over the limit of {MAX_INDENT}"),
        ));
    }
    let bytes = text.len() + text.lines().count() * width;
    if bytes > super::MAX_TEMPLATE_OUTPUT {
        return Err(too_large(filter, bytes));
    }
    let pad = " ".repeat(width);
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, line)| if (i == 0 && !first) || line.is_empty() { line.to_string() } else { format!("{pad}{line}") })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Indents every non-empty line after the first by `width` spaces (Helm's `indent`, minus the first line).
fn indent(text: String, width: usize) -> Result<String, Error> {
    indent_lines("indent", &text, width, false)
}

/// A newline, then every line indented by `width` (Helm's `nindent`).
fn nindent(text: String, width: usize) -> Result<String, Error> {
    Ok(format!("\n{}", indent_lines("nindent", &text, width, true)?))
}

fn b64encode(text: String) -> Result<String, Error> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    if encoded.len() > super::MAX_TEMPLATE_OUTPUT {
        return Err(too_large("b64encode", encoded.len()));
    }
    Ok(encoded)
}

fn sha256(text: String) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, ctx: Value) -> String {
        let mut env = Environment::new();
        register(&mut env);
        env.render_str(template, ctx).unwrap()
    }

    #[test]
    fn quote_escapes_yaml_breakers() {
        let out = render(
            "k: {{ v | quote }}",
            Value::from(minijinja::value::Serde(serde_json::json!({"v": "a: b\n\"c\" # d"}))),
        );
        let parsed: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(parsed["k"], "a: b\n\"c\" # d");
        let out = render("k: {{ v | quote }}", Value::from(minijinja::value::Serde(serde_json::json!({"v": 8080}))));
        assert_eq!(out, "k: \"8080\"");
        let out = render("k: {{ v | quote }}", Value::from(minijinja::value::Serde(serde_json::json!({"v": true}))));
        assert_eq!(out, "k: \"true\"");
    }

    #[test]
    fn toyaml_nindent_nests_structures() {
        let ctx = serde_json::json!({"v": {"a": [1, 2], "b": {"c": "x: y"}}});
        let out = render("root:\n  child:{{ v | toyaml | nindent(4) }}", Value::from(minijinja::value::Serde(&ctx)));
        let parsed: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(parsed["root"]["child"], ctx["v"]);
    }

    #[test]
    fn undefined_values_are_errors_not_empty_strings() {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        register(&mut env);
        let err = env.render_str("k: {{ missing | quote }}", Value::UNDEFINED).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn b64_and_sha() {
        assert_eq!(render("{{ 'hi' | b64encode }}", Value::UNDEFINED), "aGk=");
        assert_eq!(
            render("{{ 'abc' | sha256 }}", Value::UNDEFINED),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
