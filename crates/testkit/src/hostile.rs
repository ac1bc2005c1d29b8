//! Hostile config repos: one per way a repo may try to make fluxd read
//! outside it or spend unbounded memory, each beside manifests that must
//! still be read.
//!
//! ```
//! use flux_testkit::hostile::{Case, Outside};
//!
//! let outside = Outside::new();
//! let repo = tempfile::tempdir().expect("a temporary folder");
//! Case::SymlinkAbsolute.fill(repo.path(), &outside);
//! assert!(repo.path().join("leak.yaml").is_symlink());
//! let secret = std::fs::read_to_string(outside.secret_file()).expect("the outside file");
//! assert!(secret.contains(flux_testkit::hostile::SECRET));
//! ```

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::git::write_file;

/// What the file outside the repo holds; a run that shows it anywhere read
/// outside the repo.
pub const SECRET: &str = "s3cr3t-outside-the-repo";

/// The name of the ConfigMap the file outside the repo holds: applied, it
/// would be in the cluster.
pub const SECRET_NAME: &str = "leaked";

/// The workload every hostile repo also holds, which must still be read.
pub const GOOD: &str = "default:deployment/good";

/// The ConfigMap every hostile repo also holds, which must still be applied.
pub const GOOD_CONFIG: &str = "kept";

/// A folder outside the repo, holding a valid manifest whose data is
/// [`SECRET`]: what a symlink would reach.
pub struct Outside {
    dir: tempfile::TempDir,
}

impl Default for Outside {
    fn default() -> Self {
        Outside::new()
    }
}

impl Outside {
    /// A new folder with the secret manifest in it.
    pub fn new() -> Outside {
        let dir = tempfile::Builder::new()
            .prefix("flux-outside-")
            .tempdir()
            .expect("a temporary folder can be made");
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {SECRET_NAME}\n  namespace: default\ndata:\n  token: {SECRET}\n"
        );
        write_file(&dir.path().join("secret.yaml"), text.as_bytes());
        Outside { dir }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The manifest in it.
    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("secret.yaml")
    }
}

/// One hostile repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `leak.yaml` is a symlink to an absolute path outside.
    SymlinkAbsolute,
    /// `leak.yaml` is a symlink climbing out with `..`.
    SymlinkDots,
    /// `leak.yaml` is a symlink to a hidden symlink that leads outside.
    SymlinkChain,
    /// `shared` is a symlink to the folder outside.
    SymlinkFolder,
    /// `outside` is a symlink to the folder outside, for a git path.
    GitPathOut,
    /// `huge.yaml` is larger than the file size limit ([`HUGE_BYTES`]).
    HugeFile,
    /// `deep.yaml` nests past the depth limit.
    DeepNesting,
    /// `bomb.yaml` is a "billion laughs" of aliases.
    AliasBomb,
    /// `many.yaml` holds more documents than the limit.
    TooManyDocuments,
}

/// The size of [`Case::HugeFile`]'s file: more than the default limit of
/// 4 MiB.
pub const HUGE_BYTES: usize = 5 << 20;

impl Case {
    /// Every case.
    pub const ALL: [Case; 9] = [
        Case::SymlinkAbsolute,
        Case::SymlinkDots,
        Case::SymlinkChain,
        Case::SymlinkFolder,
        Case::GitPathOut,
        Case::HugeFile,
        Case::DeepNesting,
        Case::AliasBomb,
        Case::TooManyDocuments,
    ];

