//! Synthetic manifests for property tests and benchmarks: N workloads over
//! M files, in the mix of styles real repositories have.
//!
//! Deterministic for a seed. Styles vary per file and per workload: plain,
//! single- and double-quoted images, indented and flush sequences, CRLF
//! line endings, comments (also after the image), flow-style containers,
//! explicit `---` and `...` markers, a BOM, block scalars that mention
//! `image:`, `List` wrappers, and every workload kind with a pod template.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A small, fast, seeded pseudo-random source (SplitMix64).
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Dice {
        Dice(seed)
    }

    /// The next number.
    pub fn roll(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.roll() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// One generated container: what the file says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedContainer {
    /// The container's name.
    pub name: String,
    /// The image as written.
    pub image: String,
}

/// One generated workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedWorkload {
    /// Its id, `<namespace>:<kind>/<name>`.
    pub id: String,
    /// Its containers (containers, then init containers).
    pub containers: Vec<GeneratedContainer>,
}

/// One generated file: its text and the workloads in it.
#[derive(Debug, Clone)]
pub struct GeneratedFile {
    /// The file name.
    pub name: String,
    /// The text.
    pub text: String,
    /// The workloads it holds.
    pub workloads: Vec<GeneratedWorkload>,
}

const KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
];
const REPOSITORIES: &[&str] = &[
    "nginx",
    "docker.io/library/postgres",
    "quay.io/prometheus/node-exporter",
    "weaveworksdemos/front-end",
    "ghcr.io/acme/api",
    "localhost:5000/team/worker",
    "registry.k8s.io/pause",
];
const TAGS: &[&str] = &[
    "1.25",
    "16.1",
    "v1.7.0",
    "0.3.12",
    "master-a000001",
    "3.9",
    "1.2.3-alpine",
];

struct Style {
    eol: &'static str,
    quote: usize,
    flush_sequences: bool,
    indent: usize,
}

/// The files for `workloads` workloads spread over `files` files.
pub fn files(workloads: usize, files: usize, seed: u64) -> Vec<GeneratedFile> {
    files_with_images(workloads, files, seed, &[])
}

/// [`files`], with every container's image drawn from `images` (full
/// references, e.g. of a local registry's repositories) instead of the
/// built-in mix of public names; an empty list means the built-in mix.
pub fn files_with_images(
    workloads: usize,
    files: usize,
    seed: u64,
    images: &[String],
) -> Vec<GeneratedFile> {
    let mut dice = Dice::new(seed);
    let files = files.max(1);
    (0..files)
        .map(|f| {
            let count = workloads / files + usize::from(f < workloads % files);
            file(&mut dice, f, count, images)
        })
        .collect()
}

/// Writes [`files`] into `dir` (created if missing); returns the paths.
pub fn write(
    dir: &Path,
    workloads: usize,
    file_count: usize,
    seed: u64,
) -> std::io::Result<Vec<PathBuf>> {
    write_with_images(dir, workloads, file_count, seed, &[])
}

/// Writes [`files_with_images`] into `dir` (created if missing); returns the paths.
pub fn write_with_images(
    dir: &Path,
    workloads: usize,
    file_count: usize,
    seed: u64,
    images: &[String],
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    files_with_images(workloads, file_count, seed, images)
        .into_iter()
        .map(|file| {
            let path = dir.join(&file.name);
            std::fs::write(&path, file.text)?;
            Ok(path)
        })
        .collect()
}

