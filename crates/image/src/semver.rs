//! Versions and ranges with the syntax and meaning of the Go library
//! Masterminds/semver v3, which is what Flux users write in `semver:` policies.
//!
//! Versions are lenient: `v1.2.3`, `1.2` (1.2.0), `1` (1.0.0) and
//! `1.25-alpine` (1.25.0 with prerelease `alpine`) all parse.
//!
//! ```
//! use flux_image::semver::{Range, Version};
//! let range: Range = "~1.2".parse()?;
//! assert!(range.admits(&"v1.2.9".parse::<Version>()?));
//! assert!(!range.admits(&"1.3.0".parse::<Version>()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A version parsed leniently.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major number.
    pub major: u64,
    /// Minor number (0 when absent).
    pub minor: u64,
    /// Patch number (0 when absent).
    pub patch: u64,
    /// Dot-separated prerelease identifiers; empty for a release.
    pub pre: Vec<String>,
    /// Build metadata; ignored by comparison.
    pub build: String,
}

/// Why a text is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a version: {reason}")]
pub struct VersionError {
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Version {
    /// True when the version carries a prerelease.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    fn core(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| VersionError {
            text: text.to_string(),
            reason,
        };
        let body = text.strip_prefix('v').unwrap_or(text);
        let (body, build) = match body.split_once('+') {
            Some((b, meta)) => (b, meta),
            None => (body, ""),
        };
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) => (c, p),
            None => (body, ""),
        };
        if body.len() != core.len() && pre.is_empty() {
            return Err(err("empty prerelease"));
        }
        if text.len() != body.len() + usize::from(text.starts_with('v')) && build.is_empty() {
            return Err(err("empty build metadata"));
        }
        let mut numbers = [0u64; 3];
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 3 {
            return Err(err("more than three numbers"));
        }
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("expected numbers separated by dots"));
            }
            *slot = part.parse().map_err(|_| err("number too large"))?;
        }
        let pre = identifiers(pre).map_err(err)?;
        identifiers(build).map_err(err)?;
        for id in &pre {
            if id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("numeric prerelease identifier with a leading zero"));
            }
        }
        Ok(Version {
            major: numbers[0],
            minor: numbers[1],
            patch: numbers[2],
            pre,
            build: build.to_string(),
        })
    }
}

fn identifiers(text: &str) -> Result<Vec<String>, &'static str> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split('.')
        .map(|id| {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                Err("identifiers are non-empty runs of A-Z a-z 0-9 -")
            } else {
                Ok(id.to_string())
            }
        })
        .collect()
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core()
            .cmp(&other.core())
            .then_with(|| compare_prerelease(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver precedence of prereleases: a release outranks any prerelease;
/// numeric identifiers compare as numbers and rank below alphanumeric ones.
fn compare_prerelease(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// A range parse failure, pointing at the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid semver range {range:?}: {reason} at position {position}")]
pub struct RangeError {
    /// The whole range text.
    pub range: String,
    /// Character offset of the problem.
    pub position: usize,
    /// What is wrong.
    pub reason: String,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `=`, or none: equal, or a wildcard match when the version has `x`.
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    /// `~` and `~>`.
    Tilde,
    Caret,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Greater => ">",
            Op::Less => "<",
            Op::GreaterEqual => ">=",
            Op::LessEqual => "<=",
            Op::Tilde => "~",
            Op::Caret => "^",
        }
    }
}

/// One comparator such as `>=1.2` or `~1.x`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    /// The version with wildcards and missing parts as zero.
    version: Version,
    /// The version part as written, for messages.
    written: String,
    /// Minor (and so patch) was `x` or missing.
    minor_wild: bool,
    /// Patch was `x` or missing.
    patch_wild: bool,
    /// Any part was `x` or missing.
    wild: bool,
}

impl Comparator {
    /// Whether `v` satisfies this comparator, following Masterminds' rules
    /// for wildcards and the 0.x caret.
    fn admits(&self, v: &Version) -> bool {
        let c = &self.version;
        if v.is_prerelease() && !c.is_prerelease() {
            return false;
        }
        match self.op {
            Op::Equal if self.wild => self.tilde(v),
            Op::Equal => v == c || (v.core() == c.core() && v.pre == c.pre),
            Op::NotEqual => !self.wildcard_equal(v),
            Op::Greater => self.greater(v),
            Op::Less => v < c,
            Op::GreaterEqual => v >= c,
            Op::LessEqual => self.less_equal(v),
            Op::Tilde => self.tilde(v),
            Op::Caret => self.caret(v),
        }
    }

