//! Tag policies: which tags of a repository a container may run, and which
//! of them is newest.
//!
//! The strings are those of Flux annotations and flags: `semver:<range>`,
//! `regexp:<re>` (or `regex:<re>`), `glob:<pattern>`; any other string is a
//! glob, so `foo:bar` is the literal glob `foo:bar`.
//!
//! As in Flux v1, the tag `latest` (in any case) is admitted only by the
//! policy that is exactly `latest` (`glob:latest`): `glob:*`, the default,
//! never moves a container to `latest`, and neither does a regex that
//! happens to match it. Semver policies never admit it: it is not a version.
//!
//! ```
//! use flux_image::{Candidate, Policy};
//! let policy: Policy = "semver:~1.2".parse()?;
//! let tags = ["1.2.0", "1.2.9", "v1.2.3", "1.3.0", "1.2.0-rc.1"];
//! let mut admitted: Vec<Candidate> = tags
//!     .iter()
//!     .filter(|t| policy.admits(t))
//!     .map(|t| Candidate::new(*t))
//!     .collect();
//! policy.sort_newest_first(&mut admitted);
//! let names: Vec<&str> = admitted.iter().map(|c| c.tag.as_str()).collect();
//! assert_eq!(names, ["1.2.9", "v1.2.3", "1.2.0"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::semver::{Miss, Range, RangeError, Version};

/// A tag policy.
#[derive(Debug, Clone)]
pub enum Policy {
    /// `glob:<pattern>` or a bare pattern; only `*` is special.
    Glob(Glob),
    /// `semver:<range>`.
    Semver(Range),
    /// `regexp:<re>` or `regex:<re>`, RE2 syntax, unanchored as in Go.
    Regex {
        /// The prefix as written (`regexp` or `regex`), kept for display.
        prefix: &'static str,
        /// The compiled expression.
        regex: regex::Regex,
    },
}

/// Why a policy string is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The semver range does not parse.
    #[error("invalid policy {policy:?}: {source}")]
    Semver {
        /// The whole policy string.
        policy: String,
        /// The range error, with its position inside the range.
        source: RangeError,
    },
    /// The regular expression does not compile.
    #[error("invalid policy {policy:?}: {message}")]
    Regex {
        /// The whole policy string.
        policy: String,
        /// The regex crate's message, which points at the problem.
        message: String,
    },
}

/// Why a policy does not admit a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A semver policy met a tag that is not a version.
    NotAVersion,
    /// A semver policy met a prerelease, and its range names none.
    Prerelease,
    /// A semver version outside the range; the failed comparators.
    OutsideRange(Vec<String>),
    /// The glob does not match.
    GlobMismatch,
    /// The regular expression does not match.
    RegexMismatch,
    /// The tag is `latest`, which only the policy `latest` admits.
    Latest,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotAVersion => f.write_str("not a version"),
            Rejection::Prerelease => f.write_str("prerelease, and the range has none"),
            Rejection::OutsideRange(failed) => {
                write!(f, "outside the range (fails {})", failed.join(" or "))
            }
            Rejection::GlobMismatch => f.write_str("does not match the glob"),
            Rejection::RegexMismatch => f.write_str("does not match the regular expression"),
            Rejection::Latest => f.write_str("latest is admitted only by the policy glob:latest"),
        }
    }
}

impl Policy {
    /// The policy that admits every tag (`glob:*`), Flux's default.
    pub fn all() -> Policy {
        Policy::Glob(Glob::new("*"))
    }

    /// True for `glob:*`, which admits everything.
    pub fn is_all(&self) -> bool {
        matches!(self, Policy::Glob(g) if g.pattern == "*")
    }

    /// True for `glob:latest` (or `latest`), the one policy that admits
    /// the tag `latest`.
    pub fn is_latest(&self) -> bool {
        matches!(self, Policy::Glob(g) if g.pattern == LATEST)
    }

    /// True when `tag` is admitted.
    pub fn admits(&self, tag: &str) -> bool {
        self.check(tag).is_ok()
    }

    /// `Ok` when `tag` is admitted, else why not.
    pub fn check(&self, tag: &str) -> Result<(), Rejection> {
        match self {
            Policy::Glob(_) | Policy::Regex { .. } if is_latest_tag(tag) && !self.is_latest() => {
                Err(Rejection::Latest)
            }
            Policy::Glob(glob) if glob.matches(tag) => Ok(()),
            Policy::Glob(_) => Err(Rejection::GlobMismatch),
            Policy::Regex { regex, .. } if regex.is_match(tag) => Ok(()),
            Policy::Regex { .. } => Err(Rejection::RegexMismatch),
            Policy::Semver(range) => {
                let version: Version = tag.parse().map_err(|_| Rejection::NotAVersion)?;
                range.check(&version).map_err(|miss| match miss {
                    Miss::Prerelease => Rejection::Prerelease,
                    Miss::Outside(failed) => Rejection::OutsideRange(failed),
                })
            }
        }
    }

