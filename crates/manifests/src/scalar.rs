//! Writing a scalar back in the style the file used for it, without
//! changing what type a YAML reader resolves it to.

use std::sync::LazyLock;

use regex::Regex;

use crate::yaml::Style;

/// What a YAML 1.1/1.2 reader makes of a plain scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// A string.
    String,
    /// null, a boolean, or a number.
    Other,
}

static NON_STRING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:",
        r"~|null|Null|NULL|",
        r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|",
        r"[-+]?[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|",
        r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|",
        r"[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|",
        r"[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|",
        r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        r")$"
    ))
    .expect("the pattern is a valid regular expression")
});

/// What a plain scalar with this text resolves to.
pub(crate) fn resolve_plain(text: &str) -> Resolved {
    if text.is_empty() || (NON_STRING.is_match(text) && text != ".") {
        Resolved::Other
    } else {
        Resolved::String
    }
}

/// Whether `text` can be written as a plain scalar and read back unchanged.
pub(crate) fn plain_is_safe(text: &str, in_flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if text.trim() != text || text.contains(['\n', '\r', '\t']) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        let next = text[first.len_utf8()..].chars().next();
        let indicator_ok = matches!(first, '-' | '?' | ':')
            && next.is_some_and(|c| !(c.is_whitespace() || in_flow && ",[]{}".contains(c)));
        if !indicator_ok {
            return false;
        }
    }
    if text.contains(": ") || text.contains(" #") || text.ends_with(':') {
        return false;
    }
    if in_flow && text.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    !text.chars().any(|c| c.is_control())
}

/// `text` in double quotes with YAML escapes.
pub(crate) fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn single_quoted(text: &str) -> Option<String> {
    if text.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(format!("'{}'", text.replace('\'', "''")))
}

/// The source text for `value` replacing a scalar written in `style`, and
/// the style actually used. A plain scalar stays plain when that reads back
/// as the same value and the same type as before; otherwise it is quoted.
pub(crate) fn render(
    value: &str,
    style: Style,
    old_plain: Option<&str>,
    in_flow: bool,
) -> (String, Style) {
    match style {
        Style::Single => match single_quoted(value) {
            Some(text) => (text, Style::Single),
            None => (double_quoted(value), Style::Double),
        },
        Style::Plain => {
            let keeps_type = old_plain.is_none_or(|old| resolve_plain(old) == resolve_plain(value));
            if keeps_type && plain_is_safe(value, in_flow) {
                (value.to_string(), Style::Plain)
            } else {
                (double_quoted(value), Style::Double)
            }
        }
        Style::Double | Style::Block => (double_quoted(value), Style::Double),
    }
}

/// The text for a new string scalar (an annotation value): plain when that
/// reads back as the same string, else double-quoted.
pub(crate) fn render_string(value: &str, in_flow: bool) -> String {
    if resolve_plain(value) == Resolved::String && plain_is_safe(value, in_flow) {
        value.to_string()
    } else {
        double_quoted(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_booleans_and_nulls_are_not_strings() {
        for text in [
            "1", "1.10", "-2", "0x1F", "1e3", ".5", "true", "no", "~", "null", "1:20",
        ] {
            assert_eq!(resolve_plain(text), Resolved::Other, "{text}");
        }
        for text in [
            "1.2.3",
            "v1",
            "0.3.12",
            "master-a000001",
            "16.1-alpine",
            "latest",
            ".",
        ] {
            assert_eq!(resolve_plain(text), Resolved::String, "{text}");
        }
    }

    #[test]
    fn image_references_stay_plain() {
        let (text, style) = render(
            "quay.io/x/y:1.2@sha256:ab",
            Style::Plain,
            Some("quay.io/x/y:1.1"),
            false,
        );
        assert_eq!(
            (text.as_str(), style),
            ("quay.io/x/y:1.2@sha256:ab", Style::Plain)
        );
    }

    #[test]
    fn a_plain_string_that_would_read_as_a_number_is_quoted() {
        assert_eq!(
            render("1.2", Style::Plain, Some("v1.1"), false).0,
            "\"1.2\""
        );
        assert_eq!(render("1.11", Style::Plain, Some("1.10"), false).0, "1.11");
    }

    #[test]
    fn quotes_are_escaped_in_each_style() {
        assert_eq!(render("it's", Style::Single, None, false).0, "'it''s'");
        assert_eq!(
            render("a\"b\\", Style::Double, None, false).0,
            "\"a\\\"b\\\\\""
        );
    }
}
