//! A YAML stream as a tree of nodes that remember where they are in the
//! source: the one representation both reading and editing work from.
//!
//! Built from `granit-parser` events; every node keeps its byte range, so an
//! edit can splice exactly the bytes of one scalar. Comments are not kept:
//! they stay in the source bytes, which an edit never rewrites.

use std::borrow::Cow;
use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, Span, StructureStyle};

/// Index of a node in a [`Stream`].
pub(crate) type NodeId = usize;

/// A collection's children: a range of [`Stream::children`].
pub(crate) type Children = Range<usize>;

/// How a scalar is written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Unquoted.
    Plain,
    /// `'single quoted'`.
    Single,
    /// `"double quoted"`.
    Double,
    /// A `|` or `>` block scalar.
    Block,
}

/// What a node is.
#[derive(Debug, PartialEq)]
pub(crate) enum Shape<'a> {
    /// A scalar and its value after escape processing.
    Scalar(Cow<'a, str>, Style),
    /// A sequence: its items, a range of [`Stream::children`].
    Seq(Children),
    /// A mapping: keys and values alternate, a range of [`Stream::children`].
    Map(Children),
    /// A reference to an anchored node (`*name`).
    Alias(usize),
}

/// One node and where it sits.
#[derive(Debug, PartialEq)]
pub(crate) struct Node<'a> {
    pub shape: Shape<'a>,
    /// Byte range in the source. Block collections start at their first
    /// entry's content; flow collections cover their brackets.
    pub span: Range<usize>,
    /// 1-based line of the start.
    pub line: usize,
    /// 0-based column of the start.
    pub col: usize,
    /// The anchor defined on this node, or 0.
    pub anchor: usize,
    /// Flow style (`{}` / `[]`) for collections.
    pub flow: bool,
}

/// A parsed YAML stream: its nodes and the root of each document.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Stream<'a> {
    pub nodes: Vec<Node<'a>>,
    pub docs: Vec<NodeId>,
    /// The children of every collection, each collection's together: one
    /// allocation for all of them rather than one per collection.
    pub children: Vec<NodeId>,
    /// Anchor id to the node that defines it.
    anchors: Vec<(usize, NodeId)>,
}

/// Room for nodes kept from one stream to build the next in: loading
/// thousands of files then allocates (and frees) a tree's memory once per
/// thread rather than once per file.
#[derive(Debug, Default)]
pub(crate) struct Spare {
    nodes: Vec<Node<'static>>,
    children: Vec<NodeId>,
}

impl Spare {
    /// Keeps the room of a stream that is no longer needed.
    pub fn keep(&mut self, stream: Stream<'_>) {
        self.nodes = recycle(stream.nodes);
        self.children = stream.children;
        self.children.clear();
    }
}

/// An empty vector of nodes of another text, in the allocation of `nodes`.
/// (Collecting an emptied vector's iterator reuses its allocation; were it
/// not to, this would only allocate anew.)
fn recycle<'b>(mut nodes: Vec<Node<'_>>) -> Vec<Node<'b>> {
    nodes.clear();
    nodes
        .into_iter()
        .map(|_| -> Node<'b> { unreachable!("the vector is empty") })
        .collect()
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What the parser found wrong.
    pub message: String,
}

fn style_of(style: ScalarStyle) -> Style {
    match style {
        ScalarStyle::Plain => Style::Plain,
        ScalarStyle::SingleQuoted => Style::Single,
        ScalarStyle::DoubleQuoted => Style::Double,
        _ => Style::Block,
    }
}