fn file(dice: &mut Dice, n: usize, count: usize, images: &[String]) -> GeneratedFile {
    let style = Style {
        eol: if dice.one_in(5) { "\r\n" } else { "\n" },
        quote: dice.below(3),
        flush_sequences: dice.one_in(2),
        indent: if dice.one_in(4) { 4 } else { 2 },
    };
    let mut text = String::new();
    if dice.one_in(10) {
        text.push('\u{feff}');
    }
    let as_list = count > 1 && dice.one_in(6);
    let mut workloads = Vec::new();
    let mut bodies = Vec::new();
    for w in 0..count {
        let (body, workload) = workload(dice, &style, n, w, if as_list { 2 } else { 0 }, images);
        bodies.push(body);
        workloads.push(workload);
    }
    let eol = style.eol;
    if as_list {
        let _ = write!(text, "apiVersion: v1{eol}kind: List{eol}items:{eol}");
        for body in bodies {
            text.push_str(&body.replacen("  ", "- ", 1));
        }
    } else {
        for (w, body) in bodies.into_iter().enumerate() {
            if w > 0 || dice.one_in(2) {
                let _ = write!(text, "---{eol}");
            }
            text.push_str(&body);
            if dice.one_in(8) {
                let _ = write!(text, "...{eol}");
            }
        }
    }
    GeneratedFile {
        name: format!("f{n:05}.yaml"),
        text,
        workloads,
    }
}

fn quoted(style: usize, text: &str) -> String {
    match style {
        1 => format!("'{text}'"),
        2 => format!("\"{text}\""),
        _ => text.to_string(),
    }
}

/// One workload's text, every line indented by `base` spaces.
fn workload(
    dice: &mut Dice,
    style: &Style,
    file: usize,
    n: usize,
    base: usize,
    images: &[String],
) -> (String, GeneratedWorkload) {
    let kind = KINDS[dice.below(KINDS.len())];
    let name = format!("app-{file}-{n}");
    let namespace = format!("team-{}", dice.below(5));
    let i = " ".repeat(style.indent);
    let b = " ".repeat(base);
    let eol = style.eol;
    let mut lines: Vec<String> = Vec::new();
    let api = match kind {
        "Job" => "batch/v1",
        "CronJob" if dice.one_in(2) => "batch/v1beta1",
        "CronJob" => "batch/v1",
        "Pod" => "v1",
        _ => "apps/v1",
    };
    lines.push(format!("apiVersion: {api}"));
    lines.push(format!("kind: {kind}"));
    lines.push("metadata:".into());
    lines.push(format!("{i}name: {name}"));
    lines.push(format!("{i}namespace: {namespace}"));
    if dice.one_in(3) {
        lines.push(format!("{i}annotations:"));
        lines.push(format!("{i}{i}fluxcd.io/automated: \"true\""));
        lines.push(format!("{i}{i}description: |"));
        lines.push(format!(
            "{i}{i}{i}image: not/an-image:0.0.1 mentioned in prose"
        ));
    }
    // Path to the pod spec, one level of `i` per step.
    let (prefix, depth): (Vec<String>, usize) = match kind {
        "Pod" => (vec!["spec:".into()], 1),
        "CronJob" => (
            vec![
                "spec:".into(),
                format!("{i}schedule: \"*/5 * * * *\""),
                format!("{i}jobTemplate:"),
                format!("{i}{i}spec:"),
                format!("{i}{i}{i}template:"),
                format!("{i}{i}{i}{i}spec:"),
            ],
            5,
        ),
        _ => (
            vec![
                "spec:".into(),
                format!("{i}replicas: {}", 1 + dice.below(3)),
                format!("{i}template:"),
                format!("{i}{i}metadata:"),
                format!("{i}{i}{i}labels: {{app: {name}}}"),
                format!("{i}{i}spec:"),
            ],
            3,
        ),
    };
    lines.extend(prefix);
    let pad = i.repeat(depth);
    let mut containers = Vec::new();
    let mut fields = vec![("containers", 1 + dice.below(2))];
    if dice.one_in(4) {
        fields.push(("initContainers", 1));
    }
    for (field, count) in fields {
        let flow = dice.one_in(8);
        let mut entries = Vec::new();
        for c in 0..count {
            let image = if images.is_empty() {
                let repository = REPOSITORIES[dice.below(REPOSITORIES.len())];
                format!("{repository}:{}", TAGS[dice.below(TAGS.len())])
            } else {
                images[dice.below(images.len())].clone()
            };
            let cname = format!(
                "{}-{c}",
                if field == "initContainers" {
                    "init"
                } else {
                    "main"
                }
            );
            entries.push((cname.clone(), image.clone()));
            containers.push(GeneratedContainer { name: cname, image });
        }
        if flow {
            let items: Vec<String> = entries
                .iter()
                .map(|(c, img)| format!("{{name: {c}, image: {}}}", quoted(style.quote, img)))
                .collect();
            lines.push(format!("{pad}{field}: [{}]", items.join(", ")));
            continue;
        }
        lines.push(format!("{pad}{field}:"));
        let dash = if style.flush_sequences {
            pad.clone()
        } else {
            format!("{pad}{i}")
        };
        for (c, img) in entries {
            let comment = if dice.one_in(4) {
                "  # pinned by CI"
            } else {
                ""
            };
            lines.push(format!("{dash}- name: {c}"));
            lines.push(format!(
                "{dash}  image: {}{comment}",
                quoted(style.quote, &img)
            ));
            lines.push(format!("{dash}  ports:"));
            lines.push(format!(
                "{dash}  - containerPort: {}",
                8000 + dice.below(1000)
            ));
            lines.push(format!("{dash}  env:"));
            lines.push(format!("{dash}  - {{name: LOG_LEVEL, value: info}}"));
        }
    }
    let mut text = String::new();
    for line in lines {
        let _ = write!(text, "{b}{line}{eol}");
    }
    let id = format!("{namespace}:{}/{name}", kind.to_ascii_lowercase());
    (text, GeneratedWorkload { id, containers })
}

