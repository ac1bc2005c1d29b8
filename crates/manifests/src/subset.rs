//! A fast reader for the block-style YAML that manifests are nearly always
//! written in.
//!
//! It builds exactly the tree [`Stream::parse_full`] builds from
//! granit-parser's events (the same nodes in the same order, values,
//! styles, byte spans, lines and columns), but only for a strict subset of
//! YAML. On anything outside the subset it gives up and the caller falls
//! back to the full parser, so giving up is always safe and errors (with
//! their positions) always come from the full parser.
//!
//! The subset: ASCII text (a leading BOM allowed) without tabs or control
//! characters, `\n` or `\r\n` line ends; `---` and `...` alone on their
//! line; comments; block mappings whose keys are one-line plain or quoted
//! scalars; block sequences whose items start on the dash's line; plain
//! scalars on one line; quoted scalars on one line without escapes; flow
//! mappings and sequences on one line; literal block scalars (`|`, `|-`,
//! `|+`). Outside it: anchors, aliases, tags, directives, explicit keys,
//! folded block scalars, indentation indicators, multi-line scalars and
//! flow collections, empty documents, and anything else that would need
//! YAML's finer rules.

use std::borrow::Cow;

use crate::yaml::{Node, NodeId, Shape, Stream, Style};

/// The text is outside the subset: use the full parser.
#[derive(Debug)]
struct Outside;

type Read<T> = Result<T, Outside>;

/// Deeper nesting than this is left to the full parser.
const MAX_DEPTH: usize = 64;

/// Longer implicit keys are errors in YAML; left to the full parser.
const MAX_KEY: usize = 1000;

/// Characters that may not start a plain scalar here (some of them could,
/// by YAML's finer rules; the full parser handles those).
const NOT_PLAIN_START: &[u8] = b"-?:,[]{}#&*!|>'\"%@`";

/// Reads `text` if it lies in the subset.
pub(crate) fn parse(text: &str) -> Option<Stream<'_>> {
    parse_into(text, Stream::with_capacity(text.len()))
}

/// Reads `text` into `stream` (empty, perhaps with room already made) if
/// it lies in the subset.
pub(crate) fn parse_into<'a>(text: &'a str, stream: Stream<'a>) -> Option<Stream<'a>> {
    let bytes = text.as_bytes();
    let start = if bytes.starts_with("\u{feff}".as_bytes()) {
        3
    } else {
        0
    };
    if !plain_text(&bytes[start..]) {
        return None;
    }
    let mut reader = Reader {
        text,
        bytes,
        pos: start,
        line: 1,
        line_start: start,
        depth: 0,
        stream,
        pending: Vec::new(),
    };
    reader.documents().ok()?;
    Some(reader.stream)
}

/// Printable ASCII and line ends, every `\r` followed by `\n`.
fn plain_text(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(n, &b)| match b {
        b' '..=b'~' | b'\n' => true,
        b'\r' => bytes.get(n + 1) == Some(&b'\n'),
        _ => false,
    })
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// 1-based line of `pos`.
    line: usize,
    /// Byte offset where the line of `pos` starts (after a BOM on line 1).
    line_start: usize,
    depth: usize,
    stream: Stream<'a>,
    /// Children of the open collections, innermost last (see [`Stream::close`]).
    pending: Vec<NodeId>,
}

/// A document marker at the start of a line.
#[derive(PartialEq)]
enum Marker {
    Start,
    End,
}