    fn wildcard_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.wild {
            return v.cmp(c) == Ordering::Equal;
        }
        if v.major != c.major || (!self.minor_wild && v.minor != c.minor) {
            return false;
        }
        // `!=4.1-alpha` differs from 4.1.0 by its prerelease alone.
        self.minor_wild || compare_prerelease(&v.pre, &c.pre) == Ordering::Equal
    }

    fn greater(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.wild {
            return v > c;
        }
        match v.major.cmp(&c.major) {
            Ordering::Greater => true,
            Ordering::Less => false,
            // `>1` needs 2 or more; `>1.1` needs 1.2 or more.
            Ordering::Equal if self.minor_wild => false,
            Ordering::Equal if self.patch_wild => v.minor > c.minor,
            Ordering::Equal => v > c,
        }
    }

    fn less_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.wild {
            return v <= c;
        }
        if v.major != c.major {
            return v.major < c.major;
        }
        self.minor_wild || v.minor <= c.minor
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        if c.core() == (0, 0, 0) && !self.minor_wild && !self.patch_wild {
            return true;
        }
        if self.wild && self.version.major == 0 && self.minor_wild && self.written_is_any() {
            return true;
        }
        v.major == c.major && (self.minor_wild || v.minor == c.minor)
    }

    fn written_is_any(&self) -> bool {
        let first = self
            .written
            .trim_start_matches('v')
            .split('.')
            .next()
            .unwrap_or("");
        is_wild(first)
    }

    fn caret(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        if self.written_is_any() {
            return true;
        }
        if c.major > 0 || self.minor_wild {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.patch_wild {
            return v.minor == c.minor;
        }
        if v.minor > 0 {
            return false;
        }
        v.patch == c.patch
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.op.symbol(), self.written)
    }
}

fn is_wild(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

/// A version range: comparators joined by AND (comma or space), groups
/// joined by OR (`||`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    text: String,
    any_of: Vec<Vec<Comparator>>,
}

/// Why a version is outside a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The version is a prerelease and the range names none.
    Prerelease,
    /// The version fails these comparators (the first failing one of each OR group).
    Outside(Vec<String>),
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Prerelease => f.write_str("prerelease, and the range has none"),
            Miss::Outside(failed) => write!(f, "outside the range (fails {})", failed.join(" or ")),
        }
    }
}

impl Range {
    /// True when `v` is in the range.
    pub fn admits(&self, v: &Version) -> bool {
        self.check(v).is_ok()
    }

    /// `Ok` when `v` is in the range, else why not.
    pub fn check(&self, v: &Version) -> Result<(), Miss> {
        let mut failed = Vec::new();
        for group in &self.any_of {
            match group.iter().find(|c| !c.admits(v)) {
                None => return Ok(()),
                Some(c) => failed.push(c.to_string()),
            }
        }
        let names_prerelease = self
            .any_of
            .iter()
            .flatten()
            .any(|c| c.version.is_prerelease());
        if v.is_prerelease() && !names_prerelease {
            return Err(Miss::Prerelease);
        }
        Err(Miss::Outside(failed))
    }

    /// The range as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Range {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut any_of = Vec::new();
        let mut offset = 0;
        for group in text.split("||") {
            any_of.push(parse_group(text, group, offset)?);
            offset += group.len() + 2;
        }
        Ok(Range {
            text: text.to_string(),
            any_of,
        })
    }
}

