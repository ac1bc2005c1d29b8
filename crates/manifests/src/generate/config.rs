//! Reading a `.flux.yaml` file, version 1.
//!
//! The format is Flux v1's: `version: 1` and exactly one of
//! `commandUpdated`, `patchUpdated` or `scanForFiles`. Every key is
//! checked: a key the format does not have is an error at its line, so that
//! a `patchFile` put under `commandUpdated` by mistake is not silently
//! ignored.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::GenerateError;
use crate::yaml::{NodeId, Shape, Stream};

/// What a `.flux.yaml` says to do for the `--git-path` it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigKind {
    /// `scanForFiles: {}`: read the YAML files under the path, as if there
    /// were no `.flux.yaml` (a reset for a path below one that generates).
    ScanForFiles,
    /// `commandUpdated`: generators make the manifests; updates run the
    /// updaters, which edit whatever the generators read.
    CommandUpdated {
        /// Commands whose stdout is YAML, run in order.
        generators: Vec<Command>,
        /// Commands run for each update, in order.
        updaters: Vec<Updater>,
    },
    /// `patchUpdated`: generators make the manifests; fluxd keeps what it
    /// sets (images, policy annotations) in a patch file applied on top.
    PatchUpdated {
        /// Commands whose stdout is YAML, run in order.
        generators: Vec<Command>,
        /// The patch file as written, relative to the `--git-path` folder.
        patch_file: PathBuf,
    },
}

/// One command of a `.flux.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The shell command line, run with `sh -c`.
    pub command: String,
    /// Its own `timeout:` (a Go duration such as `90s` or `2m`), when it
    /// has one of at least a second; shorter ones are ignored, as in Flux v1.
    pub timeout: Option<Duration>,
    /// 1-based line of the command in the `.flux.yaml`.
    pub line: usize,
}

/// One entry of `commandUpdated.updaters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updater {
    /// `containerImage.command`: sets a container's image.
    pub container_image: Option<Command>,
    /// `policy.command`: sets or removes one policy annotation.
    pub policy: Option<Command>,
}

/// Parses the text of a `.flux.yaml`; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<ConfigKind, GenerateError> {
    let stream = Stream::parse(text).map_err(|e| GenerateError::Config {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })?;
    Reader {
        path,
        stream: &stream,
    }
    .file()
}

const KINDS: [&str; 3] = ["commandUpdated", "patchUpdated", "scanForFiles"];

struct Reader<'s, 'a> {
    path: &'s Path,
    stream: &'s Stream<'a>,
}

