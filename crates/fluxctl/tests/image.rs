//! fluxd's image, built by `scripts/image` without a container engine:
//! pushed to the real registry, pulled back by digest, every blob checked
//! against its digest, the layers unpacked, and fluxd, git and ssh run
//! from the unpacked root.

mod binaries;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use binaries::{stderr, stdout};
use flux_testkit::registry::Registry;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The budget for the compressed layers.
const BUDGET: u64 = 60 * 1000 * 1000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target folder these tests were built in; the image takes its
/// `release` binaries.
fn target_dir() -> PathBuf {
    let debug = Path::new(env!("CARGO_BIN_EXE_fluxctl"))
        .parent()
        .expect("fluxctl is in a profile folder");
    let target = debug.parent().expect("the profile is in the target folder");
    let release = target.join("release");
    assert!(
        release.join("fluxd").exists() && release.join("fluxctl").exists(),
        "build the release binaries first: cargo build --release -p fluxd -p fluxctl"
    );
    target.to_path_buf()
}

fn script(args: &[&str]) -> Output {
    let output = Command::new(workspace().join("scripts/image"))
        .args(args)
        .env("SKIP_CARGO_BUILD", "1")
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("scripts/image runs");
    assert!(
        output.status.success(),
        "scripts/image {args:?}: {}",
        stderr(&output)
    );
    output
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("gzip finishes");
    writer
        .join()
        .expect("the writer ends")
        .expect("gzip reads the layer");
    assert!(output.status.success(), "a gzip layer");
    output.stdout
}

async fn blob(http: &reqwest::Client, base: &str, digest: &str) -> Vec<u8> {
    let response = http
        .get(format!("{base}/blobs/{digest}"))
        .send()
        .await
        .expect("GET blob");
    assert_eq!(response.status(), 200, "blob {digest}");
    let bytes = response.bytes().await.expect("the blob's body").to_vec();
    assert_eq!(sha256(&bytes), digest, "the blob is what its digest says");
    bytes
}

/// Runs `command` inside `root`: chrooted as the image's user when this
/// process may chroot (root), else through the root's own dynamic loader
/// with its libraries, which runs a binary but not what it executes.
fn run_in(root: &Path, command: &[&str]) -> Output {
    if rustix::process::geteuid().is_root() {
        // Found on this machine's PATH: the command's own PATH is the image's.
        return Command::new(on_path("chroot"))
            .arg("--userspec=65532:65532")
            .arg(root)
            .args(command)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/tmp")
            .output()
            .expect("chroot runs");
    }
    let binary = if command[0].starts_with('/') {
        root.join(&command[0][1..])
    } else {
        root.join("usr/bin").join(command[0])
    };
    Command::new(root.join("lib64/ld-linux-x86-64.so.2"))
        .arg("--library-path")
        .arg(root.join("usr/lib/x86_64-linux-gnu"))
        .arg(binary)
        .args(&command[1..])
        .output()
        .expect("the image's loader runs")
}

/// Where `program` is on this process's PATH.
fn on_path(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

#[tokio::test]
#[ignore = "needs the release binaries, which cargo test does not build \
            (`cargo build --release -p fluxd -p fluxctl`: 18 minutes on a loaded 2-core machine); \
            then run this with --ignored (about 25 s)"]
async fn the_image_runs_fluxd_git_and_ssh_from_its_own_root() {
    let layout = tempfile::tempdir().expect("a folder for the layout");
    let layout_path = layout.path().to_str().expect("UTF-8 temporary path");
    script(&["build", layout_path]);

    let registry = Registry::start();
    let reference = format!("{}/fluxd:test", registry.host());
    let pushed = stdout(&script(&["push", layout_path, &reference]));
    let digest = pushed.trim();
    assert!(
        digest.starts_with("sha256:"),
        "push prints the digest: {pushed}"
    );

    let http = reqwest::Client::new();
    let base = format!("http://{}/v2/fluxd", registry.host());
    let response = http
        .get(format!("{base}/manifests/{digest}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let body = response.bytes().await.expect("the manifest").to_vec();
    assert_eq!(sha256(&body), digest, "pulled by the digest push printed");
    let manifest: Value = serde_json::from_slice(&body).expect("a JSON manifest");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("a config digest");
    let config: Value =
        serde_json::from_slice(&blob(&http, &base, config_digest).await).expect("a JSON config");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["os"], "linux");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), diff_ids.len(), "one diff_id per layer");

    let root = tempfile::tempdir().expect("a folder for the root");
    let mut compressed = 0;
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let digest = layer["digest"].as_str().expect("a layer digest");
        let bytes = blob(&http, &base, digest).await;
        assert_eq!(layer["size"], bytes.len(), "the size the manifest says");
        compressed += bytes.len() as u64;
        let tar = gunzip(&bytes);
        assert_eq!(
            &sha256(&tar),
            diff_id,
            "the diff_id is the uncompressed layer's"
        );
        let file = layout.path().join("layer.tar");
        std::fs::write(&file, &tar).expect("the layer is written");
        let unpacked = Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(root.path())
            .output()
            .expect("tar runs");
        assert!(unpacked.status.success(), "{}", stderr(&unpacked));
    }
    println!("image {digest}: {compressed} bytes of compressed layers");
    assert!(
        compressed < BUDGET,
        "{compressed} bytes is over the {BUDGET} budget"
    );

    // A container runtime gives the pod a /dev; chroot does not.
    let root = root.path();
    std::fs::create_dir_all(root.join("dev")).expect("a /dev");
    let null_made = Command::new("mknod")
        .args(["-m", "666"])
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());

    let version = run_in(root, &["/usr/local/bin/fluxd", "--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("fluxd {}", env!("CARGO_PKG_VERSION"))
    );
    let git = run_in(root, &["git", "--version"]);
    assert!(stdout(&git).starts_with("git version "), "{}", stderr(&git));
    let ssh = run_in(root, &["ssh", "-V"]);
    assert!(stderr(&ssh).starts_with("OpenSSH_"), "{}", stderr(&ssh));
    if !rustix::process::geteuid().is_root() || !null_made {
        println!("not root: ran fluxd, git and ssh through the image's loader only");
        return;
    }
    // git runs GIT_SSH_COMMAND through /bin/sh: git, the shell and ssh
    // together, as a fetch over ssh runs them.
    let chain = run_in(
        root,
        &[
            "git",
            "-c",
            "core.sshCommand=ssh -V",
            "ls-remote",
            "ssh://git@example.invalid/x",
        ],
    );
    assert!(stderr(&chain).contains("OpenSSH_"), "{}", stderr(&chain));
    // The https helper is there and loads (it fails to connect, not to start).
    let https = run_in(root, &["git", "ls-remote", "https://127.0.0.1:1/x"]);
    assert!(
        stderr(&https).contains("unable to access"),
        "{}",
        stderr(&https)
    );
    // The ConfigMap `fluxctl install` mounts at /etc/ssh is where this ssh
    // looks for host keys when run as fluxd runs it (`-F /dev/null`).
    let config = run_in(root, &["ssh", "-F", "/dev/null", "-G", "github.com"]);
    assert!(
        stdout(&config).contains("globalknownhostsfile /etc/ssh/ssh_known_hosts"),
        "{}",
        stdout(&config)
    );
    // fluxd makes its deploy key with ssh-keygen, as the image's user.
    let keygen = run_in(
        root,
        &[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            "/tmp/key",
        ],
    );
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let kubectl = run_in(root, &["kubectl", "version", "--client"]);
    assert!(
        stdout(&kubectl).contains("Client Version"),
        "{}",
        stderr(&kubectl)
    );

    // The same inputs make the same image.
    let again = tempfile::tempdir().expect("a second layout");
    script(&[
        "build",
        again.path().to_str().expect("UTF-8 temporary path"),
    ]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(again.path().join("index.json")).expect("an index"))
            .expect("a JSON index");
    assert_eq!(
        index["manifests"][0]["digest"], digest,
        "a rebuild has the same digest"
    );
}

