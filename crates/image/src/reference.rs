//! Image references: `[registry/]path[:tag][@digest]`, by the distribution
//! reference grammar, normalised the way Docker does.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

/// The registry a reference names when it names none.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Longest repository name (registry and path), in characters.
pub const NAME_MAX: usize = 255;
/// Longest tag, in characters.
pub const TAG_MAX: usize = 128;

/// What is wrong with an image reference, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {problem} (at position {position})")]
pub struct RefError {
    /// The text that failed to parse.
    pub input: String,
    /// Zero-based character offset of the first offending character.
    pub position: usize,
    /// What is wrong there.
    pub problem: Problem,
}

/// The ways an image reference can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Nothing to parse.
    #[error("reference is empty")]
    Empty,
    /// An upper-case letter in the repository path.
    #[error("repository name must be lowercase")]
    Uppercase,
    /// A character the grammar does not allow here.
    #[error("unexpected character {0:?}")]
    Unexpected(char),
    /// A path component that is empty or starts/ends with a separator.
    #[error("path component must start and end with a lowercase letter or digit")]
    BadComponent,
    /// A registry host that is not a host name, IP address or `[IPv6]`.
    #[error("invalid registry host")]
    BadHost,
    /// A port that is not a number.
    #[error("invalid port")]
    BadPort,
    /// A tag that breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag (tags are up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -)")]
    BadTag,
    /// A digest that is not `algorithm:hex` with the algorithm's length.
    #[error("invalid digest: {0}")]
    BadDigest(&'static str),
    /// The repository name is over [`NAME_MAX`] characters.
    #[error("repository name longer than 255 characters")]
    TooLong,
    /// A 64-hex-digit name, which Docker reserves for image ids.
    #[error("repository name cannot be a 64-character hexadecimal id")]
    HexName,
}

/// A repository: registry plus path, e.g. `docker.io/library/nginx`.
///
/// Always held normalised; [`Name::familiar`] gives the short spelling.
/// Clones share one text: a large checkout names a few hundred
/// repositories from tens of thousands of containers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name {
    /// `registry/path`; a registry never holds a `/`, so the text is unique.
    text: Arc<str>,
    /// Where the path starts.
    path: u32,
}

impl Name {
    fn new(registry: &str, path: &str) -> Name {
        let text: Arc<str> = format!("{registry}/{path}").into();
        let path = u32::try_from(registry.len() + 1).expect("a registry name is short");
        Name { text, path }
    }

    /// The registry as named in references (`docker.io`, `quay.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.text[..self.path as usize - 1]
    }

    /// The path inside the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.text[self.path as usize..]
    }

    /// The host to send registry API calls to; Docker Hub is served from
    /// `registry-1.docker.io`, everything else from its own name.
    pub fn api_host(&self) -> &str {
        match self.registry() {
            DOCKER_HUB => DOCKER_HUB_API_HOST,
            registry => registry,
        }
    }

    /// `docker.io/library/nginx`.
    pub fn canonical(&self) -> String {
        self.text.to_string()
    }

    /// As a user writes it: `nginx`, `weaveworks/flux`, `quay.io/x/y`.
    pub fn familiar(&self) -> String {
        if self.registry() != DOCKER_HUB {
            return self.canonical();
        }
        let path = self.path();
        if let Some(rest) = path.strip_prefix("library/")
            && !rest.contains('/')
        {
            return rest.to_string();
        }
        // `docker.io/a.b/c` must keep its registry, or `a.b` would read as one.
        let first = path.split('/').next().unwrap_or_default();
        if is_registry(first) {
            return self.canonical();
        }
        path.to_string()
    }

    /// This repository with a tag.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, RefError> {
        ImageRef::parse(&format!("{}:{tag}", self.canonical()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Name")
            .field("registry", &self.registry())
            .field("path", &self.path())
            .finish()
    }
}

/// Ordered by registry, then path.
impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.registry(), self.path()).cmp(&(other.registry(), other.path()))
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Name {
    type Err = RefError;

    /// Parses a repository name; a tag or digest is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let image = ImageRef::parse(s)?;
        if let Some(at) = s.find(['@']).or_else(|| tag_colon(s)) {
            return Err(RefError {
                input: s.to_string(),
                position: at,
                problem: Problem::Unexpected(s[at..].chars().next().unwrap_or(':')),
            });
        }
        Ok(image.name)
    }
}

/// A parsed image reference: a repository with an optional tag and digest.
///
/// Equality and hashing are on the canonical form, so `nginx:1.25` equals
/// `docker.io/library/nginx:1.25`.
#[derive(Debug, Clone)]
pub struct ImageRef {
    name: Name,
    tag: Option<Box<str>>,
    digest: Option<Box<str>>,
}