    /// True when this policy orders by version rather than by creation time.
    pub fn orders_by_version(&self) -> bool {
        matches!(self, Policy::Semver(_))
    }

    /// Compares two candidates, newest first: `Less` means `a` is newer.
    ///
    /// Semver policies order by version, versions before other tags; two
    /// tags of the same version go by tag, descending, so the more explicit
    /// `1.10.0` is newer than `1.10` (and `v1.10` than `1.10`), as in Flux
    /// v1. Glob and regex policies order by creation time, with unknown
    /// times last. Any other tie goes by tag, ascending.
    pub fn newer_first(&self, a: &Candidate, b: &Candidate) -> Ordering {
        let by_tag = a.tag.cmp(&b.tag);
        if self.orders_by_version() {
            return match (Version::from_str(&a.tag), Version::from_str(&b.tag)) {
                (Ok(x), Ok(y)) => y.cmp(&x).then(by_tag.reverse()),
                (Ok(_), Err(_)) => Ordering::Less,
                (Err(_), Ok(_)) => Ordering::Greater,
                (Err(_), Err(_)) => by_tag,
            };
        }
        let by_created = match (a.created, b.created) {
            (Some(x), Some(y)) => y.cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_created.then(by_tag)
    }

    /// Sorts candidates newest first (see [`Policy::newer_first`]).
    pub fn sort_newest_first(&self, candidates: &mut [Candidate]) {
        candidates.sort_by(|a, b| self.newer_first(a, b));
    }

    /// Whether automation may pick this candidate: a glob or regex policy
    /// cannot tell how new a tag is without its creation time.
    pub fn can_automate(&self, candidate: &Candidate) -> bool {
        self.orders_by_version() || candidate.created.is_some()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Glob(glob) => write!(f, "glob:{}", glob.pattern),
            Policy::Semver(range) => write!(f, "semver:{range}"),
            Policy::Regex { prefix, regex } => write!(f, "{prefix}:{}", regex.as_str()),
        }
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(range) = text.strip_prefix("semver:") {
            return range
                .parse()
                .map(Policy::Semver)
                .map_err(|source| PolicyError::Semver {
                    policy: text.to_string(),
                    source,
                });
        }
        for prefix in ["regexp", "regex"] {
            if let Some(expr) = text.strip_prefix(prefix).and_then(|r| r.strip_prefix(':')) {
                let regex = regex::Regex::new(expr).map_err(|e| PolicyError::Regex {
                    policy: text.to_string(),
                    message: e.to_string(),
                })?;
                return Ok(Policy::Regex { prefix, regex });
            }
        }
        let pattern = text.strip_prefix("glob:").unwrap_or(text);
        Ok(Policy::Glob(Glob::new(pattern)))
    }
}

/// The tag that only the policy of the same name admits.
const LATEST: &str = "latest";

/// Whether `tag` is `latest`, in any case (Flux v1 compared it so).
fn is_latest_tag(tag: &str) -> bool {
    tag.eq_ignore_ascii_case(LATEST)
}

/// A glob where `*` matches any run of characters (including none) and
/// every other character matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// A glob from its pattern.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_string(),
        }
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let mut pieces = self.pattern.split('*');
        let first = pieces.next().unwrap_or("");
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let pieces: Vec<&str> = pieces.collect();
        let Some((last, middle)) = pieces.split_last() else {
            return rest.is_empty();
        };
        for piece in middle {
            match rest.find(piece) {
                Some(i) => rest = &rest[i + piece.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// A tag of a repository with what is known of its image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    /// The tag.
    pub tag: String,
    /// The image's creation time, when known.
    pub created: Option<Timestamp>,
}

impl Candidate {
    /// A candidate whose creation time is not known.
    pub fn new(tag: impl Into<String>) -> Candidate {
        Candidate {
            tag: tag.into(),
            created: None,
        }
    }

    /// A candidate created at `created`.
    pub fn created_at(tag: impl Into<String>, created: Timestamp) -> Candidate {
        Candidate {
            tag: tag.into(),
            created: Some(created),
        }
    }
}

/// The result of holding a list of tags against a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Admitted tags, newest first (input order where the policy cannot tell).
    pub admitted: Vec<Candidate>,
    /// Rejected tags with the reason, in input order.
    pub rejected: Vec<(Candidate, Rejection)>,
}

impl Policy {
    /// Splits candidates into admitted (newest first) and rejected (with why).
    ///
    /// The sort is stable, so glob and regex policies over tags without
    /// creation times keep the input order.
    pub fn judge(&self, candidates: impl IntoIterator<Item = Candidate>) -> Verdict {
        let mut admitted = Vec::new();
        let mut rejected = Vec::new();
        for candidate in candidates {
            match self.check(&candidate.tag) {
                Ok(()) => admitted.push(candidate),
                Err(why) => rejected.push((candidate, why)),
            }
        }
        let all_timeless = admitted.iter().all(|c: &Candidate| c.created.is_none());
        if self.orders_by_version() || !all_timeless {
            self.sort_newest_first(&mut admitted);
        }
        Verdict { admitted, rejected }
    }
}
