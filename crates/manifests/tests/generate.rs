//! Manifest generation through `.flux.yaml`: real `sh`, real commands
//! (`cat`, `sed`, `kubectl kustomize`), on fixture repositories copied to a
//! temporary folder.

use std::path::Path;
use std::time::Duration;

use flux_image::ImageRef;
use flux_manifests::generate::{self, ConfigKind, FluxConfig, GenerateError, Generation, Role};
use flux_manifests::{Checkout, LoadOptions, PolicyUpdate, ResourceId};

/// A fixture repository under `tests/fixtures/flux-yaml`, copied.
fn repo(name: &str) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flux-yaml")
        .join(name);
    let to = tempfile::tempdir().unwrap();
    copy(&from, to.path());
    to
}

fn copy(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A repository holding just these files.
fn repo_of(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn config(root: &Path, path: &str) -> FluxConfig {
    generate::find(root, Path::new(path))
        .unwrap()
        .expect("a .flux.yaml applies")
}

fn generated(root: &Path, path: &str) -> Result<String, GenerateError> {
    let config = config(root, path);
    generate::generate(&config, &root.join(path), &Generation::default())
}

fn load(text: &str) -> Checkout {
    let checkout = Checkout::from_text(Path::new("generated"), text, LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    checkout
}

fn image_of(text: &str, id: &str, container: &str) -> String {
    let checkout = load(text);
    let workload = checkout
        .workload(&id.parse().unwrap())
        .expect("the workload");
    workload
        .container(container)
        .expect("the container")
        .image
        .familiar()
}

fn annotation(text: &str, id: &str, key: &str) -> Option<String> {
    let checkout = load(text);
    let workload = checkout
        .workload(&id.parse().unwrap())
        .expect("the workload");
    workload
        .annotations
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn id(text: &str) -> ResourceId {
    text.parse().unwrap()
}

fn image(text: &str) -> ImageRef {
    ImageRef::parse(text).unwrap()
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// The lines of `after` that are not in `before`, and of `before` not in `after`.
fn changed_lines(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let removed = before.lines().filter(|l| !after.lines().any(|a| a == *l));
    let added = after.lines().filter(|l| !before.lines().any(|b| b == *l));
    (
        removed.map(str::to_string).collect(),
        added.map(str::to_string).collect(),
    )
}

/// A `.flux.yaml` with these generators (each a block scalar, so that
/// any shell text goes as is).
fn generators(commands: &[&str]) -> String {
    let mut text = "version: 1\ncommandUpdated:\n  generators:\n".to_string();
    for command in commands {
        text.push_str(&format!("  - command: |-\n      {command}\n"));
    }
    text
}

fn settings(change: impl FnOnce(&mut Generation)) -> Generation {
    let mut settings = Generation::default();
    change(&mut settings);
    settings
}

// -- lookup

#[test]
fn the_flux_yaml_above_a_git_path_applies_and_its_commands_run_in_the_git_path() {
    let repo = repo("command-updated");
    let config = config(repo.path(), "staging");
    assert_eq!(
        config.file,
        repo.path().canonicalize().unwrap().join(".flux.yaml")
    );
    assert!(matches!(config.kind, ConfigKind::CommandUpdated { .. }));

    // `cat *.yaml` in staging reads staging's file only.
    let staging = generated(repo.path(), "staging").unwrap();
    assert_eq!(
        image_of(&staging, "staging:deployment/web", "web"),
        "nginx:1.25"
    );
    assert!(
        load(&staging)
            .workload(&id("production:deployment/web"))
            .is_none()
    );
    let production = generated(repo.path(), "production").unwrap();
    assert_eq!(
        image_of(&production, "production:deployment/web", "web"),
        "nginx:1.24"
    );
}

#[test]
fn generators_outputs_are_joined_each_after_a_separator_line() {
    let flux_yaml = generators(&[
        r"printf 'kind: A\nmetadata:\n  name: a'",
        r"printf 'kind: B\nmetadata:\n  name: b\n'",
    ]);
    let repo = repo_of(&[(".flux.yaml", &flux_yaml)]);
    assert_eq!(
        generated(repo.path(), ".").unwrap(),
        "---\nkind: A\nmetadata:\n  name: a\n---\nkind: B\nmetadata:\n  name: b\n"
    );
}

#[test]
fn no_flux_yaml_at_or_above_the_path_means_plain_files() {
    let repo = repo_of(&[
        ("staging/web.yaml", "kind: A\n"),
        ("staging/sub/.flux.yaml", "version: 1\nscanForFiles: {}\n"),
    ]);
    // One below the path does not apply to it.
    assert_eq!(
        generate::find(repo.path(), Path::new("staging")).unwrap(),
        None
    );
    // A file other than .flux.yaml as the path: plain files, as in v1.
    assert_eq!(
        generate::find(repo.path(), Path::new("staging/web.yaml")).unwrap(),
        None
    );
    // The .flux.yaml itself as the path.
    let config = config(repo.path(), "staging/sub/.flux.yaml");
    assert_eq!(config.kind, ConfigKind::ScanForFiles);
}

#[test]
fn the_lookup_stops_at_the_checkout_root() {
    let outer = repo_of(&[
        (
            ".flux.yaml",
            "version: 1\ncommandUpdated:\n  generators:\n  - command: cat *.yaml\n",
        ),
        ("checkout/staging/web.yaml", "kind: A\n"),
    ]);
    let root = outer.path().join("checkout");
    assert_eq!(generate::find(&root, Path::new("staging")).unwrap(), None);
    assert!(
        generate::find(outer.path(), Path::new("checkout/staging"))
            .unwrap()
            .is_some()
    );
}

#[test]
fn paths_and_flux_yaml_links_leaving_the_checkout_are_refused() {
    let outside = repo_of(&[(".flux.yaml", "version: 1\nscanForFiles: {}\n")]);
    let repo = repo_of(&[("staging/web.yaml", "kind: A\n")]);
    std::fs::create_dir(repo.path().join("other")).unwrap();
    let error = generate::find(&repo.path().join("staging"), Path::new("../other")).unwrap_err();
    assert!(matches!(error, GenerateError::Outside { .. }), "{error}");

    std::os::unix::fs::symlink(
        outside.path().join(".flux.yaml"),
        repo.path().join("staging/.flux.yaml"),
    )
    .unwrap();
    let error = generate::find(repo.path(), Path::new("staging")).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, GenerateError::Outside { .. }), "{message}");
    assert!(message.contains("staging/.flux.yaml"), "{message}");
    assert!(!message.contains("scanForFiles"), "{message}");
}

#[test]
fn scan_for_files_resets_a_flux_yaml_above() {
    let repo = repo("scan-for-files");
    assert_eq!(config(repo.path(), "yamls").kind, ConfigKind::ScanForFiles);
    assert!(matches!(
        config(repo.path(), "staging").kind,
        ConfigKind::CommandUpdated { .. }
    ));
    let error = generated(repo.path(), "yamls").unwrap_err();
    assert!(
        matches!(error, GenerateError::ScanForFiles { .. }),
        "{error}"
    );
    let staging = generated(repo.path(), "staging").unwrap();
    assert!(
        load(&staging)
            .resources
            .iter()
            .any(|r| r.id == id("staging:serviceaccount/deployer"))
    );
}

// -- the file's format

fn config_error(text: &str) -> String {
    let repo = repo_of(&[(".flux.yaml", text)]);
    let error = generate::find(repo.path(), Path::new(".")).unwrap_err();
    assert!(matches!(error, GenerateError::Config { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(".flux.yaml:"), "{message}");
    message.rsplit(".flux.yaml:").next().unwrap().to_string()
}

#[test]
fn mistakes_in_a_flux_yaml_name_their_line() {
    assert_eq!(
        config_error("version: 2\nscanForFiles: {}\n"),
        "1: unsupported version 2; the only version is 1"
    );
    // Flux v1's own example of a mistake: a patchFile in commandUpdated.
    assert_eq!(
        config_error(
            "version: 1\ncommandUpdated:\n  generators:\n  - command: cat x\n  patchFile: p.yaml\n"
        ),
        "5: unknown key \"patchFile\" in commandUpdated; it takes generators and updaters"
    );
    assert!(
        config_error("version: 1\ncommandUpdated:\n  generators:\n  - command: a\npatchUpdated:\n  generators:\n  - command: a\n  patchFile: p\n")
            .starts_with("5: both commandUpdated and patchUpdated")
    );
    assert!(
        config_error("version: 1\nscanForFile: {}\n").starts_with("2: unknown key \"scanForFile\"")
    );
    assert!(config_error("scanForFiles: {}\n").contains("no version"));
    assert_eq!(
        config_error("version: 1\npatchUpdated:\n  generators:\n  - command: a\n"),
        "2: patchUpdated without patchFile"
    );
    assert_eq!(
        config_error("version: 1\ncommandUpdated:\n  generators: []\n"),
        "3: generators is empty; give at least one"
    );
    assert_eq!(
        config_error(
            "version: 1\ncommandUpdated:\n  generators:\n  - command: a\n  updaters:\n  - containerImage:\n      command: a\n      timeout: soon\n"
        ),
        "8: timeout \"soon\" is not a duration such as 30s, 2m or 1m30s"
    );
    assert_eq!(
        config_error(
            "version: 1\npatchUpdated:\n  generators:\n  - command: a\n  patchFile: /etc/p.yaml\n"
        ),
        "5: patchFile \"/etc/p.yaml\" is not a path relative to the --git-path folder"
    );
    assert_eq!(
        config_error("version: 1\nscanForFiles: {generators: []}\n"),
        "2: scanForFiles takes no settings; write `scanForFiles: {}`"
    );
}

#[test]
fn commands_read_with_their_timeouts() {
    let repo = repo_of(&[(
        ".flux.yaml",
        "version: 1\ncommandUpdated:\n  generators:\n  - command: kustomize build .\n    timeout: 2m\n  updaters:\n  - containerImage:\n      command: set-image\n    policy:\n      command: set-policy\n      timeout: 100ms\n",
    )]);
    let ConfigKind::CommandUpdated {
        generators,
        updaters,
    } = config(repo.path(), ".").kind
    else {
        panic!("commandUpdated");
    };
    assert_eq!(generators[0].command, "kustomize build .");
    assert_eq!(generators[0].timeout, Some(Duration::from_secs(120)));
    assert_eq!(generators[0].line, 4);
    let updater = &updaters[0];
    assert_eq!(
        updater.container_image.as_ref().unwrap().command,
        "set-image"
    );
    // Under a second is ignored, as Flux v1 did.
    assert_eq!(updater.policy.as_ref().unwrap().timeout, None);
}

// -- running commands

#[test]
fn a_failing_generator_reports_its_stderr() {
    let flux_yaml = generators(&["echo 'kind: A'; echo 'kustomize: no base here' >&2; exit 3"]);
    let repo = repo_of(&[(".flux.yaml", &flux_yaml)]);
    let error = generated(repo.path(), ".").unwrap_err();
    let message = error.to_string();
    let GenerateError::Failed {
        role,
        line,
        status,
        stderr,
        ..
    } = error
    else {
        panic!("{message}");
    };
    assert_eq!((role, line), (Role::Generator, 4));
    assert!(status.contains('3'), "{status}");
    assert_eq!(stderr, "kustomize: no base here");
    assert!(
        message.contains(".flux.yaml:4: generator `echo"),
        "{message}"
    );
    assert!(
        message.ends_with("stderr:\nkustomize: no base here"),
        "{message}"
    );
}

#[test]
fn a_generator_past_its_timeout_is_killed_with_what_it_started() {
    // The shell starts a second shell that starts sleep: all are killed,
    // or the pipes they hold would keep the generation waiting.
    let flux_yaml = generators(&["echo starting >&2; sh -c 'sleep 600'"]);
    let repo = repo_of(&[(".flux.yaml", &flux_yaml)]);
    let config = config(repo.path(), ".");
    let settings = settings(|s| s.timeout = Duration::from_secs(1));
    let error = generate::generate(&config, repo.path(), &settings).unwrap_err();
    let message = error.to_string();
    let GenerateError::Timeout {
        stderr, timeout, ..
    } = error
    else {
        panic!("{message}");
    };
    assert_eq!(timeout, Duration::from_secs(1));
    assert_eq!(stderr, "starting");
    assert!(
        message.contains("did not finish in 1s and was killed"),
        "{message}"
    );
}

#[test]
fn a_generator_printing_past_the_bound_is_killed() {
    let flux_yaml = generators(&["yes 'a: b'"]);
    let repo = repo_of(&[(".flux.yaml", &flux_yaml)]);
    let config = config(repo.path(), ".");
    let settings = settings(|s| s.max_output_bytes = 4096);
    let error = generate::generate(&config, repo.path(), &settings).unwrap_err();
    assert!(
        matches!(error, GenerateError::TooMuchOutput { limit: 4096, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("printed more than 4096 bytes"),
        "{error}"
    );

    // Exactly the bound is fine.
    let flux_yaml = generators(&[r"head -c 4096 /dev/zero | tr '\0' ' '"]);
    let repo = repo_of(&[(".flux.yaml", &flux_yaml)]);
    let config = generate::find(repo.path(), Path::new("."))
        .unwrap()
        .unwrap();
    assert!(generate::generate(&config, repo.path(), &settings).is_ok());
}

#[test]
fn output_that_is_not_yaml_is_an_error_with_its_position() {
    let flux_yaml = generators(&[r"printf 'kind: A\n  bad: [\n'"]);
    let repo = repo_of(&[(".flux.yaml", &flux_yaml)]);
    let error = generated(repo.path(), ".").unwrap_err();
    assert!(matches!(error, GenerateError::Output { .. }), "{error}");
}

/// Variables fluxd may have that no command may see.
const SECRETS: [(&str, &str); 5] = [
    ("FLUX_API_TOKEN_TEST", "s3cret-token"),
    ("FLUXD_GIT_DEPLOY_KEY", "/etc/fluxd/ssh/identity"),
    ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("GIT_SSH_COMMAND", "ssh -i /etc/fluxd/ssh/identity"),
];

/// The environment a command printed with `env`.
fn names(env: &str) -> Vec<String> {
    let mut names: Vec<String> = env
        .lines()
        .filter_map(|l| l.trim().split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    names.sort();
    names
}

/// Prints the environment of its generator and of its updaters.
const ENV_FLUX_YAML: &str = r#"version: 1
commandUpdated:
  generators:
  - command: |-
      printf 'kind: ConfigMap\nmetadata:\n  name: env\ndata:\n  env: |\n'
      env | sed 's/^/    /'
      cat web.yaml
  updaters:
  - containerImage:
      command: env > image.env && sed -i "s|$FLUX_IMG:.*|$FLUX_IMG:$FLUX_TAG|" web.yaml
    policy:
      command: >-
        env > policy.env &&
        sed -i "s|^  annotations: {}|  annotations: {fluxcd.io/$FLUX_POLICY: '$FLUX_POLICY_VALUE'}|" web.yaml
"#;

#[test]
fn commands_see_only_the_documented_variables() {
    // The variables must be in this process's environment; setting them
    // here would need `unsafe`, so the test runs itself again with them.
    if std::env::var_os("GENERATE_ENV_TEST_CHILD").is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "commands_see_only_the_documented_variables",
                "--test-threads=1",
            ])
            .env("GENERATE_ENV_TEST_CHILD", "1")
            .envs(SECRETS)
            .status()
            .unwrap();
        assert!(status.success());
        return;
    }
    for (name, _) in SECRETS {
        assert!(
            std::env::var_os(name).is_some(),
            "{name} is set for the commands to not see"
        );
    }
    let repo = repo_of(&[
        (".flux.yaml", ENV_FLUX_YAML),
        (
            "web.yaml",
            "---\nkind: Deployment\nmetadata:\n  name: web\n  annotations: {}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: quay.io/org/web:1.0\n",
        ),
    ]);
    let root = repo.path();
    let config = config(root, ".");
    let settings = Generation::default();
    let generated = generate::generate(&config, root, &settings).unwrap();
    let checkout = load(&generated);
    let printed = &checkout.resources[0];
    let text = printed.location.text_in(&generated).unwrap();
    assert_eq!(
        names(&text)
            .iter()
            .filter(|n| !n.contains(':'))
            .collect::<Vec<_>>(),
        ["HOME", "PATH", "PWD"]
    );
    // HOME is an empty folder of its own, removed after.
    let home = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("HOME="))
        .unwrap();
    assert_ne!(Path::new(home), Path::new(&std::env::var("HOME").unwrap()));
    assert!(!Path::new(home).exists(), "{home}");

    let web = id("default:deployment/web");
    generate::set_image(
        &config,
        root,
        &web,
        "web",
        &image("quay.io/org/web:1.1"),
        &settings,
    )
    .unwrap();
    assert_eq!(
        names(&read(root, "image.env")),
        [
            "FLUX_CONTAINER",
            "FLUX_IMG",
            "FLUX_TAG",
            "FLUX_WL_KIND",
            "FLUX_WL_NAME",
            "FLUX_WL_NS",
            "FLUX_WORKLOAD",
            "HOME",
            "PATH",
            "PWD"
        ]
    );
    let image_env = read(root, "image.env");
    for expected in [
        "FLUX_WORKLOAD=default:deployment/web",
        "FLUX_WL_NS=default",
        "FLUX_WL_KIND=deployment",
        "FLUX_WL_NAME=web",
        "FLUX_CONTAINER=web",
        "FLUX_IMG=quay.io/org/web",
        "FLUX_TAG=1.1",
    ] {
        assert!(
            image_env.lines().any(|l| l == expected),
            "{expected} in {image_env}"
        );
    }
    assert_eq!(
        image_env.lines().find_map(|l| l.strip_prefix("PWD=")),
        Some(root.canonicalize().unwrap().to_str().unwrap())
    );

    generate::update_policies(&config, root, &web, &PolicyUpdate::automate(), &settings).unwrap();
    let policy_env = read(root, "policy.env");
    assert_eq!(
        names(&policy_env),
        [
            "FLUX_POLICY",
            "FLUX_POLICY_VALUE",
            "FLUX_WL_KIND",
            "FLUX_WL_NAME",
            "FLUX_WL_NS",
            "FLUX_WORKLOAD",
            "HOME",
            "PATH",
            "PWD"
        ]
    );
    assert!(policy_env.lines().any(|l| l == "FLUX_POLICY=automated"));
    assert!(policy_env.lines().any(|l| l == "FLUX_POLICY_VALUE=true"));
    for (name, value) in SECRETS {
        for file in [&*text, &*image_env, &*policy_env] {
            assert!(
                !file.contains(name) && !file.contains(value),
                "{name} leaked: {file}"
            );
        }
    }
}

// -- commandUpdated updates

#[test]
fn a_command_updated_release_runs_the_image_updater_and_changes_one_line() {
    let repo = repo("command-updated");
    let root = repo.path();
    let config = config(root, "staging");
    let staging = root.join("staging");
    let before = read(root, "staging/web.yaml");
    let web = id("staging:deployment/web");
    let changed = generate::set_image(
        &config,
        &staging,
        &web,
        "web",
        &image("nginx:1.26"),
        &Generation::default(),
    )
    .unwrap();
    assert!(changed);
    let after = read(root, "staging/web.yaml");
    assert_eq!(
        changed_lines(&before, &after),
        (
            vec!["        image: nginx:1.25".into()],
            vec!["        image: nginx:1.26".into()]
        )
    );
    assert_eq!(
        image_of(
            &generated(root, "staging").unwrap(),
            "staging:deployment/web",
            "web"
        ),
        "nginx:1.26"
    );
    // The other environment is another path: untouched.
    assert!(read(root, "production/web.yaml").contains("nginx:1.24"));

    // Already there: nothing runs, nothing changes.
    let again = generate::set_image(
        &config,
        &staging,
        &web,
        "web",
        &image("nginx:1.26"),
        &Generation::default(),
    )
    .unwrap();
    assert!(!again);
}

#[test]
fn a_command_updated_policy_update_runs_the_updater_once_per_changed_policy() {
    let repo = repo("command-updated");
    let root = repo.path();
    let config = config(root, "staging");
    let staging = root.join("staging");
    let web = id("staging:deployment/web");
    let settings = Generation::default();
    let lock = PolicyUpdate::lock(Some("hotfix"), None);
    assert!(generate::update_policies(&config, &staging, &web, &lock, &settings).unwrap());
    let text = generated(root, "staging").unwrap();
    assert_eq!(
        annotation(&text, "staging:deployment/web", "fluxcd.io/locked").as_deref(),
        Some("true")
    );
    assert_eq!(
        annotation(&text, "staging:deployment/web", "fluxcd.io/locked_msg").as_deref(),
        Some("hotfix")
    );

    // Unlocking removes the two that are there; locked_user is not, and
    // its updater does not run.
    assert!(
        generate::update_policies(&config, &staging, &web, &PolicyUpdate::unlock(), &settings)
            .unwrap()
    );
    assert_eq!(
        read(root, "staging/policy.log"),
        "staging:deployment/web locked=true\n\
         staging:deployment/web locked_msg=hotfix\n\
         staging:deployment/web locked=(unset)\n\
         staging:deployment/web locked_msg=(unset)\n"
    );
    assert_eq!(
        read(root, "staging/web.yaml"),
        read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flux-yaml/command-updated"),
            "staging/web.yaml"
        )
    );
    assert!(
        !generate::update_policies(&config, &staging, &web, &PolicyUpdate::unlock(), &settings)
            .unwrap()
    );
}

#[test]
fn an_updater_that_changes_nothing_is_an_error_not_a_release() {
    let repo = repo_of(&[
        (
            ".flux.yaml",
            "version: 1\ncommandUpdated:\n  generators:\n  - command: cat web.yaml\n  updaters:\n  - containerImage:\n      command: 'true'\n",
        ),
        (
            "web.yaml",
            "kind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
        ),
    ]);
    let config = config(repo.path(), ".");
    let web = id("default:deployment/web");
    let error = generate::set_image(
        &config,
        repo.path(),
        &web,
        "web",
        &image("nginx:1.26"),
        &Generation::default(),
    )
    .unwrap_err();
    assert!(matches!(error, GenerateError::Verify { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("still runs nginx:1.25, not nginx:1.26"),
        "{error}"
    );

    // No policy updater at all: refused before anything runs.
    let error = generate::update_policies(
        &config,
        repo.path(),
        &web,
        &PolicyUpdate::automate(),
        &Generation::default(),
    )
    .unwrap_err();
    assert!(matches!(error, GenerateError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("no policy updater"), "{error}");

    // A workload the generators do not make.
    let error = generate::set_image(
        &config,
        repo.path(),
        &id("default:deployment/db"),
        "db",
        &image("postgres:17"),
        &Generation::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the generators make no workload default:deployment/db"),
        "{error}"
    );
}

// -- patchUpdated

#[test]
fn a_patch_updated_path_is_the_build_with_the_patch_file_applied() {
    let repo = repo("patch-updated");
    let text = generated(repo.path(), "staging").unwrap();
    // kustomize built nginx:1.24; the patch says 1.25, and automated.
    assert_eq!(
        image_of(&text, "staging:deployment/web", "web"),
        "nginx:1.25"
    );
    assert_eq!(
        image_of(&text, "staging:deployment/web", "sidecar"),
        "busybox:1.36"
    );
    assert_eq!(
        annotation(&text, "staging:deployment/web", "fluxcd.io/automated").as_deref(),
        Some("true")
    );
    assert_eq!(
        image_of(&text, "staging:statefulset/cache", "redis"),
        "redis:7.0"
    );
}

#[test]
fn a_patch_updated_release_edits_the_patch_line_in_place() {
    let repo = repo("patch-updated");
    let root = repo.path();
    let config = config(root, "staging");
    let before = read(root, "staging/flux-patch.yaml");
    let web = id("staging:deployment/web");
    let changed = generate::set_image(
        &config,
        &root.join("staging"),
        &web,
        "web",
        &image("nginx:1.26"),
        &Generation::default(),
    )
    .unwrap();
    assert!(changed);
    assert_eq!(
        read(root, "staging/flux-patch.yaml"),
        before.replace("nginx:1.25 #", "nginx:1.26 #")
    );
    assert_eq!(
        image_of(
            &generated(root, "staging").unwrap(),
            "staging:deployment/web",
            "web"
        ),
        "nginx:1.26"
    );
    // The build's own files are not touched.
    assert!(read(root, "base/web.yaml").contains("nginx:1.24"));
}

#[test]
fn a_patch_updated_update_of_a_workload_without_a_patch_appends_one() {
    let repo = repo("patch-updated");
    let root = repo.path();
    let config = config(root, "staging");
    let staging = root.join("staging");
    let settings = Generation::default();
    let before = read(root, "staging/flux-patch.yaml");
    let cache = id("staging:statefulset/cache");
    generate::set_image(
        &config,
        &staging,
        &cache,
        "redis",
        &image("redis:7.2"),
        &settings,
    )
    .unwrap();
    let after = read(root, "staging/flux-patch.yaml");
    assert_eq!(
        after,
        format!(
            "{before}---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: cache\n  namespace: staging\nspec:\n  template:\n    spec:\n      containers:\n      - name: redis\n        image: redis:7.2\n"
        )
    );

    // The sidecar of web has no entry in web's patch: the document is
    // written anew, with both containers and its annotation.
    let web = id("staging:deployment/web");
    generate::set_image(
        &config,
        &staging,
        &web,
        "sidecar",
        &image("busybox:1.37"),
        &settings,
    )
    .unwrap();
    let text = generated(root, "staging").unwrap();
    assert_eq!(
        image_of(&text, "staging:deployment/web", "web"),
        "nginx:1.25"
    );
    assert_eq!(
        image_of(&text, "staging:deployment/web", "sidecar"),
        "busybox:1.37"
    );
    assert_eq!(
        annotation(&text, "staging:deployment/web", "fluxcd.io/automated").as_deref(),
        Some("true")
    );
    assert_eq!(
        image_of(&text, "staging:statefulset/cache", "redis"),
        "redis:7.2"
    );
    assert!(read(root, "staging/flux-patch.yaml").starts_with("# Kept by fluxd"));
}

#[test]
fn patch_updated_policies_are_recorded_and_generated_ones_removed_with_null() {
    let repo = repo("patch-updated");
    let root = repo.path();
    let config = config(root, "staging");
    let staging = root.join("staging");
    let settings = Generation::default();
    let web = id("staging:deployment/web");
    // Added beside the patch's other annotation, in place.
    let before = read(root, "staging/flux-patch.yaml");
    let lock = PolicyUpdate::lock(None, None);
    assert!(generate::update_policies(&config, &staging, &web, &lock, &settings).unwrap());
    let after = read(root, "staging/flux-patch.yaml");
    assert_eq!(
        changed_lines(&before, &after),
        (vec![], vec!["    fluxcd.io/locked: \"true\"".into()])
    );
    // Set in the patch: removed from the patch.
    let unlocked = PolicyUpdate::deautomate().and(PolicyUpdate::unlock());
    assert!(generate::update_policies(&config, &staging, &web, &unlocked, &settings).unwrap());
    let text = generated(root, "staging").unwrap();
    assert_eq!(
        annotation(&text, "staging:deployment/web", "fluxcd.io/automated"),
        None
    );
    assert_eq!(
        annotation(&text, "staging:deployment/web", "fluxcd.io/locked"),
        None
    );
    assert!(!read(root, "staging/flux-patch.yaml").contains("fluxcd.io/"));
    assert_eq!(
        image_of(&text, "staging:deployment/web", "web"),
        "nginx:1.25"
    );

    // Set by the build: the patch removes it with a null.
    let cache = id("staging:statefulset/cache");
    let untag = PolicyUpdate::tag("redis", "*").unwrap();
    assert!(generate::update_policies(&config, &staging, &cache, &untag, &settings).unwrap());
    assert!(read(root, "staging/flux-patch.yaml").contains("    fluxcd.io/tag.redis: null\n"));
    let text = generated(root, "staging").unwrap();
    assert_eq!(
        annotation(&text, "staging:statefulset/cache", "fluxcd.io/tag.redis"),
        None
    );
    assert!(!generate::update_policies(&config, &staging, &cache, &untag, &settings).unwrap());
}

#[test]
fn a_patch_for_a_workload_no_longer_generated_is_an_error_at_its_line() {
    let repo = repo("patch-updated");
    let root = repo.path();
    std::fs::write(
        root.join("base/kustomization.yaml"),
        "resources:\n- cache.yaml\n",
    )
    .unwrap();
    let error = generated(root, "staging").unwrap_err();
    assert!(
        matches!(error, GenerateError::Patch { line: 3, .. }),
        "{error}"
    );
    assert!(
        error.to_string().ends_with("flux-patch.yaml:3: staging:deployment/web: the generators no longer make this workload; remove its patch"),
        "{error}"
    );
}

#[test]
fn a_patch_file_holds_only_images_and_annotations() {
    let repo = repo("patch-updated");
    let root = repo.path();
    let patch = read(root, "staging/flux-patch.yaml")
        .replace("spec:\n  template:", "spec:\n  replicas: 3\n  template:");
    std::fs::write(root.join("staging/flux-patch.yaml"), patch).unwrap();
    let error = generated(root, "staging").unwrap_err();
    assert!(
        error.to_string().ends_with("flux-patch.yaml:11: \"replicas\": a patch file holds only container images and annotations; remove this"),
        "{error}"
    );
}

#[test]
fn a_failed_check_leaves_the_patch_file_as_it_was() {
    // The generator fails once the patch file exists: the check after
    // writing it fails, and the file that was not there is not there.
    let repo = repo_of(&[
        (
            ".flux.yaml",
            "version: 1\npatchUpdated:\n  generators:\n  - command: test ! -e flux-patch.yaml && cat web.yaml\n  patchFile: flux-patch.yaml\n",
        ),
        (
            "web.yaml",
            "kind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
        ),
    ]);
    let root = repo.path();
    let config = config(root, ".");
    let error = generate::set_image(
        &config,
        root,
        &id("default:deployment/web"),
        "web",
        &image("nginx:1.26"),
        &Generation::default(),
    )
    .unwrap_err();
    assert!(matches!(error, GenerateError::Failed { .. }), "{error}");
    assert!(!root.join("flux-patch.yaml").exists());

    // And an existing one is put back byte for byte.
    let existing = "# mine\n---\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    fluxcd.io/locked: 'true'\n";
    std::fs::write(root.join("flux-patch.yaml"), existing).unwrap();
    std::fs::write(
        root.join(".flux.yaml"),
        "version: 1\npatchUpdated:\n  generators:\n  - command: grep -q locked flux-patch.yaml && cat web.yaml\n  patchFile: flux-patch.yaml\n",
    )
    .unwrap();
    let config = generate::find(root, Path::new(".")).unwrap().unwrap();
    let error = generate::update_policies(
        &config,
        root,
        &id("default:deployment/web"),
        &PolicyUpdate::unlock(),
        &Generation::default(),
    )
    .unwrap_err();
    assert!(matches!(error, GenerateError::Failed { .. }), "{error}");
    assert_eq!(read(root, "flux-patch.yaml"), existing);
}

#[test]
fn a_missing_patch_file_is_created_but_its_folder_must_exist() {
    let files = [
        (
            ".flux.yaml",
            "version: 1\npatchUpdated:\n  generators:\n  - command: cat web.yaml\n  patchFile: patches/flux.yaml\n",
        ),
        (
            "web.yaml",
            "kind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
        ),
    ];
    let repo = repo_of(&files);
    let error = generated(repo.path(), ".").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the folder of the patchFile does not exist"),
        "{error}"
    );
    std::fs::create_dir(repo.path().join("patches")).unwrap();
    let config = config(repo.path(), ".");
    generate::update_policies(
        &config,
        repo.path(),
        &id("default:deployment/web"),
        &PolicyUpdate::automate(),
        &Generation::default(),
    )
    .unwrap();
    assert_eq!(
        read(repo.path(), "patches/flux.yaml"),
        "---\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n  annotations:\n    fluxcd.io/automated: \"true\"\n"
    );
}

#[test]
fn a_patch_file_outside_the_checkout_is_refused() {
    let outside = repo_of(&[(
        "flux-patch.yaml",
        "kind: Deployment\nmetadata:\n  name: web\n",
    )]);
    let flux_yaml = "version: 1\npatchUpdated:\n  generators:\n  - command: cat web.yaml\n  patchFile: patches/flux-patch.yaml\n";
    let repo = repo_of(&[
        (".flux.yaml", flux_yaml),
        ("web.yaml", "kind: Deployment\nmetadata:\n  name: web\n"),
    ]);
    std::os::unix::fs::symlink(outside.path(), repo.path().join("patches")).unwrap();
    let error = generated(repo.path(), ".").unwrap_err();
    assert!(matches!(error, GenerateError::Outside { .. }), "{error}");

    let flux_yaml = flux_yaml.replace("patches/flux-patch.yaml", "../flux-patch.yaml");
    std::fs::write(repo.path().join(".flux.yaml"), flux_yaml).unwrap();
    let error = generated(repo.path(), ".").unwrap_err();
    assert!(matches!(error, GenerateError::Outside { .. }), "{error}");
}

#[test]
fn a_patch_updated_helm_release_image_is_refused_not_half_recorded() {
    let flux_yaml = "version: 1\npatchUpdated:\n  generators:\n  - command: cat chart.yaml\n  patchFile: flux-patch.yaml\n";
    let release = "apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: web\nspec:\n  values:\n    image: nginx:1.25\n";
    let repo = repo_of(&[(".flux.yaml", flux_yaml), ("chart.yaml", release)]);
    let config = config(repo.path(), ".");
    let web = id("default:helmrelease/web");
    let error = generate::set_image(
        &config,
        repo.path(),
        &web,
        "chart-image",
        &image("nginx:1.26"),
        &Generation::default(),
    )
    .unwrap_err();
    assert!(matches!(error, GenerateError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("pod workloads only"), "{error}");
    assert!(!repo.path().join("flux-patch.yaml").exists());
    // Its policies are annotations, which a patch does record.
    assert!(
        generate::update_policies(
            &config,
            repo.path(),
            &web,
            &PolicyUpdate::automate(),
            &Generation::default()
        )
        .unwrap()
    );
    let text = generated(repo.path(), ".").unwrap();
    assert_eq!(
        annotation(&text, "default:helmrelease/web", "fluxcd.io/automated").as_deref(),
        Some("true")
    );
}