/// A small OCI image layout, as `scripts/image build` writes one, without
/// building anything; returns its manifest's digest.
fn small_layout(dir: &Path) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("the blobs folder");
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).expect("a blob");
        (digest, bytes.len())
    };
    let (layer, layer_size) = put(b"not a real layer: the registry stores bytes");
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": manifest_size}],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("the index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("the layout marker");
    manifest
}

fn push(layout: &Path, reference: &str, credentials: Option<(&str, &str)>) -> Output {
    let mut command = Command::new(workspace().join("scripts/image"));
    command
        .arg("push")
        .arg(layout)
        .arg(reference)
        .env_remove("REGISTRY_USER")
        .env_remove("REGISTRY_PASSWORD");
    if let Some((user, password)) = credentials {
        command
            .env("REGISTRY_USER", user)
            .env("REGISTRY_PASSWORD", password);
    }
    command.output().expect("scripts/image runs")
}

#[tokio::test]
async fn push_puts_the_layout_in_the_registry_and_prints_its_digest() {
    let layout = tempfile::tempdir().expect("a folder for the layout");
    let digest = small_layout(layout.path());
    let registry = Registry::start();
    let pushed = push(
        layout.path(),
        &format!("{}/fluxd:0.1.0", registry.host()),
        None,
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(stdout(&pushed).trim(), digest);

    let http = reqwest::Client::new();
    let tagged = http
        .get(format!(
            "http://{}/v2/fluxd/manifests/0.1.0",
            registry.host()
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(tagged.status(), 200);
    assert_eq!(tagged.headers()["docker-content-digest"], digest.as_str());
    let manifest: Value = tagged.json().await.expect("a JSON manifest");
    let base = format!("http://{}/v2/fluxd", registry.host());
    blob(&http, &base, manifest["config"]["digest"].as_str().unwrap()).await;
    blob(
        &http,
        &base,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    )
    .await;

    let again = push(
        layout.path(),
        &format!("{}/fluxd:again", registry.host()),
        None,
    );
    assert!(
        again.status.success(),
        "blobs already there are skipped: {}",
        stderr(&again)
    );
}

#[test]
fn push_to_a_registry_that_wants_credentials_takes_them_from_the_environment() {
    let layout = tempfile::tempdir().expect("a folder for the layout");
    let digest = small_layout(layout.path());
    let registry = Registry::start_with_basic_auth("flux", "s3cret");
    let reference = format!("{}/fluxd:0.1.0", registry.host());

    let refused = push(layout.path(), &reference, None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("REGISTRY_USER and REGISTRY_PASSWORD"),
        "{}",
        stderr(&refused)
    );
    let wrong = push(layout.path(), &reference, Some(("flux", "wrong")));
    assert!(!wrong.status.success());

    let pushed = push(layout.path(), &reference, Some(("flux", "s3cret")));
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(stdout(&pushed).trim(), digest);
}

#[test]
fn push_refuses_a_folder_that_is_not_a_layout_and_a_reference_without_a_registry() {
    let empty = tempfile::tempdir().expect("a folder");
    let output = push(empty.path(), "127.0.0.1:5000/fluxd:0.1.0", None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not an OCI layout"),
        "{}",
        stderr(&output)
    );

    let layout = tempfile::tempdir().expect("a folder for the layout");
    small_layout(layout.path());
    let output = push(layout.path(), "fluxd", None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("name the registry"),
        "{}",
        stderr(&output)
    );
}
