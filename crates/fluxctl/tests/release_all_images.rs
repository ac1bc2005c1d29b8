//! `fluxctl release --manifests DIR --update-all-images`, run as a user
//! runs it: the built binary on temporary manifests, against the real
//! registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use flux_testkit::registry::{Flavour, ImageSpec, Registry};

/// A registry with `team/web` (dated tags 1.0.0 to 2.0.0, an undated
/// `nightly`, and a newer `3.0.0` built for arm64 and s390x only) and
/// `team/timeless` (no creation times at all), and a folder of manifests
/// using them.
struct Fixture {
    registry: Registry,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let registry = Registry::start();
    for (tag, created) in [
        ("1.0.0", "2020-01-01T00:00:00Z"),
        ("1.1.0", "2020-02-01T00:00:00Z"),
        ("1.2.0", "2020-03-01T00:00:00Z"),
        ("2.0.0", "2020-04-01T00:00:00Z"),
    ] {
        registry
            .push_image("team/web", tag, &ImageSpec::created(created))
            .await;
    }
    registry
        .push_image("team/web", "nightly", &undated(ImageSpec::created("x")))
        .await;
    let foreign = [
        ImageSpec::created("2021-01-01T00:00:00Z").platform("linux", "arm64"),
        ImageSpec::created("2021-01-01T00:00:00Z").platform("linux", "s390x"),
    ];
    registry
        .push_index("team/web", "3.0.0", Flavour::Oci, &foreign)
        .await;
    for tag in ["main-1", "main-2", "main-3"] {
        let spec = undated(ImageSpec::created("x").label("build", tag));
        registry.push_image("team/timeless", tag, &spec).await;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in manifests(&registry.host()) {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    Fixture { registry, dir }
}

fn undated(spec: ImageSpec) -> ImageSpec {
    ImageSpec {
        created: None,
        ..spec
    }
}

fn manifests(host: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "web.yaml",
            format!(
                "# The shop's front door.\r\napiVersion: apps/v1\r\nkind: Deployment\r\nmetadata:\r\n  name: web\r\n  namespace: team\r\nspec:\r\n  template:\r\n    spec:\r\n      containers:\r\n        - name: web\r\n          image: \"{host}/team/web:1.0.0\" # bumped by CI\r\n        - name: sidecar\r\n          image: {host}/team/timeless:main-2\r\n"
            ),
        ),
        (
            "api.yaml",
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: team\n  annotations:\n    fluxcd.io/tag.api: semver:~1\nspec:\n  template:\n    spec:\n      containers: [{{name: api, image: '{host}/team/web:1.0.0'}}]\n"
            ),
        ),
        (
            "admin.yaml",
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: admin\n  namespace: team\n  annotations:\n    fluxcd.io/locked: 'true'\nspec:\n  template:\n    spec:\n      containers:\n      - name: admin\n        image: {host}/team/web:1.0.0\n"
            ),
        ),
        (
            "current.yaml",
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: current\n  namespace: team\nspec:\n  template:\n    spec:\n      containers:\n      - name: current\n        image: {host}/team/web:2.0.0\n"
            ),
        ),
        (
            "db.yaml",
            format!(
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: other\nspec:\n  template:\n    spec:\n      containers:\n      - name: db\n        image: {host}/team/missing:1\n"
            ),
        ),
    ]
}

impl Fixture {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn host(&self) -> String {
        self.registry.host()
    }

    /// Every manifest's bytes, by file name.
    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p: PathBuf| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect()
    }

    fn original(&self, name: &str) -> String {
        manifests(&self.host())
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| text)
            .unwrap()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap()
    }

    /// Runs `fluxctl release --manifests DIR --update-all-images ARGS`.
    fn release(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
            .arg("release")
            .arg("--manifests")
            .arg(self.path())
            .args(["--update-all-images", "--no-registry-cache"])
            .args(args)
            .env("HOME", "/nonexistent")
            .env_remove("DOCKER_CONFIG")
            .output()
            .expect("run fluxctl");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }
}