    /// The path (relative to the repo) that is refused.
    pub fn refused(self) -> &'static str {
        match self {
            Case::SymlinkAbsolute | Case::SymlinkDots | Case::SymlinkChain => "leak.yaml",
            Case::SymlinkFolder => "shared",
            Case::GitPathOut => "outside",
            Case::HugeFile => "huge.yaml",
            Case::DeepNesting => "deep.yaml",
            Case::AliasBomb => "bomb.yaml",
            Case::TooManyDocuments => "many.yaml",
        }
    }

    /// What the refusal says after the path (and line).
    pub fn message(self) -> String {
        match self {
            Case::SymlinkAbsolute | Case::SymlinkChain | Case::GitPathOut | Case::SymlinkFolder => {
                "refused: it is a symlink out of the checkout".to_string()
            }
            Case::SymlinkDots => "refused: it leads out of the checkout".to_string(),
            Case::HugeFile => format!(
                "refused: {HUGE_BYTES} bytes, more than the limit of {} bytes",
                4 << 20
            ),
            Case::DeepNesting => "refused: collections nested more than 64 deep".to_string(),
            Case::AliasBomb => "refused: aliases that stand for more than 100000 nodes".to_string(),
            Case::TooManyDocuments => "refused: more than 1024 documents".to_string(),
        }
    }

    /// The line where the limit was hit, for the YAML limits.
    pub fn line(self) -> Option<usize> {
        match self {
            Case::DeepNesting => Some(7),
            Case::AliasBomb => Some(7),
            Case::TooManyDocuments => Some(2050),
            _ => None,
        }
    }

    /// The error as printed, the refused path relative to the repo.
    pub fn error(self) -> String {
        match self.line() {
            Some(line) => format!("{}:{line}: {}", self.refused(), self.message()),
            None => format!("{}: {}", self.refused(), self.message()),
        }
    }

    /// The `--git-path`s to read the repo with: all of it, but for
    /// [`Case::GitPathOut`], which names its escaping folder.
    pub fn git_paths(self) -> &'static [&'static str] {
        match self {
            Case::GitPathOut => &["apps", "outside"],
            _ => &["."],
        }
    }

    /// Writes the repo into `work`: the good manifests in `apps/`, and the
    /// hostile entry.
    pub fn fill(self, work: &Path, outside: &Outside) {
        write_file(&work.join("apps/good.yaml"), good_manifests().as_bytes());
        let secret = outside.secret_file();
        match self {
            Case::SymlinkAbsolute => link(&secret, &work.join("leak.yaml")),
            Case::SymlinkDots => {
                // Enough `..` to reach `/` from wherever the repo is checked out.
                let climb = "../".repeat(64);
                let relative = secret
                    .strip_prefix("/")
                    .expect("a temporary path is absolute");
                link(&Path::new(&climb).join(relative), &work.join("leak.yaml"));
            }
            Case::SymlinkChain => {
                link(Path::new(".hop"), &work.join("leak.yaml"));
                link(&secret, &work.join(".hop"));
            }
            Case::SymlinkFolder => link(outside.dir(), &work.join("shared")),
            Case::GitPathOut => link(outside.dir(), &work.join("outside")),
            Case::HugeFile => write_file(&work.join("huge.yaml"), huge().as_bytes()),
            Case::DeepNesting => write_file(&work.join("deep.yaml"), deep(10_000).as_bytes()),
            Case::AliasBomb => write_file(&work.join("bomb.yaml"), alias_bomb().as_bytes()),
            Case::TooManyDocuments => {
                write_file(&work.join("many.yaml"), documents(100_000).as_bytes())
            }
        }
    }
}

fn link(target: &Path, at: &Path) {
    symlink(target, at).unwrap_or_else(|e| panic!("{} can be made: {e}", at.display()));
}

/// A Deployment and a ConfigMap that every hostile repo holds too.
pub fn good_manifests() -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: good\n  namespace: default\nspec:\n  selector:\n    matchLabels: {{app: good}}\n  template:\n    metadata:\n      labels: {{app: good}}\n    spec:\n      containers:\n      - name: good\n        image: docker.io/library/nginx:1.25\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {GOOD_CONFIG}\n  namespace: default\ndata:\n  a: b\n"
    )
}

/// A ConfigMap of [`HUGE_BYTES`] bytes, valid YAML.
pub fn huge() -> String {
    let head = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\n  namespace: default\ndata:\n  blob: ";
    let mut text = String::with_capacity(HUGE_BYTES);
    text.push_str(head);
    text.push_str(&"x".repeat(HUGE_BYTES - head.len() - 1));
    text.push('\n');
    text
}

/// A document nesting `levels` flow sequences inside a ConfigMap.
pub fn deep(levels: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\n  namespace: default\ndata:\n  x: {}{}\n",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

/// A "billion laughs": ten levels, each nine aliases of the one before
/// (9^10 nodes once expanded, under a kilobyte written), as a `List` so
/// that a reader walking items would expand it.
pub fn alias_bomb() -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: List\nl0: &l0 {kind: List, items: [{apiVersion: v1, kind: ConfigMap, metadata: {name: lol}}]}\n",
    );
    for n in 1..10 {
        let refs = vec![format!("*l{}", n - 1); 9].join(", ");
        text.push_str(&format!("l{n}: &l{n} {{kind: List, items: [{refs}]}}\n"));
    }
    text.push_str("items: [*l9]\n");
    text
}

/// `count` empty documents.
pub fn documents(count: usize) -> String {
    "---\n{}\n".repeat(count)
}