impl Reader<'_, '_> {
    fn error(&self, line: usize, message: impl Into<String>) -> GenerateError {
        GenerateError::Config {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn line(&self, node: NodeId) -> usize {
        self.stream.nodes[node].line
    }

    fn file(&self) -> Result<ConfigKind, GenerateError> {
        let expected =
            "expected `version: 1` and one of commandUpdated, patchUpdated, scanForFiles";
        let docs = &self.stream.docs;
        let Some(&root) = docs.first() else {
            return Err(self.error(1, format!("the file is empty; {expected}")));
        };
        if let Some(&second) = docs.get(1) {
            return Err(self.error(
                self.line(second),
                "a second YAML document; a .flux.yaml holds one",
            ));
        }
        let entries = self.mapping(root, "the file")?;
        let mut version = None;
        let mut kind: Option<(&str, NodeId, NodeId)> = None;
        for (key, value) in entries {
            let name = self.key(key)?;
            match name {
                "version" => version = Some((key, value)),
                _ if KINDS.contains(&name) => {
                    if let Some((first, _, _)) = kind {
                        return Err(self.error(
                            self.line(key),
                            format!(
                                "both {first} and {name}; a .flux.yaml has exactly one of commandUpdated, patchUpdated, scanForFiles"
                            ),
                        ));
                    }
                    kind = Some((name, key, value));
                }
                _ => {
                    return Err(
                        self.error(self.line(key), format!("unknown key {name:?}; {expected}"))
                    );
                }
            }
        }
        let Some((version_key, version)) = version else {
            return Err(self.error(self.line(root), format!("no version; {expected}")));
        };
        if self.stream.str(version) != Some("1") || !self.is_plain(version) {
            let found = self.stream.str(version).unwrap_or("nothing");
            return Err(self.error(
                self.line(version_key),
                format!("unsupported version {found}; the only version is 1"),
            ));
        }
        let Some((name, key, value)) = kind else {
            return Err(self.error(self.line(root), format!("nothing to do; {expected}")));
        };
        match name {
            "scanForFiles" => {
                let entries = self.mapping(value, "scanForFiles")?;
                if let Some((inner, _)) = entries.first() {
                    return Err(self.error(
                        self.line(*inner),
                        "scanForFiles takes no settings; write `scanForFiles: {}`",
                    ));
                }
                Ok(ConfigKind::ScanForFiles)
            }
            "commandUpdated" => self.command_updated(key, value),
            _ => self.patch_updated(key, value),
        }
    }

    fn command_updated(&self, key: NodeId, value: NodeId) -> Result<ConfigKind, GenerateError> {
        let mut generators = None;
        let mut updaters = Vec::new();
        for (k, v) in self.mapping(value, "commandUpdated")? {
            match self.key(k)? {
                "generators" => generators = Some(self.generators(k, v)?),
                "updaters" => updaters = self.updaters(v)?,
                other => {
                    return Err(self.error(
                        self.line(k),
                        format!(
                            "unknown key {other:?} in commandUpdated; it takes generators and updaters"
                        ),
                    ));
                }
            }
        }
        let generators = generators
            .ok_or_else(|| self.error(self.line(key), "commandUpdated without generators"))?;
        Ok(ConfigKind::CommandUpdated {
            generators,
            updaters,
        })
    }

    fn patch_updated(&self, key: NodeId, value: NodeId) -> Result<ConfigKind, GenerateError> {
        let mut generators = None;
        let mut patch_file = None;
        for (k, v) in self.mapping(value, "patchUpdated")? {
            match self.key(k)? {
                "generators" => generators = Some(self.generators(k, v)?),
                "patchFile" => patch_file = Some(self.patch_file(v)?),
                other => {
                    return Err(self.error(
                        self.line(k),
                        format!(
                            "unknown key {other:?} in patchUpdated; it takes generators and patchFile"
                        ),
                    ));
                }
            }
        }
        let generators = generators
            .ok_or_else(|| self.error(self.line(key), "patchUpdated without generators"))?;
        let patch_file = patch_file
            .ok_or_else(|| self.error(self.line(key), "patchUpdated without patchFile"))?;
        Ok(ConfigKind::PatchUpdated {
            generators,
            patch_file,
        })
    }

    fn patch_file(&self, node: NodeId) -> Result<PathBuf, GenerateError> {
        let text = self.string(node, "patchFile")?;
        let path = PathBuf::from(text);
        let inside = path.components().all(|c| {
            matches!(
                c,
                Component::Normal(_) | Component::CurDir | Component::ParentDir
            )
        });
        if text.is_empty() || !inside {
            return Err(self.error(
                self.line(node),
                format!("patchFile {text:?} is not a path relative to the --git-path folder"),
            ));
        }
        Ok(path)
    }

    fn generators(&self, key: NodeId, node: NodeId) -> Result<Vec<Command>, GenerateError> {
        let items = self.sequence(node, "generators")?;
        if items.is_empty() {
            // No generator makes no objects, which a sync would read as
            // "delete everything here".
            return Err(self.error(self.line(key), "generators is empty; give at least one"));
        }
        items
            .iter()
            .map(|&item| self.command(item, "a generator"))
            .collect()
    }

    fn updaters(&self, node: NodeId) -> Result<Vec<Updater>, GenerateError> {
        let mut updaters = Vec::new();
        for &item in self.sequence(node, "updaters")? {
            let mut updater = Updater {
                container_image: None,
                policy: None,
            };
            for (k, v) in self.mapping(item, "an updater")? {
                match self.key(k)? {
                    "containerImage" => {
                        updater.container_image = Some(self.command(v, "containerImage")?);
                    }
                    "policy" => updater.policy = Some(self.command(v, "policy")?),
                    other => {
                        return Err(self.error(
                            self.line(k),
                            format!(
                                "unknown key {other:?} in an updater; it takes containerImage and policy"
                            ),
                        ));
                    }
                }
            }
            if updater.container_image.is_none() && updater.policy.is_none() {
                return Err(self.error(
                    self.line(item),
                    "an updater without containerImage or policy",
                ));
            }
            updaters.push(updater);
        }
        Ok(updaters)
    }

    fn command(&self, node: NodeId, what: &str) -> Result<Command, GenerateError> {
        let mut command = None;
        let mut timeout = None;
        for (k, v) in self.mapping(node, what)? {
            match self.key(k)? {
                "command" => command = Some((self.string(v, "command")?, self.line(k))),
                "timeout" => timeout = self.timeout(v)?,
                other => {
                    return Err(self.error(
                        self.line(k),
                        format!("unknown key {other:?} in {what}; it takes command and timeout"),
                    ));
                }
            }
        }
        let (command, line) = command
            .ok_or_else(|| self.error(self.line(node), format!("{what} without command")))?;
        if command.trim().is_empty() {
            return Err(self.error(line, format!("{what} has an empty command")));
        }
        Ok(Command {
            command: command.to_string(),
            timeout,
            line,
        })
    }

    fn timeout(&self, node: NodeId) -> Result<Option<Duration>, GenerateError> {
        let text = self.string(node, "timeout")?;
        let duration = go_duration(text).ok_or_else(|| {
            self.error(
                self.line(node),
                format!("timeout {text:?} is not a duration such as 30s, 2m or 1m30s"),
            )
        })?;
        Ok((duration >= Duration::from_secs(1)).then_some(duration))
    }

    fn mapping(&self, node: NodeId, what: &str) -> Result<Vec<(NodeId, NodeId)>, GenerateError> {
        match self.stream.entries(node) {
            Some(entries) => Ok(entries.collect()),
            None => Err(self.error(self.line(node), format!("{what} must be a mapping"))),
        }
    }

    fn sequence(&self, node: NodeId, what: &str) -> Result<&[NodeId], GenerateError> {
        self.stream
            .items(node)
            .ok_or_else(|| self.error(self.line(node), format!("{what} must be a list")))
    }

    fn string(&self, node: NodeId, what: &str) -> Result<&str, GenerateError> {
        match &self.stream.nodes[self.stream.resolve(node)].shape {
            Shape::Scalar(..) => self
                .stream
                .str(node)
                .ok_or_else(|| self.error(self.line(node), format!("{what} is empty"))),
            _ => Err(self.error(self.line(node), format!("{what} must be a string"))),
        }
    }

    fn key(&self, node: NodeId) -> Result<&str, GenerateError> {
        self.stream
            .str(node)
            .ok_or_else(|| self.error(self.line(node), "a key that is not a string"))
    }

    fn is_plain(&self, node: NodeId) -> bool {
        matches!(
            &self.stream.nodes[self.stream.resolve(node)].shape,
            Shape::Scalar(_, crate::yaml::Style::Plain)
        )
    }
}

/// A duration in Go's spelling (what Flux v1's `timeout:` took): decimal
/// numbers each with a unit of `h`, `m`, `s`, `ms`, `us` or `ns`, such as
/// `90s`, `1m30s` or `1.5h`.
pub(crate) fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_read_as_flux_v1_wrote_them() {
        assert_eq!(go_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "10", "1d", "s", "1m x"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }
}
