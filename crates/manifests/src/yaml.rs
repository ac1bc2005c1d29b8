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

/// Limits on the shape of one file's YAML: a file past one is refused
/// before anything reads its resources, so that a deeply nested document or
/// an alias bomb costs time and memory in proportion to the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlLimits {
    /// How deeply collections may nest.
    pub max_depth: usize,
    /// How many nodes aliases (`*name`) may stand for in all, once expanded.
    pub max_alias_nodes: u64,
    /// How many documents one file may hold.
    pub max_documents: usize,
}

impl Default for YamlLimits {
    /// The limits the cluster side's parser has too: manifests of CRDs
    /// nest about 20 deep, and use few aliases if any.
    fn default() -> YamlLimits {
        YamlLimits {
            max_depth: 64,
            max_alias_nodes: 100_000,
            max_documents: 1_024,
        }
    }
}

/// A file past one of its [`YamlLimits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitError {
    /// 1-based line where the limit was hit.
    pub line: usize,
    /// Which limit, and its value.
    pub what: String,
}

/// Why a text gives no tree.
#[derive(Debug)]
pub(crate) enum Unreadable {
    Syntax(SyntaxError),
    Limit(LimitError),
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
    /// earlier streams (see [`Spare::keep`]), and refusing a tree past
    /// `limits` before anything walks it.
    pub fn parse_reusing(
        text: &'a str,
        spare: &mut Spare,
        limits: &YamlLimits,
    ) -> Result<Stream<'a>, Unreadable> {
        let stream = Stream {
            nodes: recycle(std::mem::take(&mut spare.nodes)),
            docs: Vec::new(),
            children: std::mem::take(&mut spare.children),
            anchors: Vec::new(),
        };
        let stream = match crate::subset::parse_into(text, stream) {
            Some(stream) => stream,
            None => Stream::parse_full_within(text, limits.max_depth)?,
        };
        stream.within(limits).map_err(Unreadable::Limit)?;
        stream.refuse_duplicate_keys().map_err(Unreadable::Syntax)?;
        Ok(stream)
    }

    /// Refuses a tree past `limits`: too many documents, collections nested
    /// too deeply, or aliases that stand for too many nodes (the "billion
    /// laughs": each level aliases the one before several times). Aliases
    /// are never expanded here, nor anywhere else but through `kind: List`
    /// items; this bounds that.
    pub(crate) fn within(&self, limits: &YamlLimits) -> Result<(), LimitError> {
        if let Some(&extra) = self.docs.get(limits.max_documents) {
            return Err(LimitError {
                line: self.nodes[extra].line,
                what: format!("more than {} documents", limits.max_documents),
            });
        }
        self.within_depth(limits.max_depth)?;
        if self
            .nodes
            .iter()
            .any(|n| matches!(n.shape, Shape::Alias(_)))
        {
            self.within_alias_nodes(limits.max_alias_nodes)?;
        }
        Ok(())
    }

    fn within_depth(&self, max: usize) -> Result<(), LimitError> {
        // A collection's children come after it, so one pass in order
        // knows every node's depth before it meets the node's children.
        let mut depth = vec![0u32; self.nodes.len()];
        for (id, node) in self.nodes.iter().enumerate() {
            let (Shape::Seq(children) | Shape::Map(children)) = &node.shape else {
                continue;
            };
            let inner = depth[id] + 1;
            if inner as usize > max {
                return Err(LimitError {
                    line: node.line,
                    what: format!("collections nested more than {max} deep"),
                });
            }
            for &kid in self.kids(children) {
                depth[kid] = inner;
            }
        }
        Ok(())
    }

    fn within_alias_nodes(&self, max: u64) -> Result<(), LimitError> {
        // Each node stands for itself and its children, an alias for its
        // anchored node: sizes are summed children first (post-order), and
        // an anchored node is complete before any alias of it.
        let mut end: Vec<NodeId> = (0..self.nodes.len()).collect();
        for id in (0..self.nodes.len()).rev() {
            if let Shape::Seq(children) | Shape::Map(children) = &self.nodes[id].shape
                && let Some(&last) = self.kids(children).last()
            {
                end[id] = end[last];
            }
        }
        let mut order: Vec<NodeId> = (0..self.nodes.len()).collect();
        order.sort_unstable_by_key(|&id| (end[id], std::cmp::Reverse(id)));
        let mut size = vec![0u64; self.nodes.len()];
        let mut expanded: u64 = 0;
        for id in order {
            let node = &self.nodes[id];
            size[id] = match &node.shape {
                Shape::Scalar(..) => 1,
                Shape::Seq(children) | Shape::Map(children) => self
                    .kids(children)
                    .iter()
                    .fold(1u64, |sum, &kid| sum.saturating_add(size[kid])),
                Shape::Alias(_) => {
                    let target = self.resolve(id);
                    if target == id || size[target] == 0 {
                        return Err(LimitError {
                            line: node.line,
                            what: "an alias of a node that encloses it, or of none".to_string(),
                        });
                    }
                    expanded = expanded.saturating_add(size[target]);
                    if expanded > max {
                        return Err(LimitError {
                            line: node.line,
                            what: format!("aliases that stand for more than {max} nodes"),
                        });
                    }
                    size[target]
                }
            };
        }
        Ok(())
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
        let nesting = granit_parser::Options::default().block_nesting_limit;
        Stream::parse_full_within(text, nesting).map_err(|error| match error {
            Unreadable::Syntax(error) => error,
            Unreadable::Limit(error) => SyntaxError {
                line: error.line,
                column: 1,
                message: error.what,
            },
        })
    }

    /// The same, stopping where collections nest deeper than `max_depth`
    /// (flow and block ones counted apart, as the parser does; the tree's
    /// depth check counts them together).
    fn parse_full_within(text: &'a str, max_depth: usize) -> Result<Stream<'a>, Unreadable> {
        let options = granit_parser::options! {
            emit_comments: false,
            flow_nesting_limit: max_depth,
            block_nesting_limit: max_depth,
        };
        let mut stream = Stream::with_capacity(text.len());
        // Open collections, each with where its children start in `pending`.
        let mut open: Vec<(NodeId, usize)> = Vec::new();
        let mut pending: Vec<NodeId> = Vec::new();
        for next in Parser::new_from_str_with_options(text, options) {
            let (event, span) = next.map_err(|error| {
                let line = error.marker().line();
                if matches!(
                    error.kind(),
                    granit_parser::ErrorKind::RecursionLimitExceeded
                ) {
                    return Unreadable::Limit(LimitError {
                        line,
                        what: format!("collections nested more than {max_depth} deep"),
                    });
                }
                Unreadable::Syntax(SyntaxError {
                    line,
                    column: error.marker().col() + 1,
                    message: error.info(),
                })
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
        stream.anchors.sort_by_key(|&(anchor, _)| anchor);
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
        let Shape::Alias(anchor) = self.nodes[id].shape else {
            return id;
        };
        // The anchors are sorted by id (stably, so the last of equal ids is
        // the last definition): a search, not a scan, for every alias.
        let after = self.anchors.partition_point(|&(a, _)| a <= anchor);
        match after.checked_sub(1).map(|n| self.anchors[n]) {
            Some((found, target)) if found == anchor => target,
            _ => id,
        }
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

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn refusal(text: &str, limits: &YamlLimits) -> LimitError {
        match Stream::parse_reusing(text, &mut Spare::default(), limits) {
            Err(Unreadable::Limit(error)) => error,
            Err(Unreadable::Syntax(error)) => panic!("a syntax error, not a limit: {error:?}"),
            Ok(_) => panic!("no limit hit"),
        }
    }

    fn block_nesting(levels: usize) -> String {
        (0..levels)
            .map(|n| format!("{}k{n}:\n", "  ".repeat(n)))
            .collect::<String>()
            + &"  ".repeat(levels)
            + "leaf\n"
    }

    /// Nine levels, each a sequence of nine aliases of the level before.
    fn laughs(levels: usize) -> String {
        let mut text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string();
        for n in 1..levels {
            let refs = vec![format!("*l{}", n - 1); 9].join(", ");
            text.push_str(&format!("l{n}: &l{n} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn documents_past_the_limit_are_refused_at_the_first_extra_one() {
        let limits = YamlLimits {
            max_documents: 3,
            ..YamlLimits::default()
        };
        let text = "---\na: 1\n".repeat(4);
        let error = refusal(&text, &limits);
        assert_eq!(error.line, 8, "{error:?}");
        assert_eq!(error.what, "more than 3 documents");
        assert!(
            Stream::parse_reusing(&"---\na: 1\n".repeat(3), &mut Spare::default(), &limits).is_ok()
        );
    }

    #[test]
    fn nesting_past_the_limit_is_refused_by_either_reader() {
        let limits = YamlLimits::default();
        let error = refusal(&block_nesting(65), &limits);
        assert_eq!(error.what, "collections nested more than 64 deep");
        assert!(error.line >= 64, "{error:?}");
        assert!(Stream::parse_reusing(&block_nesting(63), &mut Spare::default(), &limits).is_ok());
        // Flow collections go to the full parser, which stops where the limit is.
        let flow = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(
            refusal(&flow, &limits).what,
            "collections nested more than 64 deep"
        );
        let mixed = "a:\n  - [[[[x]]]]\n";
        let shallow = YamlLimits {
            max_depth: 4,
            ..YamlLimits::default()
        };
        assert_eq!(refusal(mixed, &shallow).line, 2);
    }

    #[test]
    fn an_alias_bomb_is_refused_without_expanding_it() {
        let limits = YamlLimits::default();
        // 9^20 nodes once expanded, a kilobyte written.
        let error = refusal(&laughs(20), &limits);
        assert_eq!(error.what, "aliases that stand for more than 100000 nodes");
        assert_eq!(error.line, 6, "9^5 nodes cross the limit at l5: {error:?}");
        assert!(Stream::parse_reusing(&laughs(4), &mut Spare::default(), &limits).is_ok());
    }

    #[test]
    fn an_alias_of_a_node_around_it_is_refused() {
        let limits = YamlLimits::default();
        let error = refusal("a: &a\n  b: *a\n", &limits);
        assert_eq!(error.line, 2);
        assert!(error.what.contains("encloses it"), "{error:?}");
    }

    #[test]
    fn aliases_resolve_to_their_anchor_whatever_their_number() {
        let mut text = String::new();
        for n in 0..2_000 {
            text.push_str(&format!("a{n}: &a{n} v{n}\n"));
        }
        for n in 0..2_000 {
            text.push_str(&format!("b{n}: *a{n}\n"));
        }
        let stream = Stream::parse(&text).expect("the text parses");
        let root = stream.docs[0];
        assert_eq!(
            stream.get(root, "b1234").and_then(|v| stream.str(v)),
            Some("v1234")
        );
    }
}
