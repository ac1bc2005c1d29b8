//! Byte-exact edits of one YAML document: splice the bytes of one scalar,
//! insert or remove one mapping entry, then re-parse and check that nothing
//! but the intended value changed. A file is never re-serialised.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::scalar::{self, Resolved};
use crate::workload::{NodePath, Step};
use crate::yaml::{NodeId, Shape, Stream, Style, SyntaxError};

/// Why an edit was refused. Nothing is written when an edit fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text does not parse (before or after the edit).
    #[error("line {}, column {}: {}", .0.line, .0.column, .0.message)]
    Syntax(SyntaxError),
    /// The file has no such document.
    #[error("no document {0} in the file")]
    NoDocument(usize),
    /// Nothing at the path.
    #[error("nothing at {0}")]
    NotFound(String),
    /// The path goes through an alias, an anchor or a merge key; editing
    /// there would change other places too.
    #[error("{path} (line {line}) is behind an anchor or alias; edit it by hand")]
    Alias {
        /// The path.
        path: String,
        /// 1-based line of the anchor or alias.
        line: usize,
    },
    /// The target is written in a way that cannot be edited in place.
    #[error("{path} (line {line}): {reason}")]
    Unsupported {
        /// The path.
        path: String,
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The workload or container is not in the file.
    #[error("{0}")]
    Missing(String),
    /// The edited text does not say what was intended; nothing was written.
    #[error("edit not applied, the result would be wrong: {0}")]
    Verify(String),
}

/// One change to a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Replace the scalar at the path with this value, in its style.
    Set(NodePath, String),
    /// Add `key: value` to the mapping at the path.
    Insert(NodePath, String, String),
    /// Add `key:` holding a mapping of these entries to the mapping at the path.
    InsertMap(NodePath, String, Vec<(String, String)>),
    /// Remove the entry `key` from the mapping at the path.
    Remove(NodePath, String),
}

/// Applies `changes` in order to document `doc` of `text` (parsed as
/// `stream`). The caller verifies the result with [`verify`].
pub(crate) fn apply(
    text: &str,
    stream: &Stream<'_>,
    doc: usize,
    changes: &[Change],
) -> Result<String, EditError> {
    let Some((first, rest)) = changes.split_first() else {
        return Ok(text.to_string());
    };
    let mut current = apply_one(text, stream, doc, first)?;
    for change in rest {
        let next = {
            let stream = Stream::parse(&current).map_err(EditError::Syntax)?;
            apply_one(&current, &stream, doc, change)?
        };
        current = next;
    }
    Ok(current)
}

fn apply_one(
    text: &str,
    stream: &Stream<'_>,
    doc: usize,
    change: &Change,
) -> Result<String, EditError> {
    let (range, replacement) = plan(text, stream, doc, change)?;
    let mut out = String::with_capacity(text.len() + replacement.len());
    out.push_str(&text[..range.start]);
    out.push_str(&replacement);
    out.push_str(&text[range.end..]);
    Ok(out)
}

/// The bytes of `text` that `change` to document `doc` replaces, and what
/// replaces them.
pub(crate) fn plan(
    text: &str,
    stream: &Stream<'_>,
    doc: usize,
    change: &Change,
) -> Result<(Range<usize>, String), EditError> {
    let root = *stream.docs.get(doc).ok_or(EditError::NoDocument(doc))?;
    let editor = Splicer { text, stream };
    Ok(match change {
        Change::Set(path, value) => editor.set(root, path, value)?,
        Change::Insert(path, key, value) => {
            let map = editor.locate(root, path)?;
            let value = Inserted::Scalar(value);
            editor.insert(map, path, key, &value)?
        }
        Change::InsertMap(path, key, entries) => {
            let map = editor.locate(root, path)?;
            editor.insert(map, path, key, &Inserted::Map(entries))?
        }
        Change::Remove(path, key) => editor.remove(root, path, key)?,
    })
}

