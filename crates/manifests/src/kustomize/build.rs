//! Running kustomize: with an empty environment, a timeout and bounded
//! output, and not again for a tree whose input files did not change.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Tree;

/// How builds run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Longest a build may take.
    pub timeout: Duration,
    /// Most bytes a build may write.
    pub max_output: usize,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            timeout: Duration::from_secs(60),
            max_output: 64 << 20,
        }
    }
}

/// A build kept: the hash of the files it read, and its output.
type Kept = (Vec<u8>, Arc<str>);

/// Builds kept from one load to the next: a tree whose input files did not
/// change is not built again.
#[derive(Debug, Default)]
pub struct BuildCache {
    builds: Mutex<HashMap<PathBuf, Kept>>,
    runs: std::sync::atomic::AtomicUsize,
}

impl BuildCache {
    /// How many times kustomize ran for this cache.
    pub fn runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The kustomize program: `kustomize build`, else `kubectl kustomize`.
fn program() -> Option<(PathBuf, &'static str)> {
    let path = std::env::var_os("PATH")?;
    for (name, verb) in [("kustomize", "build"), ("kubectl", "kustomize")] {
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        {
            return Some((found, verb));
        }
    }
    None
}

/// Builds the tree at `dir` (in the checkout at `root`), or reuses the
/// cached build when none of the files it reads changed.
pub(crate) fn build(
    tree: &Tree,
    root: &Path,
    dir: &Path,
    options: &BuildOptions,
    cache: Option<&BuildCache>,
) -> Result<Arc<str>, String> {
    let refused: Vec<&str> = tree
        .closure(dir)
        .iter()
        .flat_map(|n| n.refused.iter().map(String::as_str))
        .collect();
    if !refused.is_empty() {
        return Err(format!("not built: {}", refused.join("; ")));
    }
    let key = dir.strip_prefix(root).unwrap_or(dir).to_path_buf();
    let Some((program, verb)) = program() else {
        return Err(
            "not built: neither `kustomize` nor `kubectl` is on the PATH to build it".into(),
        );
    };
    let Some(cache) = cache else {
        return run(&program, verb, dir, options).map(Arc::from);
    };
    let hash = inputs_hash(tree, root, dir, &program);
    if let Some((known, output)) = cache.builds.lock().expect("the cache lock").get(&key)
        && *known == hash
    {
        return Ok(output.clone());
    }
    cache
        .runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let output: Arc<str> = Arc::from(run(&program, verb, dir, options)?);
    cache
        .builds
        .lock()
        .expect("the cache lock")
        .insert(key, (hash, output.clone()));
    Ok(output)
}

/// A hash of every file under the folders a tree reads (kustomize's load
/// restrictor keeps a build to those), by path relative to the checkout.
fn inputs_hash(tree: &Tree, root: &Path, dir: &Path, program: &Path) -> Vec<u8> {
    use sha2::Digest as _;
    let mut files = BTreeSet::new();
    for node in tree.closure(dir) {
        collect_files(&node.dir, &mut files);
    }
    let mut hash = sha2::Sha256::new();
    hash.update(program.as_os_str().as_encoded_bytes());
    for file in files {
        hash.update([0]);
        hash.update(
            file.strip_prefix(root)
                .unwrap_or(&file)
                .as_os_str()
                .as_encoded_bytes(),
        );
        hash.update([0]);
        match std::fs::symlink_metadata(&file) {
            Ok(meta) if meta.is_symlink() => {
                if let Ok(target) = std::fs::read_link(&file) {
                    hash.update(target.as_os_str().as_encoded_bytes());
                }
            }
            _ => {
                if let Ok(bytes) = std::fs::read(&file) {
                    hash.update(&bytes);
                }
            }
        }
    }
    hash.finalize().to_vec()
}

pub(super) fn collect_files(dir: &Path, files: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, files),
            Ok(_) => {
                files.insert(path);
            }
            Err(_) => {}
        }
    }
}

/// Runs one build with an empty environment, a timeout and bounded output.
fn run(program: &Path, verb: &str, dir: &Path, options: &BuildOptions) -> Result<String, String> {
    let mut child = Command::new(program)
        .arg(verb)
        .arg(dir)
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    let limit = options.max_output as u64;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = {
        let overflow = overflow.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = stdout.take(limit + 1).read_to_end(&mut bytes);
            if bytes.len() as u64 > limit {
                overflow.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            read.map(|_| bytes)
        })
    };
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.take(64 << 10).read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + options.timeout;
    let status = loop {
        if overflow.load(std::sync::atomic::Ordering::Relaxed) {
            break Err(format!(
                "not built: kustomize wrote more than {} bytes",
                options.max_output
            ));
        }
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                break Err(format!(
                    "not built: kustomize took longer than {:?}",
                    options.timeout
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("waiting for kustomize: {e}")),
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
    };
    let stdout = out
        .join()
        .expect("the reader does not panic")
        .map_err(|e| format!("reading kustomize's output: {e}"))?;
    let stderr = String::from_utf8_lossy(&err.join().expect("the reader does not panic"))
        .trim()
        .to_string();
    if !status.success() {
        return Err(format!("kustomize: {}", last_lines(&stderr)));
    }
    if stdout.len() as u64 > limit {
        return Err(format!(
            "not built: kustomize wrote more than {} bytes",
            options.max_output
        ));
    }
    String::from_utf8(stdout).map_err(|e| format!("kustomize's output is not UTF-8: {e}"))
}

/// Kustomize's message without klog's `E1201 12:00:00.000 run.go:72]` head.
fn last_lines(stderr: &str) -> String {
    let text = stderr.lines().rev().take(5).collect::<Vec<_>>();
    let joined = text.into_iter().rev().collect::<Vec<_>>().join("\n");
    match joined.split_once("] ") {
        Some((head, rest)) if head.starts_with(['E', 'W', 'I']) && !head.contains('\n') => {
            rest.to_string()
        }
        _ => joined,
    }
}
