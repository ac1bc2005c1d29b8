//! Label selectors as the API server reads them from `?labelSelector=`.

use serde_json::Value;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),!h,i`; the error says which part is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(valid_key(key.trim())?));
    }
    for (op, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((key, values)) = part.split_once(op) {
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: {part}: expected (values)"))?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            let key = valid_key(key.trim())?;
            return Ok(if notin {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            valid_key(key.trim())?,
            value.trim().to_string(),
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(
            valid_key(key.trim())?,
            value.trim().to_string(),
        ));
    }
    Ok(Requirement::Exists(valid_key(part)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key {key:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn equality_and_set_requirements_all_must_hold() {
        let selector = LabelSelector::parse("app=web,tier in (front, back),!legacy,env").unwrap();
        assert!(selector.matches(&labelled(json!({"app": "web", "tier": "back", "env": "x"}))));
        assert!(!selector.matches(&labelled(json!({"app": "web", "tier": "db", "env": "x"}))));
        assert!(!selector.matches(&labelled(json!({"app": "web", "tier": "front"}))));
        assert!(!selector.matches(&labelled(
            json!({"app": "web", "tier": "front", "env": "x", "legacy": "1"})
        )));
    }

    #[test]
    fn not_equals_and_notin_admit_missing_labels() {
        let selector = LabelSelector::parse("app!=web,tier notin (db)").unwrap();
        assert!(selector.matches(&labelled(json!({}))));
        assert!(!selector.matches(&labelled(json!({"tier": "db"}))));
    }

    #[test]
    fn malformed_selector_is_refused() {
        assert!(LabelSelector::parse("app in x").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }
}
