//! What can go wrong reading a checkout.

use std::path::PathBuf;

use crate::id::ResourceId;

/// A problem found while loading; the rest of the checkout still loads.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A path that leads out of the checkout (a symlink or `..`); it is
    /// named, and nothing of where it leads.
    #[error("{}: refused: {why}", path.display())]
    Outside {
        /// The path as found in the checkout (the symlink, or the path given).
        path: PathBuf,
        /// How it leaves the checkout.
        why: &'static str,
    },
    /// A file larger than the limit; it is not read.
    #[error("{}: refused: {size} bytes, more than the limit of {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least, for a file that grew while read).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file whose YAML goes past a limit on its shape (nesting depth,
    /// alias expansion, document count); the rest of it is not read.
    #[error("{}:{line}: refused: {what}", path.display())]
    Limit {
        /// The file.
        path: PathBuf,
        /// 1-based line where the limit was hit.
        line: usize,
        /// Which limit, and its value.
        what: String,
    },
    /// Two resources have the same id.
    #[error("duplicate resource {id}: in {} and {}", first.display(), second.display())]
    Duplicate {
        /// The id.
        id: ResourceId,
        /// Where it was first found.
        first: PathBuf,
        /// Where it was found again.
        second: PathBuf,
    },
    /// A workload's annotation holds an invalid policy.
    #[error("{}:{line}: workload {workload}: annotation {annotation}: {message}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// 1-based line of the workload.
        line: usize,
        /// The workload (boxed: it would make every error twice the size).
        workload: Box<ResourceId>,
        /// The annotation key.
        annotation: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A kustomization did not build; nothing of its tree is loaded.
    #[error("{}: {message}", path.display())]
    Build {
        /// The build root's kustomization file.
        path: PathBuf,
        /// Why, in kustomize's words when it ran.
        message: String,
    },
    /// A `.flux.yaml` could not be read or its commands failed; nothing of
    /// its path is loaded.
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    /// Something in a resource cannot be understood (a bad image, a missing name).
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl LoadError {
    /// The file the problem is in (the first file, for duplicates).
    pub fn path(&self) -> &std::path::Path {
        match self {
            LoadError::Io { path, .. }
            | LoadError::Syntax { path, .. }
            | LoadError::Policy { path, .. }
            | LoadError::Invalid { path, .. }
            | LoadError::Build { path, .. }
            | LoadError::Outside { path, .. }
            | LoadError::TooLarge { path, .. }
            | LoadError::Limit { path, .. } => path,
            LoadError::Duplicate { second, .. } => second,
            LoadError::Generate(error) => error.path(),
        }
    }
}