impl<'a> Stream<'a> {
    /// Parses every document of `text`: with the fast reader when the text
    /// lies in its subset of YAML (it builds the very same tree), otherwise
    /// (and for every error) with the full parser.
    ///
    /// A mapping that names one key twice is refused, whichever reader
    /// built the tree (see [`Stream::refuse_duplicate_keys`]).
    pub fn parse(text: &'a str) -> Result<Stream<'a>, SyntaxError> {
        let stream = match crate::subset::parse(text) {
            Some(stream) => stream,
            None => Stream::parse_full(text)?,
        };
        stream.refuse_duplicate_keys()?;
        Ok(stream)
    }

    /// Like [`Stream::parse`], building in the room `spare` keeps from
    /// earlier streams (see [`Spare::keep`]).
    pub fn parse_reusing(text: &'a str, spare: &mut Spare) -> Result<Stream<'a>, SyntaxError> {
        let stream = Stream {
            nodes: recycle(std::mem::take(&mut spare.nodes)),
            docs: Vec::new(),
            children: std::mem::take(&mut spare.children),
            anchors: Vec::new(),
        };
        let stream = match crate::subset::parse_into(text, stream) {
            Some(stream) => stream,
            None => Stream::parse_full(text)?,
        };
        stream.refuse_duplicate_keys()?;
        Ok(stream)
    }

    /// The first mapping (in source order) that names a key twice, as an
    /// error at the second key.
    ///
    /// Kubernetes refuses such a document, and reading one of the two
    /// values would act on a file its author may mean otherwise. It runs on
    /// the finished tree, so the fast reader and the full parser refuse
    /// alike. Keys compare by their text, whatever their quoting, as they
    /// do once the document is JSON; the merge key `<<` may repeat.
    pub fn refuse_duplicate_keys(&self) -> Result<(), SyntaxError> {
        let mut found: Option<(NodeId, NodeId)> = None;
        for node in &self.nodes {
            let Shape::Map(children) = &node.shape else {
                continue;
            };
            let Some((first, second)) = self.first_duplicate(self.kids(children)) else {
                continue;
            };
            let start = |id: NodeId| self.nodes[id].span.start;
            if found.is_none_or(|(_, earlier)| start(second) < start(earlier)) {
                found = Some((first, second));
            }
        }
        let Some((first, second)) = found else {
            return Ok(());
        };
        let key = &self.nodes[second];
        Err(SyntaxError {
            line: key.line,
            column: key.col + 1,
            message: format!(
                "duplicate key {:?} (first at line {})",
                self.key_text(second).unwrap_or_default(),
                self.nodes[first].line
            ),
        })
    }

    /// The first key of a mapping's `kids` that repeats an earlier one,
    /// with that earlier one.
    fn first_duplicate(&self, kids: &[NodeId]) -> Option<(NodeId, NodeId)> {
        let keys = kids
            .iter()
            .step_by(2)
            .filter_map(|&key| Some((self.key_text(key)?, key)));
        // Manifests' mappings are small: a scan beats hashing below a few
        // dozen keys, and a large ConfigMap gets the hash map.
        if kids.len() <= 64 {
            return keys.into_iter().find_map(|(text, key)| {
                let mut earlier = kids.iter().step_by(2).take_while(|&&k| k != key);
                let first = earlier.find(|&&k| self.key_text(k) == Some(text))?;
                Some((*first, key))
            });
        }
        let mut seen = std::collections::HashMap::new();
        for (text, key) in keys {
            if let Some(&first) = seen.get(text) {
                return Some((first, key));
            }
            seen.insert(text, key);
        }
        None
    }

    /// The text of a scalar key (after alias resolution), `None` for
    /// collection keys and the merge key `<<`.
    fn key_text(&self, key: NodeId) -> Option<&str> {
        match &self.nodes[self.resolve(key)].shape {
            Shape::Scalar(value, Style::Plain) if value == "<<" => None,
            Shape::Scalar(value, _) => Some(value),
            _ => None,
        }
    }

    /// Parses every document of `text` with the full parser, granit-parser.
    pub fn parse_full(text: &'a str) -> Result<Stream<'a>, SyntaxError> {
        let options = granit_parser::options! { emit_comments: false };
        let mut stream = Stream::with_capacity(text.len());
        // Open collections, each with where its children start in `pending`.
        let mut open: Vec<(NodeId, usize)> = Vec::new();
        let mut pending: Vec<NodeId> = Vec::new();
        for next in Parser::new_from_str_with_options(text, options) {
            let (event, span) = next.map_err(|error| SyntaxError {
                line: error.marker().line(),
                column: error.marker().col() + 1,
                message: error.info(),
            })?;
            match event {
                Event::Scalar(value, style, anchor, _) => {
                    let shape = Shape::Scalar(value, style_of(style));
                    stream.push(shape, &span, anchor, false, &open, &mut pending);
                }
                Event::Alias(id) => {
                    stream.push(Shape::Alias(id), &span, 0, false, &open, &mut pending);
                }
                Event::SequenceStart(style, anchor, _) => {
                    let flow = style == StructureStyle::Flow;
                    let shape = Shape::Seq(0..0);
                    let id = stream.push(shape, &span, anchor, flow, &open, &mut pending);
                    open.push((id, pending.len()));
                }
                Event::MappingStart(style, anchor, _) => {
                    let flow = style == StructureStyle::Flow;
                    let shape = Shape::Map(0..0);
                    let id = stream.push(shape, &span, anchor, flow, &open, &mut pending);
                    open.push((id, pending.len()));
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((id, mark)) = open.pop() {
                        let end = span.byte_range().map_or(0, |r| r.end);
                        stream.close(id, end, &mut pending, mark);
                    }
                }
                _ => {}
            }
        }
        Ok(stream)
    }

    /// An empty stream with room for the nodes of a text of `len` bytes.
    pub(crate) fn with_capacity(len: usize) -> Stream<'a> {
        // Manifests run at about one node per ten bytes.
        let nodes = len / 10 + 4;
        Stream {
            nodes: Vec::with_capacity(nodes),
            docs: Vec::new(),
            children: Vec::with_capacity(nodes),
            anchors: Vec::new(),
        }
    }

    /// Ends the collection `id` at `end` (if its span does not reach that
    /// far yet), taking its children from `pending[mark..]`.
    pub(crate) fn close(&mut self, id: NodeId, end: usize, pending: &mut Vec<NodeId>, mark: usize) {
        let first = self.children.len();
        self.children.extend(pending.drain(mark..));
        let range = first..self.children.len();
        let node = &mut self.nodes[id];
        node.span.end = node.span.end.max(end);
        if let Shape::Seq(children) | Shape::Map(children) = &mut node.shape {
            *children = range;
        }
    }

    /// The nodes of a children range.
    pub fn kids(&self, children: &Children) -> &[NodeId] {
        &self.children[children.clone()]
    }

    fn push(
        &mut self,
        shape: Shape<'a>,
        span: &Span,
        anchor: usize,
        flow: bool,
        open: &[(NodeId, usize)],
        pending: &mut Vec<NodeId>,
    ) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Node {
            shape,
            span: span.byte_range().unwrap_or(0..0),
            line: span.start.line(),
            col: span.start.col(),
            anchor,
            flow,
        });
        if anchor != 0 {
            self.anchors.push((anchor, id));
        }
        if open.is_empty() {
            self.docs.push(id);
        } else {
            pending.push(id);
        }
        id
    }