impl<'a> Reader<'a> {
    fn byte(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn byte_at(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    fn col(&self) -> usize {
        self.pos - self.line_start
    }

    fn eof(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn eol_at(&self, at: usize) -> bool {
        matches!(self.byte_at(at), None | Some(b'\n' | b'\r'))
    }

    fn space_or_eol_at(&self, at: usize) -> bool {
        self.byte_at(at) == Some(b' ') || self.eol_at(at)
    }

    /// A `- ` (or `-` at the end of the line) sequence entry at `pos`.
    fn at_dash(&self) -> bool {
        self.byte() == Some(b'-') && self.space_or_eol_at(self.pos + 1)
    }

    fn skip_spaces(&mut self) {
        while self.byte() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_to_eol(&mut self) {
        while !self.eol_at(self.pos) {
            self.pos += 1;
        }
    }

    /// Steps over the line end at `pos` (if not at the end of the text).
    fn next_line(&mut self) {
        if self.byte() == Some(b'\r') {
            self.pos += 1;
        }
        if self.byte() == Some(b'\n') {
            self.pos += 1;
            self.line += 1;
            self.line_start = self.pos;
        }
    }

    /// After a value: only spaces and a comment may follow on its line.
    fn rest_of_line(&mut self) -> Read<()> {
        self.skip_spaces();
        if self.byte() == Some(b'#') && self.byte_at(self.pos - 1) == Some(b' ') {
            self.skip_to_eol();
        }
        if !self.eol_at(self.pos) {
            return Err(Outside);
        }
        self.next_line();
        Ok(())
    }

    /// Skips blank lines and comment lines, from a line's start (or its
    /// indentation), to the next token or the end of the text.
    fn skip_blank(&mut self) {
        loop {
            self.skip_spaces();
            if self.byte() == Some(b'#') {
                self.skip_to_eol();
            }
            if self.eof() || !self.eol_at(self.pos) {
                return;
            }
            self.next_line();
        }
    }

    /// A document marker at `pos`; anything else starting with one is outside.
    fn marker(&self) -> Read<Option<Marker>> {
        if self.col() != 0 {
            return Ok(None);
        }
        let rest = &self.bytes[self.pos..];
        let marker = if rest.starts_with(b"---") {
            Marker::Start
        } else if rest.starts_with(b"...") {
            Marker::End
        } else {
            return Ok(None);
        };
        if self.eol_at(self.pos + 3) {
            Ok(Some(marker))
        } else {
            Err(Outside)
        }
    }

    fn documents(&mut self) -> Read<()> {
        self.skip_blank();
        let mut bare_allowed = true;
        while !self.eof() {
            match self.marker()? {
                Some(Marker::End) => return Err(Outside),
                Some(Marker::Start) => {
                    self.pos += 3;
                    self.rest_of_line()?;
                    self.skip_blank();
                    if self.eof() || self.marker()?.is_some() {
                        return Err(Outside);
                    }
                }
                None if !bare_allowed => return Err(Outside),
                None => {}
            }
            let root = self.block_node(None)?;
            self.stream.docs.push(root);
            bare_allowed = false;
            if self.marker()? == Some(Marker::End) {
                self.pos += 3;
                self.rest_of_line()?;
                self.skip_blank();
                bare_allowed = true;
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        shape: Shape<'a>,
        start: usize,
        end: usize,
        line: usize,
        col: usize,
    ) -> NodeId {
        let id = self.stream.nodes.len();
        self.stream.nodes.push(Node {
            shape,
            span: start..end,
            line,
            col,
            anchor: 0,
            flow: false,
        });
        id
    }

    fn push_child(
        &mut self,
        parent: Option<NodeId>,
        shape: Shape<'a>,
        start: usize,
        end: usize,
    ) -> NodeId {
        let col = start - self.line_start;
        let id = self.push(shape, start, end, self.line, col);
        if parent.is_some() {
            self.pending.push(id);
        }
        id
    }

    /// Ends the collection `node` at `pos`; its children are `pending[mark..]`.
    fn close(&mut self, node: NodeId, mark: usize) {
        self.stream.close(node, self.pos, &mut self.pending, mark);
    }

    /// A block collection starting at the token at `pos`.
    fn block_node(&mut self, parent: Option<NodeId>) -> Read<NodeId> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Outside);
        }
        let node = if self.at_dash() {
            self.sequence(parent, false)
        } else if self.key_colon().is_some() {
            self.mapping(parent)
        } else {
            Err(Outside)
        };
        self.depth -= 1;
        node
    }

    /// A block sequence whose first `-` is at `pos`. An indentless one (the
    /// value of a mapping key, at the key's indentation) ends at a key.
    fn sequence(&mut self, parent: Option<NodeId>, indentless: bool) -> Read<NodeId> {
        let col = self.col();
        let seq = self.push_child(parent, Shape::Seq(0..0), self.pos, self.pos);
        let mark = self.pending.len();
        let mut first = true;
        loop {
            self.pos += 1;
            if self.byte() != Some(b' ') {
                return Err(Outside);
            }
            self.skip_spaces();
            if self.eol_at(self.pos) || self.byte() == Some(b'#') {
                return Err(Outside);
            }
            // An indentless sequence starts at its first item, another at its dash.
            if first && indentless {
                let node = &mut self.stream.nodes[seq];
                node.span = self.pos..self.pos;
                node.col = self.pos - self.line_start;
            }
            first = false;
            self.item(seq)?;
            if self.eof() || self.marker()?.is_some() || self.col() < col {
                break;
            }
            if self.col() > col {
                return Err(Outside);
            }
            if !self.at_dash() {
                if indentless {
                    break;
                }
                return Err(Outside);
            }
        }
        self.close(seq, mark);
        Ok(seq)
    }

    /// One sequence item, starting on the dash's line.
    fn item(&mut self, seq: NodeId) -> Read<()> {
        if self.at_dash() {
            return Err(Outside);
        }
        if self.key_colon().is_some() {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(Outside);
            }
            self.mapping(Some(seq))?;
            self.depth -= 1;
            return Ok(());
        }
        self.inline_value(seq)?;
        self.rest_of_line()?;
        self.skip_blank();
        Ok(())
    }

    /// Where the implicit key starting at `pos` ends with its `:`, if the
    /// line holds one.
    fn key_colon(&self) -> Option<usize> {
        let first = self.byte()?;
        let colon = match first {
            b'"' | b'\'' => self.quoted_end(self.pos).ok()?,
            _ if NOT_PLAIN_START.contains(&first) => return None,
            _ => {
                let mut at = self.pos;
                loop {
                    match self.byte_at(at) {
                        None | Some(b'\n' | b'\r') => return None,
                        Some(b':') if self.space_or_eol_at(at + 1) => break at,
                        Some(b'#') if self.byte_at(at - 1) == Some(b' ') => return None,
                        // Plain keys with flow indicators are left to the full parser.
                        Some(b'[' | b']' | b'{' | b'}') => return None,
                        _ => at += 1,
                    }
                }
            }
        };
        (self.byte_at(colon) == Some(b':') && self.space_or_eol_at(colon + 1)).then_some(colon)
    }

    /// A block mapping whose first key is at `pos`.
    fn mapping(&mut self, parent: Option<NodeId>) -> Read<NodeId> {
        let col = self.col();
        let map = self.push_child(parent, Shape::Map(0..0), self.pos, self.pos);
        let mark = self.pending.len();
        loop {
            let colon = self.key_colon().ok_or(Outside)?;
            self.key(map, colon)?;
            self.pos = colon + 1;
            self.value(map, col, colon)?;
            if self.eof() || self.marker()?.is_some() || self.col() < col {
                break;
            }
            if self.col() > col || self.at_dash() {
                return Err(Outside);
            }
        }
        self.close(map, mark);
        Ok(map)
    }

    /// The key at `pos`, ending at `colon`.
    fn key(&mut self, map: NodeId, colon: usize) -> Read<()> {
        let start = self.pos;
        if colon - start > MAX_KEY {
            return Err(Outside);
        }
        match self.bytes[start] {
            b'"' | b'\'' => {
                self.quoted(map)?;
            }
            _ => {
                let value = &self.text[start..colon];
                if value.ends_with(' ') {
                    return Err(Outside);
                }
                let shape = Shape::Scalar(Cow::Borrowed(value), Style::Plain);
                self.push_child(Some(map), shape, start, colon);
            }
        }
        Ok(())
    }

    /// The value after a block mapping key's `:` (at `pos`), up to the next
    /// token. `col` is the mapping's indentation.
    fn value(&mut self, map: NodeId, col: usize, colon: usize) -> Read<()> {
        self.skip_spaces();
        match self.byte() {
            Some(b'|') => {
                self.literal(col)?;
                self.skip_blank();
                return Ok(());
            }
            Some(b'#') | Some(b'\n' | b'\r') | None => {}
            _ => {
                self.inline_value(map)?;
                self.rest_of_line()?;
                self.skip_blank();
                return Ok(());
            }
        }
        let (line, colon_col) = (self.line, colon - self.line_start);
        self.rest_of_line()?;
        self.skip_blank();
        if !self.eof() && self.marker()?.is_none() {
            if self.col() > col {
                self.block_node(Some(map))?;
                return Ok(());
            }
            if self.col() == col && self.at_dash() {
                self.sequence(Some(map), true)?;
                return Ok(());
            }
        }
        let null = Shape::Scalar(Cow::Borrowed("~"), Style::Plain);
        let id = self.push(null, colon, colon, line, colon_col);
        self.pending.push(id);
        Ok(())
    }

    /// A scalar or flow collection on the current line.
    fn inline_value(&mut self, parent: NodeId) -> Read<()> {
        match self.byte() {
            Some(b'{' | b'[') => self.flow(parent),
            Some(b'"' | b'\'') => self.quoted(parent),
            _ => self.plain_block(parent),
        }
    }

    /// The position of the closing quote of the quoted scalar at `at`, plus
    /// one; outside for escapes and scalars going on past the line.
    fn quoted_end(&self, at: usize) -> Read<usize> {
        let quote = self.bytes[at];
        let mut end = at + 1;
        loop {
            match self.byte_at(end) {
                None | Some(b'\n' | b'\r' | b'\\') => return Err(Outside),
                Some(b) if b == quote => break,
                _ => end += 1,
            }
        }
        if self.byte_at(end + 1) == Some(quote) {
            return Err(Outside);
        }
        Ok(end + 1)
    }

    fn quoted(&mut self, parent: NodeId) -> Read<()> {
        let start = self.pos;
        let end = self.quoted_end(start)?;
        let style = if self.bytes[start] == b'"' {
            Style::Double
        } else {
            Style::Single
        };
        let shape = Shape::Scalar(Cow::Borrowed(&self.text[start + 1..end - 1]), style);
        self.push_child(Some(parent), shape, start, end);
        self.pos = end;
        Ok(())
    }

    /// A plain scalar in block context, up to a comment or the line's end.
    fn plain_block(&mut self, parent: NodeId) -> Read<()> {
        let start = self.pos;
        let first = self.byte().ok_or(Outside)?;
        if NOT_PLAIN_START.contains(&first) || matches!(first, b' ' | b'\n' | b'\r') {
            return Err(Outside);
        }
        let mut end = start;
        loop {
            match self.byte_at(end) {
                None | Some(b'\n' | b'\r') => break,
                Some(b'#') if self.bytes[end - 1] == b' ' => break,
                Some(b':') if self.space_or_eol_at(end + 1) => return Err(Outside),
                Some(b'[' | b']' | b'{' | b'}') => return Err(Outside),
                _ => end += 1,
            }
        }
        while end > start && self.bytes[end - 1] == b' ' {
            end -= 1;
        }
        if end == start {
            return Err(Outside);
        }
        let shape = Shape::Scalar(Cow::Borrowed(&self.text[start..end]), Style::Plain);
        self.push_child(Some(parent), shape, start, end);
        self.pos = end;
        Ok(())
    }

    /// A literal block scalar whose `|` is at `pos`, the value of a key in
    /// a mapping indented by `col`.
    fn literal(&mut self, col: usize) -> Read<()> {
        self.pos += 1;
        let chomp = self.byte();
        if matches!(chomp, Some(b'-' | b'+')) {
            self.pos += 1;
        }
        if !self.eol_at(self.pos) || self.eof() {
            return Err(Outside);
        }
        self.next_line();
        let indent = self.indentation();
        if indent <= col || self.eol_at(self.pos + indent) {
            return Err(Outside);
        }
        let (start, line) = (self.pos + indent, self.line);
        let mut value = String::new();
        let mut breaks = 0;
        loop {
            let spaces = self.indentation();
            let at = self.pos + spaces;
            if self.eol_at(at) {
                if spaces > 0 {
                    return Err(Outside);
                }
                if self.eof() {
                    break;
                }
                breaks += 1;
                self.next_line();
                continue;
            }
            if spaces < indent {
                self.pos = at;
                break;
            }
            value.extend(std::iter::repeat_n('\n', breaks));
            self.pos = self.line_start + indent;
            let content = self.pos;
            self.skip_to_eol();
            value.push_str(&self.text[content..self.pos]);
            if self.eof() {
                return Err(Outside);
            }
            self.next_line();
            breaks = 1;
        }
        match chomp {
            Some(b'-') => {}
            Some(b'+') => value.extend(std::iter::repeat_n('\n', breaks)),
            _ => value.push('\n'),
        }
        let shape = Shape::Scalar(Cow::Owned(value), Style::Block);
        let id = self.push(shape, start, self.pos, line, indent);
        self.pending.push(id);
        Ok(())
    }

    /// The spaces at `pos` (a line's start).
    fn indentation(&self) -> usize {
        self.bytes[self.pos..]
            .iter()
            .take_while(|&&b| b == b' ')
            .count()
    }

    /// A flow collection or scalar at `pos`, all on this line.
    fn flow(&mut self, parent: NodeId) -> Read<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Outside);
        }
        match self.byte() {
            Some(b'{') => self.flow_collection(parent, true)?,
            Some(b'[') => self.flow_collection(parent, false)?,
            Some(b'"' | b'\'') => self.quoted(parent)?,
            _ => self.plain_flow(parent)?,
        }
        self.depth -= 1;
        Ok(())
    }

    /// `{...}` (a mapping) or `[...]` (a sequence) on one line.
    fn flow_collection(&mut self, parent: NodeId, mapping: bool) -> Read<()> {
        let (shape, close) = if mapping {
            (Shape::Map(0..0), b'}')
        } else {
            (Shape::Seq(0..0), b']')
        };
        let node = self.push_child(Some(parent), shape, self.pos, self.pos + 1);
        let mark = self.pending.len();
        self.stream.nodes[node].flow = true;
        self.pos += 1;
        self.skip_spaces();
        if self.byte() == Some(close) {
            self.pos += 1;
            self.close(node, mark);
            return Ok(());
        }
        loop {
            if mapping {
                self.flow_entry(node)?;
            } else {
                self.flow(node)?;
                self.skip_spaces();
            }
            match self.byte() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_spaces();
                    if self.byte() == Some(close) {
                        return Err(Outside);
                    }
                }
                Some(b) if b == close => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(Outside),
            }
        }
        self.close(node, mark);
        Ok(())
    }

    /// `key: value` (or `key:` for a null) in a flow mapping.
    fn flow_entry(&mut self, map: NodeId) -> Read<()> {
        match self.byte() {
            Some(b'"' | b'\'') => self.quoted(map)?,
            _ => self.plain_flow(map)?,
        }
        self.skip_spaces();
        if self.byte() != Some(b':') || self.byte_at(self.pos + 1) != Some(b' ') {
            return Err(Outside);
        }
        let colon = self.pos;
        self.pos += 1;
        self.skip_spaces();
        if matches!(self.byte(), Some(b',' | b'}')) {
            let null = Shape::Scalar(Cow::Borrowed("~"), Style::Plain);
            self.push_child(Some(map), null, colon, colon);
            return Ok(());
        }
        self.flow(map)?;
        self.skip_spaces();
        Ok(())
    }

    /// A plain scalar in a flow collection: it ends at a flow indicator or
    /// at a `:` that is not followed by a character of the scalar.
    fn plain_flow(&mut self, parent: NodeId) -> Read<()> {
        let start = self.pos;
        let first = self.byte().ok_or(Outside)?;
        if NOT_PLAIN_START.contains(&first) || matches!(first, b' ' | b'\n' | b'\r') {
            return Err(Outside);
        }
        let mut end = start;
        loop {
            match self.byte_at(end) {
                None | Some(b'\n' | b'\r' | b',' | b']' | b'}') => break,
                Some(b'#' | b'[' | b'{') => return Err(Outside),
                Some(b':') => match self.byte_at(end + 1) {
                    None | Some(b' ' | b'\n' | b'\r' | b',' | b'[' | b']' | b'{' | b'}') => break,
                    _ => end += 1,
                },
                _ => end += 1,
            }
        }
        while end > start && self.bytes[end - 1] == b' ' {
            end -= 1;
        }
        if end == start {
            return Err(Outside);
        }
        let shape = Shape::Scalar(Cow::Borrowed(&self.text[start..end]), Style::Plain);
        self.push_child(Some(parent), shape, start, end);
        self.pos = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether the subset took `text`; when it did, its tree must be the
    /// full parser's.
    fn agrees(text: &str) -> bool {
        let Some(fast) = parse(text) else {
            return false;
        };
        let full = Stream::parse_full(text).unwrap_or_else(|e| {
            panic!("the full parser refuses what the subset took: {e:?}\n{text}")
        });
        for (n, (a, b)) in fast.nodes.iter().zip(&full.nodes).enumerate() {
            assert_eq!(a, b, "node {n} differs for:\n{text}");
        }
        assert_eq!(fast, full, "trees differ for:\n{text}");
        true
    }

    const TAKEN: &[&str] = &[
        "\u{feff}apiVersion: v1\r\nkind: List\r\nitems:\r\n- a: 1\r\n  b: \"x y\"\r\n  c:\r\n  - p\r\n  - q\r\n  d: {x: 1, y: [a, b]}\r\n  e:\r\n  f: |\r\n    hello\r\n      there\r\n\r\n  g: |-\r\n    z\r\n  h: x # c\r\n...\r\n---\r\nk:\r\n  m: 's'\r\n  # comment\r\n  n:\r\n    o: 1\r\nz:\n",
        "# head\n---\n\"k1\": v\n'k2':   spaced   \nk3: # c\n  n: 1\nk4:\n- p # x\n# mid\n-   q\n\nk5: {}\nk6: []\nk7: {a: \"b\", 'c': [1, {d: e}], f: }\nk8: |+\n  t\n\n# after\nk9: x\n",
        "",
        "# only a comment\n",
        "a: b",
        "a:",
        "- a\n- b: c\n  d: e\n-   f: g\n",
        "a:\n  - x\n  -  y\nb: c\n",
        "a: |\n  one\n\n  two\n# c\nb: |\n    x\n  # less indented comment\nc: d\n",
        "image: localhost:5000/team/worker:3.9  # pinned\nurl: http://x/y#z\n",
        "l: [localhost:5000/a:1, \"b\", 'c']\nm: {image: nginx:1.25, n: 'x'}\n",
        "...\n",
        "a: b\n...\nc: d\n",
        "a: b\n---\n---\nc: d\n",
        "  a: b\n  c: d\n",
        "a: b: c\n",
        "a: -1\nb: -x\nc: x-\n",
    ];

    #[test]
    fn hand_written_cases_agree_with_the_full_parser() {
        for text in TAKEN {
            agrees(text);
        }
        assert!(agrees(TAKEN[0]) && agrees(TAKEN[1]) && agrees(TAKEN[6]));
    }

    #[test]
    fn anything_outside_the_subset_goes_to_the_full_parser() {
        let outside = [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "%YAML 1.2\n---\na: 1\n",
            "? a\n: b\n",
            "a: >\n  folded\n",
            "a: |2\n   x\n",
            "a: multi\n  line\n",
            "a: \"esc\\n\"\n",
            "a: 'it''s'\n",
            "a: [1,\n  2]\n",
            "a:\tb\n",
            "a: b\rc: d\n",
            "--- a\n",
            "---\n",
            "a: b\nc\n",
            "-\n  a: b\n",
            "- - a\n",
            "a: é\n",
            "a: [b,\n  c]\n",
            "a: {b: c,\n  d: e}\n",
        ];
        for text in outside {
            assert!(parse(text).is_none(), "taken: {text:?}");
        }
    }

    #[test]
    fn broken_files_go_to_the_full_parser_for_their_error() {
        for text in [
            "a: b\n  c: d\n",
            "a:\n  b: c\n d: e\n",
            "a: [b\n",
            "- a\nb: c\n",
        ] {
            assert!(parse(text).is_none(), "taken: {text:?}");
            assert!(Stream::parse(text).is_err(), "no error: {text:?}");
        }
    }

    /// What the full parser alone makes of `text`, duplicate keys refused.
    fn full_checked(text: &str) -> Result<Stream<'_>, crate::yaml::SyntaxError> {
        let stream = Stream::parse_full(text)?;
        stream.refuse_duplicate_keys()?;
        Ok(stream)
    }

    #[test]
    fn both_readers_refuse_a_duplicate_key_alike() {
        for (text, taken, line, column, message) in [
            (
                "a: 1\nspec: x\nb: 2\nspec: y\n",
                true,
                4,
                1,
                "duplicate key \"spec\" (first at line 2)",
            ),
            (
                "c:\n- name: web\n  image: x\n  image: y\n",
                true,
                4,
                3,
                "duplicate key \"image\" (first at line 3)",
            ),
            (
                "m: {image: x, 'image': y}\n",
                true,
                1,
                15,
                "duplicate key \"image\" (first at line 1)",
            ),
            (
                "a:\n  b: 1\n  b: 2\na: 3\n",
                true,
                3,
                3,
                "duplicate key \"b\" (first at line 2)",
            ),
            (
                "k: &x 1\nk: *x\n",
                false,
                2,
                1,
                "duplicate key \"k\" (first at line 1)",
            ),
        ] {
            assert_eq!(parse(text).is_some(), taken, "{text:?}");
            let fast = Stream::parse(text).expect_err(text);
            assert_eq!(Err(fast.clone()), full_checked(text), "{text:?}");
            assert_eq!((fast.line, fast.column), (line, column), "{text:?}");
            assert_eq!(fast.message, message);
        }
    }

    #[test]
    fn keys_that_differ_or_sit_in_other_mappings_are_not_duplicates() {
        for text in [
            "a: 1\nb:\n  a: 2\n",
            "- a: 1\n- a: 2\n",
            "a: 1\n---\na: 2\n",
            "<<: {a: 1}\n<<: {b: 2}\n",
            "A: 1\na: 2\n",
        ] {
            assert!(Stream::parse(text).is_ok(), "{text:?}");
        }
        let many: String = (0..200).map(|n| format!("k{n}: v\n")).collect();
        assert!(Stream::parse(&many).is_ok());
        let error = Stream::parse(&format!("{many}k7: again\n")).unwrap_err();
        assert_eq!(
            (error.line, error.message.as_str()),
            (201, "duplicate key \"k7\" (first at line 8)")
        );
    }

    #[test]
    fn generated_manifests_are_nearly_all_taken_and_agree() {
        let files = flux_testkit::generate::files(1_000, 200, 11);
        let taken = files.iter().filter(|f| agrees(&f.text)).count();
        assert!(
            taken * 10 >= files.len() * 9,
            "only {taken} of {} taken",
            files.len()
        );
    }

    #[test]
    fn sock_shop_fixtures_agree() {
        let mut taken = 0;
        let mut total = 0;
        for entry in walk(&flux_testkit::sock_shop_manifests()) {
            let text = std::fs::read_to_string(&entry).expect("fixture reads");
            total += 1;
            taken += usize::from(agrees(&text));
        }
        assert!(total > 0 && taken * 2 >= total, "{taken} of {total} taken");
    }

    #[test]
    fn edit_snapshots_agree() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
        let mut count = 0;
        for path in walk(&dir) {
            let snap = std::fs::read_to_string(&path).expect("snapshot reads");
            // An insta snapshot: a header between `---` lines, then the body.
            let body = snap.splitn(3, "---\n").nth(2).unwrap_or("");
            agrees(body);
            count += 1;
        }
        assert!(count > 0);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).expect("folder reads") {
            let path = entry.expect("entry reads").path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "snap")
            {
                found.push(path);
            }
        }
        found
    }

    /// Bytes that matter to YAML's structure, for mutations.
    const SIGNIFICANT: &[char] = &[
        ' ', ' ', '\n', ':', '-', '#', '\'', '"', '{', '}', '[', ']', ',', '|', '>', '&', '*', '!',
        '?', '\t', '.', '~', 'x', '0', '\\', '\r', '%',
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn generated_files_agree(seed in any::<u64>(), workloads in 1usize..12, files in 1usize..4) {
            for file in flux_testkit::generate::files(workloads, files, seed) {
                agrees(&file.text);
            }
        }

        #[test]
        fn a_repeated_line_is_refused_by_both_readers_alike(
            seed in any::<u64>(),
            line in any::<usize>(),
        ) {
            let text = flux_testkit::generate::files(3, 1, seed).remove(0).text;
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let at = line % lines.len();
            let repeated: String = lines[..=at].iter().chain(&lines[at..]).copied().collect();
            agrees(&repeated);
            prop_assert_eq!(Stream::parse(&repeated), full_checked(&repeated));
        }

        #[test]
        fn mutated_files_agree_or_go_to_the_full_parser(
            seed in any::<u64>(),
            edits in proptest::collection::vec((any::<usize>(), 0usize..SIGNIFICANT.len(), 0usize..3), 1..4),
        ) {
            let mut text = flux_testkit::generate::files(3, 1, seed).remove(0).text;
            for (at, ch, delete) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                if delete > 0 {
                    let mut end = (at + delete).min(text.len());
                    while !text.is_char_boundary(end) {
                        end += 1;
                    }
                    text.replace_range(at..end, "");
                } else {
                    text.insert(at, SIGNIFICANT[ch]);
                }
            }
            agrees(&text);
        }
    }
}
