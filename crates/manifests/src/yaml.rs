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
#[derive(Debug)]
pub(crate) enum Shape<'a> {
    /// A scalar and its value after escape processing.
    Scalar(Cow<'a, str>, Style),
    /// A sequence of nodes.
    Seq(Vec<NodeId>),
    /// A mapping: keys and values alternate.
    Map(Vec<NodeId>),
    /// A reference to an anchored node (`*name`).
    Alias(usize),
}

/// One node and where it sits.
#[derive(Debug)]
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
#[derive(Debug, Default)]
pub(crate) struct Stream<'a> {
    pub nodes: Vec<Node<'a>>,
    pub docs: Vec<NodeId>,
    /// Anchor id to the node that defines it.
    anchors: Vec<(usize, NodeId)>,
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
    /// Parses every document of `text`.
    pub fn parse(text: &'a str) -> Result<Stream<'a>, SyntaxError> {
        let options = granit_parser::options! { emit_comments: false };
        let mut stream = Stream::default();
        let mut open: Vec<NodeId> = Vec::new();
        for next in Parser::new_from_str_with_options(text, options) {
            let (event, span) = next.map_err(|error| SyntaxError {
                line: error.marker().line(),
                column: error.marker().col() + 1,
                message: error.info(),
            })?;
            match event {
                Event::Scalar(value, style, anchor, _) => {
                    let shape = Shape::Scalar(value, style_of(style));
                    stream.push(shape, &span, anchor, false, &open);
                }
                Event::Alias(id) => {
                    stream.push(Shape::Alias(id), &span, 0, false, &open);
                }
                Event::SequenceStart(style, anchor, _) => {
                    let flow = style == StructureStyle::Flow;
                    let id = stream.push(Shape::Seq(Vec::new()), &span, anchor, flow, &open);
                    open.push(id);
                }
                Event::MappingStart(style, anchor, _) => {
                    let flow = style == StructureStyle::Flow;
                    let id = stream.push(Shape::Map(Vec::new()), &span, anchor, flow, &open);
                    open.push(id);
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some(id) = open.pop() {
                        let end = span.byte_range().map_or(0, |r| r.end);
                        let node = &mut stream.nodes[id];
                        node.span.end = node.span.end.max(end);
                    }
                }
                _ => {}
            }
        }
        Ok(stream)
    }

    fn push(
        &mut self,
        shape: Shape<'a>,
        span: &Span,
        anchor: usize,
        flow: bool,
        open: &[NodeId],
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
        match open.last() {
            Some(&parent) => match &mut self.nodes[parent].shape {
                Shape::Seq(items) | Shape::Map(items) => items.push(id),
                _ => {}
            },
            None => self.docs.push(id),
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
            Shape::Map(items) => Some(items.chunks_exact(2).map(|kv| (kv[0], kv[1]))),
            _ => None,
        }
    }

    /// The items of a sequence node (after alias resolution).
    pub fn items(&self, id: NodeId) -> Option<&[NodeId]> {
        match &self.nodes[self.resolve(id)].shape {
            Shape::Seq(items) => Some(items),
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

/// YAML's null spellings for a plain scalar.
pub(crate) fn is_null(value: &str) -> bool {
    matches!(value, "" | "~" | "null" | "Null" | "NULL")
}