impl ImageRef {
    /// Parses and normalises `s`.
    ///
    /// ```
    /// use flux_image::ImageRef;
    /// let r = ImageRef::parse("nginx:1.25")?;
    /// assert_eq!(r.to_string(), "docker.io/library/nginx:1.25");
    /// assert_eq!(r.familiar(), "nginx:1.25");
    /// assert_eq!(r.name().api_host(), "registry-1.docker.io");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        Parser { input: s }.reference()
    }

    /// The repository.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Shares `name`'s text when it is this reference's repository, so that
    /// references to one repository hold it once.
    pub fn share_name(&mut self, name: &Name) {
        if self.name == *name {
            self.name = name.clone();
        }
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `docker.io/library/nginx:1.25`.
    pub fn canonical(&self) -> String {
        self.render(self.name.canonical())
    }

    /// As a user writes it: `nginx:1.25`.
    pub fn familiar(&self) -> String {
        self.render(self.name.familiar())
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, RefError> {
        self.name.with_tag(tag)
    }

    fn render(&self, mut out: String) -> String {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }
}

impl PartialEq for ImageRef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.tag == other.tag && self.digest == other.digest
    }
}

impl Eq for ImageRef {}

impl Hash for ImageRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.tag.hash(state);
        self.digest.hash(state);
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl FromStr for ImageRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical())
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ImageRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Byte offset of the `:` that starts a tag, if the name part has one.
fn tag_colon(s: &str) -> Option<usize> {
    let name_end = s.find('@').unwrap_or(s.len());
    let last_slash = s[..name_end].rfind('/').map_or(0, |i| i + 1);
    s[last_slash..name_end].find(':').map(|i| last_slash + i)
}

struct Parser<'a> {
    input: &'a str,
}