/// Makes every planned replacement of `text` in one pass. `None` when two
/// of them overlap or meet: each was planned on the unedited text, and
/// only apart do they give what making them one after another gives.
pub(crate) fn splice(text: &str, mut planned: Vec<(Range<usize>, String)>) -> Option<String> {
    planned.sort_by_key(|(range, _)| (range.start, range.end));
    let apart = planned
        .windows(2)
        .all(|pair| pair[0].0.end < pair[1].0.start);
    if !apart {
        return None;
    }
    let grown: usize = planned.iter().map(|(_, r)| r.len()).sum();
    let mut out = String::with_capacity(text.len() + grown);
    let mut at = 0;
    for (range, replacement) in &planned {
        out.push_str(&text[at..range.start]);
        out.push_str(replacement);
        at = range.end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

enum Inserted<'v> {
    Scalar(&'v str),
    Map(&'v [(String, String)]),
}

struct Splicer<'s, 'a> {
    text: &'s str,
    stream: &'s Stream<'a>,
}

impl Splicer<'_, '_> {
    fn node_guard(&self, id: NodeId, path: &NodePath) -> Result<(), EditError> {
        let node = &self.stream.nodes[id];
        if node.anchor != 0 || matches!(node.shape, Shape::Alias(_)) {
            return Err(EditError::Alias {
                path: path.to_string(),
                line: node.line,
            });
        }
        Ok(())
    }

    /// The node at `path`, refusing anything reached through an alias, an
    /// anchor or a merge key.
    fn locate(&self, root: NodeId, path: &NodePath) -> Result<NodeId, EditError> {
        let s = self.stream;
        let mut node = root;
        self.node_guard(node, path)?;
        for step in &path.0 {
            node = match (step, &s.nodes[node].shape) {
                (Step::Key(key), Shape::Map(items)) => {
                    let items = s.kids(items);
                    let hit = items
                        .chunks_exact(2)
                        .find(|kv| s.str(kv[0]) == Some(key.as_ref()))
                        .map(|kv| kv[1]);
                    let merged = items.chunks_exact(2).any(|kv| s.str(kv[0]) == Some("<<"));
                    match hit {
                        Some(value) => value,
                        None if merged => {
                            return Err(EditError::Alias {
                                path: path.to_string(),
                                line: s.nodes[node].line,
                            });
                        }
                        None => return Err(EditError::NotFound(path.to_string())),
                    }
                }
                (Step::Index(index), Shape::Seq(items)) => *s
                    .kids(items)
                    .get(*index)
                    .ok_or_else(|| EditError::NotFound(path.to_string()))?,
                _ => return Err(EditError::NotFound(path.to_string())),
            };
            self.node_guard(node, path)?;
        }
        Ok(node)
    }

    fn in_flow(&self, target: NodeId) -> bool {
        // A node is in flow context when some flow collection's span contains it.
        let span = &self.stream.nodes[target].span;
        self.stream
            .nodes
            .iter()
            .any(|n| n.flow && n.span.start < span.start && span.end <= n.span.end)
    }

    fn unsupported(&self, path: &NodePath, node: NodeId, reason: &str) -> EditError {
        EditError::Unsupported {
            path: path.to_string(),
            line: self.stream.nodes[node].line,
            reason: reason.to_string(),
        }
    }

    fn set(
        &self,
        root: NodeId,
        path: &NodePath,
        value: &str,
    ) -> Result<(Range<usize>, String), EditError> {
        let target = self.locate(root, path)?;
        let node = &self.stream.nodes[target];
        let Shape::Scalar(old, style) = &node.shape else {
            return Err(self.unsupported(path, target, "not a scalar"));
        };
        if *style == Style::Block {
            return Err(self.unsupported(path, target, "a block scalar (| or >)"));
        }
        let source = &self.text[node.span.clone()];
        if node.span.is_empty() || source.contains(['\n', '\r']) {
            return Err(self.unsupported(path, target, "an empty or multi-line scalar"));
        }
        let old_plain = (*style == Style::Plain).then_some(old.as_ref());
        let (text, _) = scalar::render(value, *style, old_plain, self.in_flow(target));
        Ok((node.span.clone(), text))
    }

    fn eol(&self) -> &'static str {
        if self.text.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        }
    }

    /// Byte offset just past the line on which `node` ends.
    fn after_line(&self, node: NodeId) -> (usize, bool) {
        let end = self.stream.nodes[node].span.end;
        if end > 0 && self.text[..end].ends_with('\n') {
            return (end, false);
        }
        // A block collection ends where the next key starts: its last line
        // ended at the newline before that key's indentation.
        if let Some(newline) = self.text[..end].rfind('\n')
            && self.text[newline + 1..end].trim().is_empty()
        {
            return (newline + 1, false);
        }
        match self.text[end..].find('\n') {
            Some(newline) => (end + newline + 1, false),
            None => (self.text.len(), true),
        }
    }

    fn insert(
        &self,
        map: NodeId,
        path: &NodePath,
        key: &str,
        value: &Inserted<'_>,
    ) -> Result<(Range<usize>, String), EditError> {
        let s = self.stream;
        let Shape::Map(items) = &s.nodes[map].shape else {
            return Err(self.unsupported(path, map, "not a mapping"));
        };
        let items = s.kids(items);
        if items.chunks_exact(2).any(|kv| s.str(kv[0]) == Some(key)) {
            return Err(self.unsupported(path, map, &format!("already has {key}")));
        }
        let key_text = scalar::render_string(key, s.nodes[map].flow);
        if s.nodes[map].flow {
            let entry = match value {
                Inserted::Scalar(v) => format!("{key_text}: {}", scalar::render_string(v, true)),
                Inserted::Map(entries) => format!("{key_text}: {{{}}}", flow_entries(entries)),
            };
            return Ok(match items.last() {
                Some(&last) => {
                    let at = s.nodes[last].span.end;
                    (at..at, format!(", {entry}"))
                }
                None => {
                    let at = s.nodes[map].span.start + 1;
                    (at..at, entry)
                }
            });
        }
        let (Some(&first_key), Some(&last_value)) = (items.first(), items.last()) else {
            return Err(self.unsupported(path, map, "an empty block mapping"));
        };
        let indent = s.nodes[first_key].col;
        let step = self.indent_step();
        let eol = self.eol();
        let (at, needs_newline) = self.after_line(last_value);
        let mut lines = String::new();
        if needs_newline {
            lines.push_str(eol);
        }
        let pad = " ".repeat(indent);
        match value {
            Inserted::Scalar(v) => {
                lines.push_str(&format!(
                    "{pad}{key_text}: {}{eol}",
                    scalar::render_string(v, false)
                ));
            }
            Inserted::Map(entries) => {
                lines.push_str(&format!("{pad}{key_text}:{eol}"));
                let inner = " ".repeat(indent + step);
                for (k, v) in entries.iter() {
                    let k = scalar::render_string(k, false);
                    let v = scalar::render_string(v, false);
                    lines.push_str(&format!("{inner}{k}: {v}{eol}"));
                }
            }
        }
        Ok((at..at, lines))
    }

    /// The file's indentation step: the smallest positive difference between
    /// a block mapping's column and its nested mappings' columns; 2 if none.
    fn indent_step(&self) -> usize {
        let s = self.stream;
        let mut step = usize::MAX;
        for node in &s.nodes {
            if let Shape::Map(items) = &node.shape {
                if node.flow {
                    continue;
                }
                for kv in s.kids(items).chunks_exact(2) {
                    let (k, v) = (&s.nodes[kv[0]], &s.nodes[kv[1]]);
                    if matches!(v.shape, Shape::Map(_))
                        && !v.flow
                        && v.col > k.col
                        && v.line > k.line
                    {
                        step = step.min(v.col - k.col);
                    }
                }
            }
        }
        if step == usize::MAX { 2 } else { step }
    }

    fn remove(
        &self,
        root: NodeId,
        path: &NodePath,
        key: &str,
    ) -> Result<(Range<usize>, String), EditError> {
        let s = self.stream;
        let map = self.locate(root, path)?;
        let Shape::Map(items) = &s.nodes[map].shape else {
            return Err(self.unsupported(path, map, "not a mapping"));
        };
        let items = s.kids(items);
        let position = items
            .chunks_exact(2)
            .position(|kv| s.str(kv[0]) == Some(key))
            .ok_or_else(|| EditError::NotFound(format!("{path}.{key}")))?;
        let (k, v) = (items[2 * position], items[2 * position + 1]);
        let entry_path = path.join([Step::key(key)]);
        self.node_guard(v, &entry_path)?;
        if s.nodes[map].flow {
            let start = s.nodes[k].span.start;
            let end = s.nodes[v].span.end.max(s.nodes[k].span.end);
            let range = self.flow_entry_with_comma(start, end, position, items.len() / 2);
            return Ok((range, String::new()));
        }
        let key_start = s.nodes[k].span.start;
        let line_start = self.text[..key_start].rfind('\n').map_or(0, |n| n + 1);
        if !self.text[line_start..key_start].trim().is_empty() {
            return Err(self.unsupported(
                &entry_path,
                k,
                "the entry shares its line with other syntax",
            ));
        }
        let (end, _) = self.after_line(v);
        Ok((line_start..end, String::new()))
    }

    fn flow_entry_with_comma(
        &self,
        start: usize,
        end: usize,
        position: usize,
        count: usize,
    ) -> Range<usize> {
        let text = self.text;
        if position + 1 < count {
            // Take the comma and spaces after the entry.
            let rest = &text[end..];
            let comma = rest.find(',').map_or(0, |c| c + 1);
            let spaces = rest[comma..].len() - rest[comma..].trim_start_matches([' ', '\t']).len();
            return start..end + comma + spaces;
        }
        if position > 0 {
            // Last entry: take the comma before it.
            let before = &text[..start];
            if let Some(comma) = before.rfind(',') {
                return comma..end;
            }
        }
        start..end
    }
}

fn flow_entries(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                scalar::render_string(k, true),
                scalar::render_string(v, true)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A document as data: what a YAML reader sees, without spans or styles
/// beyond whether a plain scalar resolves to a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Scalar(String, Resolved),
    Seq(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Alias(usize),
}

impl Value {
    pub(crate) fn of(stream: &Stream<'_>, id: NodeId) -> Value {
        let node = &stream.nodes[id];
        match &node.shape {
            Shape::Scalar(text, style) => {
                let resolved = if *style == Style::Plain {
                    scalar::resolve_plain(text)
                } else {
                    Resolved::String
                };
                Value::Scalar(text.to_string(), resolved)
            }
            Shape::Seq(items) => Value::Seq(
                stream
                    .kids(items)
                    .iter()
                    .map(|&i| Value::of(stream, i))
                    .collect(),
            ),
            Shape::Map(items) => Value::Map(
                stream
                    .kids(items)
                    .chunks_exact(2)
                    .map(|kv| (Value::of(stream, kv[0]), Value::of(stream, kv[1])))
                    .collect(),
            ),
            Shape::Alias(anchor) => Value::Alias(*anchor),
        }
    }

    fn key(key: &str) -> Value {
        Value::Scalar(key.to_string(), Resolved::String)
    }

    fn at(&self, path: &NodePath) -> Option<&Value> {
        let mut value = self;
        for step in &path.0 {
            value = match (step, value) {
                (Step::Key(key), Value::Map(entries)) => {
                    &entries
                        .iter()
                        .find(|(k, _)| matches!(k, Value::Scalar(t, _) if t == key))?
                        .1
                }
                (Step::Index(index), Value::Seq(items)) => items.get(*index)?,
                _ => return None,
            };
        }
        Some(value)
    }

    fn at_mut(&mut self, path: &NodePath) -> Option<&mut Value> {
        let mut value = self;
        for step in &path.0 {
            value = match (step, value) {
                (Step::Key(key), Value::Map(entries)) => {
                    &mut entries
                        .iter_mut()
                        .find(|(k, _)| matches!(k, Value::Scalar(t, _) if t == key))?
                        .1
                }
                (Step::Index(index), Value::Seq(items)) => items.get_mut(*index)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// Applies `change` to the data, as the text edit should have.
    fn change(&mut self, change: &Change, set_as: Resolved) -> Option<()> {
        match change {
            Change::Set(path, new) => {
                *self.at_mut(path)? = Value::Scalar(new.clone(), set_as);
            }
            Change::Insert(path, key, value) => {
                let Value::Map(entries) = self.at_mut(path)? else {
                    return None;
                };
                entries.push((Value::key(key), Value::key(value)));
            }
            Change::InsertMap(path, key, inner) => {
                let Value::Map(entries) = self.at_mut(path)? else {
                    return None;
                };
                let inner = inner
                    .iter()
                    .map(|(k, v)| (Value::key(k), Value::key(v)))
                    .collect();
                entries.push((Value::key(key), Value::Map(inner)));
            }
            Change::Remove(path, key) => {
                let Value::Map(entries) = self.at_mut(path)? else {
                    return None;
                };
                let before = entries.len();
                entries.retain(|(k, _)| !matches!(k, Value::Scalar(t, _) if t == key));
                if entries.len() == before {
                    return None;
                }
            }
        }
        Some(())
    }
}

/// Parses edited text; a failure means the edit went wrong.
pub(crate) fn reparse(after: &str) -> Result<Stream<'_>, EditError> {
    Stream::parse(after)
        .map_err(|e| EditError::Verify(format!("the edited text does not parse: {}", e.message)))
}

/// Checks that `new` holds the same documents as `old` with exactly
/// `changes` applied to document `doc`.
pub(crate) fn verify(
    old: &Stream<'_>,
    new: &Stream<'_>,
    doc: usize,
    changes: &[Change],
) -> Result<(), EditError> {
    verify_each(old, new, &[(doc, changes)])
}

/// Checks that `new` holds the same documents as `old` with exactly the
/// changes listed for each document applied to it, in order (a document
/// may be listed more than once), and every other document as it was.
pub(crate) fn verify_each(
    old: &Stream<'_>,
    new: &Stream<'_>,
    changes: &[(usize, &[Change])],
) -> Result<(), EditError> {
    if old.docs.len() != new.docs.len() {
        return Err(EditError::Verify("the number of documents changed".into()));
    }
    let mut by_doc: BTreeMap<usize, Vec<&Change>> = BTreeMap::new();
    for (doc, changes) in changes {
        by_doc.entry(*doc).or_default().extend(changes.iter());
    }
    for (n, (&a, &b)) in old.docs.iter().zip(&new.docs).enumerate() {
        let of_this = by_doc.get(&n).map_or(&[][..], Vec::as_slice);
        if let Some(sets) = scalar_sets(old, a, of_this)? {
            if !same_but(old, a, new, b, &sets) {
                return Err(EditError::Verify(format!(
                    "document {} differs from the intended result",
                    n + 1
                )));
            }
            continue;
        }
        let mut expected = Value::of(old, a);
        let actual = Value::of(new, b);
        for &change in of_this {
            let set_as = set_resolution(&actual, change);
            expected
                .change(change, set_as)
                .ok_or_else(|| EditError::Verify(format!("cannot apply {change:?}")))?;
        }
        if expected != actual {
            return Err(EditError::Verify(format!(
                "document {} differs from the intended result",
                n + 1
            )));
        }
    }
    Ok(())
}

/// When every change is a `Set`: the node each one replaces (as the
/// document holds them as data: the first entry of a key, no alias
/// followed) and its new value, the last one winning, as when the changes
/// are made one after another. `None` when some change is not a `Set`.
fn scalar_sets<'c>(
    stream: &Stream<'_>,
    root: NodeId,
    changes: &[&'c Change],
) -> Result<Option<HashMap<NodeId, &'c str>>, EditError> {
    let mut sets = HashMap::with_capacity(changes.len());
    for &change in changes {
        let Change::Set(path, value) = change else {
            return Ok(None);
        };
        let node = node_of(stream, root, path)
            .ok_or_else(|| EditError::Verify(format!("cannot apply {change:?}")))?;
        sets.insert(node, value.as_str());
    }
    Ok(Some(sets))
}

/// The node at `path`, as [`Value`] finds it.
fn node_of(stream: &Stream<'_>, root: NodeId, path: &NodePath) -> Option<NodeId> {
    let mut node = root;
    for step in &path.0 {
        node = match (step, &stream.nodes[node].shape) {
            (Step::Key(key), Shape::Map(items)) => stream
                .kids(items)
                .chunks_exact(2)
                .find(|kv| matches!(&stream.nodes[kv[0]].shape, Shape::Scalar(t, _) if t == key))
                .map(|kv| kv[1])?,
            (Step::Index(index), Shape::Seq(items)) => *stream.kids(items).get(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Whether node `b` of `new` holds as data what node `a` of `old` holds,
/// but that each node of `sets` is a scalar with the new value (in any
/// style): what comparing them as [`Value`]s says, without building them.
fn same_but(
    old: &Stream<'_>,
    a: NodeId,
    new: &Stream<'_>,
    b: NodeId,
    sets: &HashMap<NodeId, &str>,
) -> bool {
    let after = &new.nodes[b].shape;
    if let Some(value) = sets.get(&a) {
        return matches!(after, Shape::Scalar(text, _) if text == value);
    }
    match (&old.nodes[a].shape, after) {
        (Shape::Scalar(s, s_style), Shape::Scalar(t, t_style)) => {
            s == t && (s_style == t_style || resolution(s, *s_style) == resolution(t, *t_style))
        }
        (Shape::Seq(i), Shape::Seq(j)) | (Shape::Map(i), Shape::Map(j)) => {
            let (i, j) = (old.kids(i), new.kids(j));
            i.len() == j.len()
                && i.iter()
                    .zip(j)
                    .all(|(&x, &y)| same_but(old, x, new, y, sets))
        }
        (Shape::Alias(p), Shape::Alias(q)) => p == q,
        _ => false,
    }
}

/// What a scalar written in `style` resolves to, as [`Value::of`] says.
fn resolution(text: &str, style: Style) -> Resolved {
    if style == Style::Plain {
        scalar::resolve_plain(text)
    } else {
        Resolved::String
    }
}

/// How the new scalar of a `Set` resolves in the edited text; a scalar
/// written plain may legitimately change type (a Helm tag `1.10` → `1.11-rc`).
fn set_resolution(actual: &Value, change: &Change) -> Resolved {
    let Change::Set(path, _) = change else {
        return Resolved::String;
    };
    match actual.at(path) {
        Some(Value::Scalar(_, resolved)) => *resolved,
        _ => Resolved::String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, doc: usize, changes: &[Change]) -> Result<String, EditError> {
        let old = Stream::parse(text).map_err(EditError::Syntax)?;
        let edited = super::apply(text, &old, doc, changes)?;
        verify(&old, &reparse(&edited)?, doc, changes)?;
        Ok(edited)
    }

    fn path(s: &[&str]) -> NodePath {
        NodePath(
            s.iter()
                .map(|p| match p.parse::<usize>() {
                    Ok(i) => Step::Index(i),
                    Err(_) => Step::key(p),
                })
                .collect(),
        )
    }

    #[test]
    fn setting_a_scalar_changes_only_its_bytes() {
        let text = "a:\n  b: 'x'   # keep\n  c: [1, 2]\n";
        let out = apply(text, 0, &[Change::Set(path(&["a", "b"]), "y".into())]).unwrap();
        assert_eq!(out, "a:\n  b: 'y'   # keep\n  c: [1, 2]\n");
    }

    #[test]
    fn anchors_and_aliases_are_refused() {
        let text = "x: &img nginx:1\ny: *img\n";
        let err = apply(text, 0, &[Change::Set(path(&["x"]), "nginx:2".into())]).unwrap_err();
        assert!(matches!(err, EditError::Alias { .. }), "{err}");
        let err = apply(text, 0, &[Change::Set(path(&["y"]), "nginx:2".into())]).unwrap_err();
        assert!(matches!(err, EditError::Alias { .. }), "{err}");
        let merged = "base: &b\n  image: a:1\nc:\n  <<: *b\n";
        let err = apply(
            merged,
            0,
            &[Change::Set(path(&["c", "image"]), "a:2".into())],
        )
        .unwrap_err();
        assert!(matches!(err, EditError::Alias { .. }), "{err}");
    }

    #[test]
    fn inserting_into_a_block_mapping_follows_its_indentation_and_line_endings() {
        let text = "m:\r\n    a: 1\r\nn: 2\r\n";
        let out = apply(
            text,
            0,
            &[Change::Insert(path(&["m"]), "k".into(), "true".into())],
        )
        .unwrap();
        assert_eq!(out, "m:\r\n    a: 1\r\n    k: \"true\"\r\nn: 2\r\n");
    }

    #[test]
    fn inserting_a_mapping_uses_the_files_indent_step() {
        let text = "metadata:\n    name: x\nspec: {}\n";
        let change = Change::InsertMap(
            path(&["metadata"]),
            "annotations".into(),
            vec![("a/b".into(), "c".into())],
        );
        let out = apply(text, 0, &[change]).unwrap();
        assert_eq!(
            out,
            "metadata:\n    name: x\n    annotations:\n        a/b: c\nspec: {}\n"
        );
    }

    #[test]
    fn flow_mappings_get_flow_entries() {
        let text = "metadata: {name: x}\n";
        let change = Change::InsertMap(
            path(&["metadata"]),
            "annotations".into(),
            vec![("a".into(), "b".into())],
        );
        let out = apply(text, 0, &[change]).unwrap();
        assert_eq!(out, "metadata: {name: x, annotations: {a: b}}\n");
        let out = apply(
            &out,
            0,
            &[Change::Remove(path(&["metadata"]), "name".into())],
        )
        .unwrap();
        assert_eq!(out, "metadata: {annotations: {a: b}}\n");
    }

    #[test]
    fn removing_an_entry_removes_its_line() {
        let text = "a:\n  x: 1 # gone\n  y: 2\nb: 3\n";
        let out = apply(text, 0, &[Change::Remove(path(&["a"]), "x".into())]).unwrap();
        assert_eq!(out, "a:\n  y: 2\nb: 3\n");
    }

    #[test]
    fn a_file_without_final_newline_gets_one_before_an_inserted_line() {
        let text = "a:\n  x: 1";
        let out = apply(
            text,
            0,
            &[Change::Insert(path(&["a"]), "z".into(), "2".into())],
        )
        .unwrap();
        assert_eq!(out, "a:\n  x: 1\n  z: \"2\"\n");
    }

    #[test]
    fn edits_planned_on_one_text_are_made_in_one_pass_unless_they_meet() {
        let text = "a: 1\nb: 2\nc: 3\n";
        let edits = vec![(13..14, "9".to_string()), (3..4, "7".to_string())];
        assert_eq!(splice(text, edits).as_deref(), Some("a: 7\nb: 2\nc: 9\n"));
        let meeting = vec![(3..4, "7".to_string()), (4..4, "x".to_string())];
        assert_eq!(splice(text, meeting), None);
        let overlapping = vec![(3..6, "7".to_string()), (5..8, "x".to_string())];
        assert_eq!(splice(text, overlapping), None);
    }

    fn verified(
        before: &str,
        after: &str,
        changes: &[(usize, &[Change])],
    ) -> Result<(), EditError> {
        let (old, new) = (
            Stream::parse(before).unwrap(),
            Stream::parse(after).unwrap(),
        );
        verify_each(&old, &new, changes)
    }

    #[test]
    fn verifying_scalar_sets_compares_the_data_of_every_other_node() {
        let before = "a: {x: 'true', y: 1}\n---\nb: [x, 2]\n";
        let sets = [Change::Set(path(&["a", "x"]), "false".into())];
        let second = [Change::Set(path(&["b", "1"]), "3".into())];
        let both: &[(usize, &[Change])] = &[(0, &sets), (1, &second)];
        // Another style with the same data is the same document.
        verified(before, "a: {x: 'false', y: 1}\n---\nb: ['x', 3]\n", both).unwrap();
        verified(before, "a: {x: \"false\", y: 1}\n---\nb: [x, '3']\n", both).unwrap();
        for wrong in [
            "a: {x: 'false', y: 2}\n---\nb: [x, 3]\n",
            "a: {x: 'true', y: 1}\n---\nb: [x, 3]\n",
            "a: {x: 'false', y: '1'}\n---\nb: [x, 3]\n",
            "a: {x: 'false', y: 1}\n---\nb: [x, 3, 4]\n",
            "a: {x: 'false', y: 1}\n---\nb: {x: 3}\n",
            "a: {x: 'false', y: 1}\n---\nb: [x, 2]\n",
            "a: {x: 'false', y: 1}\n",
        ] {
            let err = verified(before, wrong, both).unwrap_err();
            assert!(matches!(err, EditError::Verify(_)), "{wrong}: {err}");
        }
        let missing = [Change::Set(path(&["a", "z"]), "1".into())];
        let err = verified(before, before, &[(0, &missing)]).unwrap_err();
        assert!(matches!(err, EditError::Verify(_)), "{err}");
    }

    #[test]
    fn block_scalars_are_refused() {
        let text = "a: |\n  image: x:1\n";
        let err = apply(text, 0, &[Change::Set(path(&["a"]), "y".into())]).unwrap_err();
        assert!(matches!(err, EditError::Unsupported { .. }));
    }
}