/// The table as the original aligns it: columns padded to the widest cell
/// plus two spaces.
fn table(rows: &[[&str; 3]]) -> String {
    let width = |n: usize| rows.iter().map(|r| r[n].len()).max().unwrap() + 2;
    let (first, second) = (width(0), width(1));
    rows.iter()
        .map(|[a, b, c]| format!("{a:<first$}{b:<second$}{c}").trim_end().to_string() + "\n")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_container_gets_the_newest_tag_its_policy_admits_and_only_image_bytes_change() {
    let fixture = fixture().await;
    let (code, stdout, stderr) =
        fixture.release(&["--all", "--exclude", "other:statefulset/db", "-v"]);
    assert_eq!(code, 0, "{stderr}");
    let host = fixture.host();
    let api = format!("api: {host}/team/web:1.0.0 -> 1.2.0");
    let web = format!("web: {host}/team/web:1.0.0 -> 2.0.0");
    assert_eq!(
        stdout,
        table(&[
            ["WORKLOAD", "STATUS", "UPDATES"],
            ["team:deployment/admin", "skipped", "locked"],
            ["team:deployment/api", "success", &api],
            ["team:deployment/current", "skipped", "image(s) up to date"],
            ["team:deployment/web", "success", &web],
        ])
    );
    let changed = |name: &str, from: &str, to: &str| {
        fixture
            .original(name)
            .replacen(&format!("team/web:{from}"), &format!("team/web:{to}"), 1)
    };
    assert_eq!(
        fixture.read("web.yaml"),
        changed("web.yaml", "1.0.0", "2.0.0")
    );
    assert_eq!(
        fixture.read("api.yaml"),
        changed("api.yaml", "1.0.0", "1.2.0")
    );
    for untouched in ["admin.yaml", "current.yaml", "db.yaml"] {
        assert_eq!(fixture.read(untouched), fixture.original(untouched));
    }
    assert!(stderr.contains("wrote"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_semver_policy_restricts_the_choice_to_its_range() {
    let fixture = fixture().await;
    let (code, stdout, stderr) = fixture.release(&["--workload", "team:deployment/api"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("team/web:1.0.0 -> 1.2.0"), "{stdout}");
    assert!(fixture.read("api.yaml").contains("team/web:1.2.0'"));

    let (code, stdout, _) = fixture.release(&["--workload", "team:deployment/api", "-v"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("team:deployment/api  skipped  image(s) up to date"),
        "1.2.0 is the newest in ~1, 2.0.0 is never taken: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glob_policy_never_picks_a_tag_without_a_creation_time() {
    let fixture = fixture().await;
    // Every tag of team/timeless lacks a creation time: none can be told
    // newer than main-2, so nothing moves (main-1 and main-3 included).
    let (code, stdout, stderr) = fixture.release(&[
        "--workload",
        "team:deployment/web",
        "--container",
        "sidecar",
        "-v",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        table(&[
            ["WORKLOAD", "STATUS", "UPDATES"],
            ["team:deployment/web", "skipped", "image(s) up to date"],
        ])
    );
    assert_eq!(fixture.read("web.yaml"), fixture.original("web.yaml"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_whose_index_lacks_the_wanted_platform_is_never_chosen() {
    let fixture = fixture().await;
    let web = ["--workload", "team:deployment/web", "--container", "web"];
    let (code, stdout, stderr) = fixture.release(&web);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("-> 2.0.0"),
        "3.0.0 is newer but has no linux/amd64 image: {stdout}"
    );

    // A semver range admitting 3.0.0 needs no creation time to rank it
    // first; only its missing platform keeps it out.
    let semver = fixture.original("web.yaml").replace(
        "  namespace: team\r\n",
        "  namespace: team\r\n  annotations:\r\n    fluxcd.io/tag.web: semver:>=1\r\n",
    );
    std::fs::write(fixture.path().join("web.yaml"), &semver).unwrap();
    let (code, stdout, stderr) = fixture.release(&web);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("-> 2.0.0"), "{stdout}");

    std::fs::write(fixture.path().join("web.yaml"), &semver).unwrap();
    let on_arm = [&web[..], &["--registry-platform", "linux/arm64"]].concat();
    let (code, stdout, stderr) = fixture.release(&on_arm);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("-> 3.0.0"),
        "on arm64 only 3.0.0 runs: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_workload_is_skipped_unless_forced() {
    let fixture = fixture().await;
    let (code, stdout, _) = fixture.release(&["--workload", "team:deployment/admin", "-v"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("team:deployment/admin  skipped  locked"),
        "{stdout}"
    );
    assert_eq!(fixture.read("admin.yaml"), fixture.original("admin.yaml"));

    let (code, stdout, stderr) =
        fixture.release(&["--workload", "team:deployment/admin", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("team:deployment/admin  success"),
        "{stdout}"
    );
    assert_eq!(
        fixture.read("admin.yaml"),
        fixture
            .original("admin.yaml")
            .replace("team/web:1.0.0", "team/web:2.0.0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_the_release_and_writes_nothing() {
    let fixture = fixture().await;
    let before = fixture.files();
    let (code, stdout, stderr) =
        fixture.release(&["--all", "--exclude", "other:statefulset/db", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("team:deployment/web  success"), "{stdout}");
    assert!(stdout.contains("team:deployment/api  success"), "{stdout}");
    assert!(stderr.contains("dry run, nothing written"), "{stderr}");
    assert_eq!(fixture.files(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_repository_fails_its_workload_and_the_others_are_still_released() {
    let fixture = fixture().await;
    let (code, stdout, stderr) = fixture.release(&["--all", "-o", "json"]);
    assert_eq!(code, 1, "{stderr}");
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let by_id = |id: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {stdout}"))
            .clone()
    };
    let db = by_id("other:statefulset/db");
    assert_eq!(db["status"], "failed");
    let reason = db["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "db: {}: 404 for tags of team/missing",
            fixture.host()
        )),
        "{reason}"
    );
    assert_eq!(by_id("team:deployment/web")["status"], "success");
    assert_eq!(by_id("team:deployment/api")["status"], "success");
    assert_eq!(fixture.read("db.yaml"), fixture.original("db.yaml"));
    assert!(fixture.read("web.yaml").contains("team/web:2.0.0\""));
}

#[test]
fn update_image_and_update_all_images_exclude_each_other_and_one_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    let text = "kind: Deployment\nmetadata: {name: app}\nspec:\n  template:\n    spec:\n      containers: [{name: app, image: 'example/app:1'}]\n";
    std::fs::write(&file, text).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fluxctl"))
            .args(["release", "--all", "--manifests"])
            .arg(dir.path())
            .args(extra)
            .output()
            .expect("run fluxctl")
    };
    let both = run(&["--update-all-images", "--update-image", "example/app:2"]);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot be used with"),
        "{both:?}"
    );
    let neither = run(&[]);
    assert_eq!(neither.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&neither.stderr).contains("--update-image"),
        "{neither:?}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_policy_never_moves_a_container_to_latest() {
    let fixture = fixture().await;
    fixture
        .registry
        .push_image(
            "team/web",
            "latest",
            &ImageSpec::created("2022-01-01T00:00:00Z"),
        )
        .await;
    let (code, stdout, stderr) =
        fixture.release(&["--workload", "team:deployment/web", "--container", "web"]);
    assert_eq!(code, 0, "{stderr}");
    let host = fixture.host();
    assert!(
        stdout.contains(&format!("web: {host}/team/web:1.0.0 -> 2.0.0")),
        "latest is the newest tag, yet only glob:latest admits it: {stdout}"
    );
    assert!(fixture.read("web.yaml").contains("team/web:2.0.0\""));
}