impl Parser<'_> {
    fn fail(&self, byte_offset: usize, problem: Problem) -> RefError {
        RefError {
            input: self.input.to_string(),
            position: self.input[..byte_offset.min(self.input.len())]
                .chars()
                .count(),
            problem,
        }
    }

    fn reference(&self) -> Result<ImageRef, RefError> {
        let s = self.input;
        if s.is_empty() {
            return Err(self.fail(0, Problem::Empty));
        }
        let (rest, digest) = match s.find('@') {
            Some(at) => (&s[..at], Some(self.digest(at + 1)?)),
            None => (s, None),
        };
        let (name_text, tag) = match tag_colon(rest) {
            Some(colon) => (
                &rest[..colon],
                Some(self.tag(colon + 1, &rest[colon + 1..])?),
            ),
            None => (rest, None),
        };
        let name = self.name(name_text)?;
        Ok(ImageRef {
            name,
            tag: tag.map(String::into_boxed_str),
            digest: digest.map(String::into_boxed_str),
        })
    }

    fn tag(&self, start: usize, tag: &str) -> Result<String, RefError> {
        let mut chars = tag.char_indices();
        match chars.next() {
            None => return Err(self.fail(start, Problem::BadTag)),
            Some((_, c)) if !(c.is_ascii_alphanumeric() || c == '_') => {
                return Err(self.fail(start, Problem::BadTag));
            }
            Some(_) => {}
        }
        if let Some((i, _)) =
            chars.find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(self.fail(start + i, Problem::BadTag));
        }
        if tag.len() > TAG_MAX {
            return Err(self.fail(start + TAG_MAX, Problem::BadTag));
        }
        Ok(tag.to_string())
    }

    fn digest(&self, start: usize) -> Result<String, RefError> {
        let digest = &self.input[start..];
        let Some(colon) = digest.find(':') else {
            return Err(self.fail(start, Problem::BadDigest("expected algorithm:hex")));
        };
        let (algorithm, encoded) = (&digest[..colon], &digest[colon + 1..]);
        self.digest_algorithm(start, algorithm)?;
        let encoded_at = start + colon + 1;
        if let Some(i) = encoded.find(|c: char| !c.is_ascii_hexdigit()) {
            return Err(self.fail(encoded_at + i, Problem::BadDigest("expected hex digits")));
        }
        // Only the registered algorithms can be checked, so only they are accepted.
        let wanted = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(self.fail(start, Problem::BadDigest("unsupported algorithm"))),
        };
        if encoded.len() != wanted {
            return Err(self.fail(encoded_at, Problem::BadDigest("wrong length for algorithm")));
        }
        if encoded.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(self.fail(encoded_at, Problem::BadDigest("hex must be lowercase")));
        }
        Ok(digest.to_string())
    }

    /// algorithm := component ([+._-] component)*, component := [a-z][a-z0-9]*
    fn digest_algorithm(&self, start: usize, algorithm: &str) -> Result<(), RefError> {
        let mut expect_component = true;
        for (i, c) in algorithm.char_indices() {
            let ok = if expect_component {
                c.is_ascii_lowercase()
            } else {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '_' | '-')
            };
            if !ok {
                return Err(self.fail(start + i, Problem::BadDigest("invalid algorithm")));
            }
            expect_component = matches!(c, '+' | '.' | '_' | '-');
        }
        if algorithm.is_empty() || expect_component {
            return Err(self.fail(start, Problem::BadDigest("invalid algorithm")));
        }
        Ok(())
    }

    fn name(&self, text: &str) -> Result<Name, RefError> {
        if text.is_empty() {
            return Err(self.fail(0, Problem::Empty));
        }
        let first_slash = text.find('/');
        let (registry, path, path_at) = match first_slash {
            Some(i) if is_registry(&text[..i]) => {
                self.host(&text[..i])?;
                (text[..i].to_string(), &text[i + 1..], i + 1)
            }
            _ => (DOCKER_HUB.to_string(), text, 0),
        };
        self.path(path, path_at)?;
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            if path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(self.fail(path_at, Problem::HexName));
            }
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if text.chars().count() > NAME_MAX {
            return Err(self.fail(NAME_MAX, Problem::TooLong));
        }
        Ok(Name::new(&registry, &path))
    }

    /// path := component ('/' component)*, component := [a-z0-9]+ (sep [a-z0-9]+)*,
    /// sep := '.' | '_' | '__' | '-'+
    fn path(&self, path: &str, at: usize) -> Result<(), RefError> {
        let mut offset = at;
        for component in path.split('/') {
            self.path_component(component, offset)?;
            offset += component.len() + 1;
        }
        Ok(())
    }

    fn path_component(&self, component: &str, at: usize) -> Result<(), RefError> {
        let bytes = component.as_bytes();
        if let Some(i) = component.find(|c: char| c.is_ascii_uppercase()) {
            return Err(self.fail(at + i, Problem::Uppercase));
        }
        if let Some((i, c)) = component.char_indices().find(|&(_, c)| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(self.fail(at + i, Problem::Unexpected(c)));
        }
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.is_empty() || !alnum(bytes[0]) {
            return Err(self.fail(at, Problem::BadComponent));
        }
        if !alnum(bytes[bytes.len() - 1]) {
            return Err(self.fail(at + bytes.len() - 1, Problem::BadComponent));
        }
        // Runs of separators: one '.', one or two '_', or any number of '-'.
        let mut i = 0;
        while i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let run = &component[start..i];
            let valid = run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-');
            if !valid {
                return Err(self.fail(at + start, Problem::BadComponent));
            }
        }
        Ok(())
    }

    /// host := domain-name | IPv4 | '[' IPv6 ']', then optional ':' port.
    fn host(&self, registry: &str) -> Result<(), RefError> {
        let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return Err(self.fail(0, Problem::BadHost));
            };
            let inside = &rest[..close];
            if inside.is_empty()
                || !inside
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(self.fail(1, Problem::BadHost));
            }
            let after = &rest[close + 1..];
            match after.strip_prefix(':') {
                Some(port) => (None, Some((port, close + 3))),
                None if after.is_empty() => (None, None),
                None => return Err(self.fail(close + 2, Problem::BadHost)),
            }
        } else {
            match registry.split_once(':') {
                Some((host, port)) => (Some(host), Some((port, host.len() + 1))),
                None => (Some(registry), None),
            }
        };
        if let Some(host) = host {
            self.domain_name(host)?;
        }
        if let Some((port, at)) = port
            && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(self.fail(at, Problem::BadPort));
        }
        Ok(())
    }

    /// domain-name := label ('.' label)*, label := [A-Za-z0-9] ([A-Za-z0-9-]* [A-Za-z0-9])?
    fn domain_name(&self, host: &str) -> Result<(), RefError> {
        let mut offset = 0;
        for label in host.split('.') {
            let bytes = label.as_bytes();
            let ok = !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
            if !ok {
                return Err(self.fail(offset, Problem::BadHost));
            }
            offset += label.len() + 1;
        }
        Ok(())
    }
}

/// A first path component names a registry when it has a `.` or `:`, or is `localhost`.
fn is_registry(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost" || component.starts_with('[')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names_get_registry_and_library() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.canonical(), "docker.io/library/nginx");
        assert_eq!(r.familiar(), "nginx");
    }

    #[test]
    fn position_counts_characters() {
        let e = ImageRef::parse("ngiNx").unwrap_err();
        assert_eq!(e.position, 3);
        assert_eq!(e.problem, Problem::Uppercase);
    }
}