/// For sync benchmarks: writes `resources` manifests into `dir`, one file
/// each, spread over `namespaces` namespaces (`bench-0`, `bench-1`, …; one
/// Namespace file each, not counted): alternately a ConfigMap and a Deployment. Returns the number of files written.
pub fn sync_set(
    dir: &std::path::Path,
    resources: usize,
    namespaces: usize,
) -> std::io::Result<usize> {
    let namespaces = namespaces.max(1);
    for n in 0..namespaces {
        let text = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench-{n}\n");
        std::fs::write(dir.join(format!("0000-namespace-{n}.yaml")), text)?;
    }
    for i in 0..resources {
        let namespace = format!("bench-{}", i % namespaces);
        let text = if i % 2 == 0 {
            config_map(i, &namespace)
        } else {
            deployment(i, &namespace)
        };
        std::fs::write(dir.join(format!("{:04}-resource.yaml", i + 1)), text)?;
    }
    Ok(resources + namespaces)
}

fn config_map(i: usize, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  namespace: {namespace}\n  \
         labels:\n    app: app-{i}\ndata:\n  LOG_LEVEL: info\n  REPLICA: \"{i}\"\n  \
         config.yaml: |\n    listen: 0.0.0.0:8080\n    upstream: http://backend-{i}:8080\n"
    )
}

fn deployment(i: usize, namespace: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: {namespace}\n  \
         labels:\n    app: app-{i}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: app-{i}\n  \
         template:\n    metadata:\n      labels:\n        app: app-{i}\n    spec:\n      containers:\n      \
         - name: app\n        image: registry.example.com/team/app-{i}:1.{i}.0\n        ports:\n        \
         - containerPort: 8080\n        env:\n        - name: MODE\n          value: production\n        \
         resources:\n          requests:\n            cpu: 100m\n            memory: 128Mi\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_spread_over_the_files() {
        let files = files(10, 3, 7);
        assert_eq!(files.len(), 3);
        let total: usize = files.iter().map(|f| f.workloads.len()).sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn images_can_be_drawn_from_a_given_list() {
        let images = ["127.0.0.1:5000/bench/app00:1.0.0".to_string()];
        let files = files_with_images(20, 4, 3, &images);
        for workload in files.iter().flat_map(|f| &f.workloads) {
            for container in &workload.containers {
                assert_eq!(container.image, images[0]);
            }
        }
        let text: String = files.iter().map(|f| f.text.as_str()).collect();
        assert!(!text.contains("nginx"), "{text}");
    }

    #[test]
    fn the_same_seed_gives_the_same_files() {
        let a: Vec<String> = files(5, 2, 42).into_iter().map(|f| f.text).collect();
        let b: Vec<String> = files(5, 2, 42).into_iter().map(|f| f.text).collect();
        assert_eq!(a, b);
    }
}