/// Tokens of one OR group: comparator texts with their byte offsets.
fn parse_group(whole: &str, group: &str, base: usize) -> Result<Vec<Comparator>, RangeError> {
    let fail = |at: usize, reason: String| RangeError {
        range: whole.to_string(),
        position: whole[..(base + at).min(whole.len())].chars().count(),
        reason,
    };
    let tokens = tokenize(group);
    if tokens.is_empty() {
        return Err(fail(0, "empty range (use * for any version)".into()));
    }
    // A hyphen range: `A - B` is `>=A, <=B`.
    if tokens.len() == 3 && tokens[1].1 == "-" {
        let (lo_at, lo) = tokens[0];
        let (hi_at, hi) = tokens[2];
        for (at, t) in [(lo_at, lo), (hi_at, hi)] {
            if t.starts_with(|c: char| !c.is_ascii_alphanumeric()) {
                return Err(fail(
                    at,
                    format!("a hyphen range takes bare versions, not {t:?}"),
                ));
            }
        }
        return Ok(vec![
            comparator(Op::GreaterEqual, lo).map_err(|r| fail(lo_at, r))?,
            comparator(Op::LessEqual, hi).map_err(|r| fail(hi_at, r))?,
        ]);
    }
    let mut out = Vec::new();
    let mut pending_op: Option<(usize, Op)> = None;
    for (at, token) in tokens {
        let (op, rest, op_len) = split_op(token);
        if token == "-" {
            return Err(fail(
                at,
                "a hyphen range needs exactly one version on each side".into(),
            ));
        }
        match (pending_op.take(), op, rest.is_empty()) {
            (None, Some(op), true) => pending_op = Some((at, op)),
            (Some((op_at, _)), Some(_), _) => {
                return Err(fail(
                    op_at.max(at),
                    format!("operator followed by operator in {token:?}"),
                ));
            }
            (Some((_, op)), None, _) => out.push(comparator(op, rest).map_err(|r| fail(at, r))?),
            (None, op, _) => out
                .push(comparator(op.unwrap_or(Op::Equal), rest).map_err(|r| fail(at + op_len, r))?),
        }
    }
    if let Some((at, op)) = pending_op {
        return Err(fail(
            at,
            format!("operator {} without a version", op.symbol()),
        ));
    }
    Ok(out)
}

/// Splits on whitespace and commas, keeping byte offsets.
fn tokenize(group: &str) -> Vec<(usize, &str)> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, c) in group.char_indices() {
        let sep = c.is_whitespace() || c == ',';
        match (sep, start) {
            (true, Some(s)) => {
                tokens.push((s, &group[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push((s, &group[s..]));
    }
    tokens
}

/// Splits a leading operator off a token: `(op, rest, operator length)`.
fn split_op(token: &str) -> (Option<Op>, &str, usize) {
    const OPS: [(&str, Op); 11] = [
        ("!=", Op::NotEqual),
        (">=", Op::GreaterEqual),
        ("=>", Op::GreaterEqual),
        ("<=", Op::LessEqual),
        ("=<", Op::LessEqual),
        ("~>", Op::Tilde),
        (">", Op::Greater),
        ("<", Op::Less),
        ("=", Op::Equal),
        ("~", Op::Tilde),
        ("^", Op::Caret),
    ];
    for (symbol, op) in OPS {
        if let Some(rest) = token.strip_prefix(symbol) {
            return (Some(op), rest, symbol.len());
        }
    }
    (None, token, 0)
}

/// Builds a comparator from an operator and a version that may hold `x`,
/// `X` or `*` parts or miss parts.
fn comparator(op: Op, written: &str) -> Result<Comparator, String> {
    let body = written.strip_prefix('v').unwrap_or(written);
    let split_at = body.find(['-', '+']).unwrap_or(body.len());
    let (core, tail) = body.split_at(split_at);
    if core.is_empty() {
        return Err(format!("expected a version, found {written:?}"));
    }
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return Err(format!("{written:?} has more than three parts"));
    }
    for part in &parts {
        if !(is_wild(part) || (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))) {
            return Err(format!(
                "{written:?} is not a version (expected digits, x or *)"
            ));
        }
    }
    let part = |i: usize| parts.get(i).copied().filter(|p| !is_wild(p));
    let (minor_wild, patch_wild) = match (part(0), part(1), part(2)) {
        (None, _, _) => (true, true),
        (Some(_), None, _) => (true, true),
        (Some(_), Some(_), None) => (false, true),
        _ => (false, false),
    };
    let zeroed = match (part(0), part(1), part(2)) {
        (None, _, _) => format!("0.0.0{tail}"),
        (Some(a), None, _) => format!("{a}.0.0{tail}"),
        (Some(a), Some(b), None) => format!("{a}.{b}.0{tail}"),
        (Some(a), Some(b), Some(c)) => format!("{a}.{b}.{c}{tail}"),
    };
    let version: Version = zeroed
        .parse()
        .map_err(|e: VersionError| format!("{written:?}: {}", e.reason))?;
    Ok(Comparator {
        op,
        version,
        written: written.to_string(),
        minor_wild,
        patch_wild,
        wild: minor_wild || patch_wild,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn lenient_versions_fill_missing_parts_with_zero() {
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("v1"), v("1.0.0"));
        assert_eq!(v("1.25-alpine").pre, vec!["alpine".to_string()]);
    }

    #[test]
    fn tags_that_are_not_versions_do_not_parse() {
        for tag in ["latest", "master-a000001", "1.2.3.4", "1.2.3-", "", "v"] {
            assert!(tag.parse::<Version>().is_err(), "{tag}");
        }
    }
}
