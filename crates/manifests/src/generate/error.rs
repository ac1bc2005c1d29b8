//! What can go wrong finding, reading or running a `.flux.yaml`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Which command of a `.flux.yaml` an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A generator.
    Generator,
    /// A `containerImage` updater.
    ImageUpdater,
    /// A `policy` updater.
    PolicyUpdater,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Generator => "generator",
            Role::ImageUpdater => "containerImage updater",
            Role::PolicyUpdater => "policy updater",
        })
    }
}

/// What went wrong finding, reading or running a `.flux.yaml`. Each names
/// the file (and line) the user can act on.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A path that resolves outside the checkout (through `..` or a
    /// symlink); it is not read.
    #[error("{}: {message}", path.display())]
    Outside {
        /// The path as given (or the link).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The `.flux.yaml` is not valid.
    #[error("{}:{line}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The `.flux.yaml` says `scanForFiles`: nothing is generated, the
    /// path's YAML files are read.
    #[error("{}: scanForFiles: the path's YAML files are read, nothing is generated", file.display())]
    ScanForFiles {
        /// The file.
        file: PathBuf,
    },
    /// A command could not be started.
    #[error("{}:{line}: {role} `{command}` could not be started: {source}", file.display())]
    Spawn {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("{}:{line}: {role} `{command}` failed ({status}){}", file.display(), stderr_note(.stderr))]
    Failed {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// How it exited.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A command ran past its timeout and was killed.
    #[error("{}:{line}: {role} `{command}` did not finish in {}s and was killed{}", file.display(), timeout.as_secs_f64(), stderr_note(.stderr))]
    Timeout {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// The timeout.
        timeout: Duration,
        /// The end of its stderr.
        stderr: String,
    },
    /// A command printed more than [`Generation::max_output_bytes`](super::Generation::max_output_bytes) and was
    /// killed.
    #[error("{}:{line}: {role} `{command}` printed more than {limit} bytes and was killed{}", file.display(), stderr_note(.stderr))]
    TooMuchOutput {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// The bound.
        limit: usize,
        /// The end of its stderr.
        stderr: String,
    },
    /// The generators' output is not UTF-8 YAML.
    #[error("{}: the generators' output is not YAML: line {line}, column {column} of the output: {message}", file.display())]
    Output {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// 1-based line in the output.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The patch file is not valid, or does not apply.
    #[error("{}:{line}: {message}", path.display())]
    Patch {
        /// The patch file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The update cannot be made with this configuration (no updater of
    /// that kind, no such workload or container in the generated output).
    #[error("{}: {message}", file.display())]
    Refused {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// After the update, the generated workload does not say what was
    /// asked.
    #[error("{}: {message}", file.display())]
    Verify {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// What it says instead, and what was left as it was.
        message: String,
    },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr:\n{stderr}")
    }
}

impl GenerateError {
    /// The file the problem is in.
    pub fn path(&self) -> &std::path::Path {
        match self {
            GenerateError::Io { path, .. }
            | GenerateError::Outside { path, .. }
            | GenerateError::Config { path, .. }
            | GenerateError::Patch { path, .. } => path,
            GenerateError::ScanForFiles { file }
            | GenerateError::Spawn { file, .. }
            | GenerateError::Failed { file, .. }
            | GenerateError::Timeout { file, .. }
            | GenerateError::TooMuchOutput { file, .. }
            | GenerateError::Output { file, .. }
            | GenerateError::Refused { file, .. }
            | GenerateError::Verify { file, .. } => file,
        }
    }
}