    /// The node, following an alias to its anchored node.
    pub fn resolve(&self, id: NodeId) -> NodeId {
        if let Shape::Alias(anchor) = self.nodes[id].shape
            && let Some(&(_, target)) = self.anchors.iter().rev().find(|(a, _)| *a == anchor)
        {
            return target;
        }
        id
    }

    /// The scalar text of a node (after alias resolution), if it is a
    /// non-null scalar.
    pub fn str(&self, id: NodeId) -> Option<&str> {
        match &self.nodes[self.resolve(id)].shape {
            Shape::Scalar(value, style) => {
                if *style == Style::Plain && is_null(value) {
                    None
                } else {
                    Some(value)
                }
            }
            _ => None,
        }
    }

    /// The entries of a mapping node (after alias resolution) as key/value pairs.
    pub fn entries(&self, id: NodeId) -> Option<impl Iterator<Item = (NodeId, NodeId)> + '_> {
        match &self.nodes[self.resolve(id)].shape {
            Shape::Map(items) => Some(self.kids(items).chunks_exact(2).map(|kv| (kv[0], kv[1]))),
            _ => None,
        }
    }

    /// The items of a sequence node (after alias resolution).
    pub fn items(&self, id: NodeId) -> Option<&[NodeId]> {
        match &self.nodes[self.resolve(id)].shape {
            Shape::Seq(items) => Some(self.kids(items)),
            _ => None,
        }
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, map: NodeId, key: &str) -> Option<NodeId> {
        self.entries(map)?
            .find(|&(k, _)| self.str(k) == Some(key))
            .map(|(_, v)| v)
    }

    /// Follows `keys` down nested mappings.
    pub fn get_path(&self, map: NodeId, keys: &[&str]) -> Option<NodeId> {
        keys.iter().try_fold(map, |node, key| self.get(node, key))
    }
}

/// Whether the fast reader, when it takes `text`, builds the very tree the
/// full parser builds (which must then accept the text too). For fuzzing.
pub fn fast_reader_agrees(text: &str) -> bool {
    match crate::subset::parse(text) {
        None => true,
        Some(fast) => Stream::parse_full(text).is_ok_and(|full| full == fast),
    }
}

/// YAML's null spellings for a plain scalar.
pub(crate) fn is_null(value: &str) -> bool {
    matches!(value, "" | "~" | "null" | "Null" | "NULL")
}
