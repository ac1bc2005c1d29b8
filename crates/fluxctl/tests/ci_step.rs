//! fluxctl as the last step of a CI pipeline: `release --git-url` and
//! `fluxctl plugin` run as Drone, Woodpecker and GitHub Actions run a
//! plugin step — the built binary with exactly the variables each system
//! sets — against a real bare repository that another writer pushes to at
//! the same time, and against a real fluxd syncing the API server double.

mod binaries;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use binaries::{stderr, stdout};
use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo};
use flux_testkit::git::{BRANCH, BareRepo, HttpServer, IsolatedEnv, SshServer};
use flux_testkit::kube::ApiServer;

const OLD: &str = "weaveworksdemos/front-end:0.3.12";
const NEWER: &str = "weaveworksdemos/front-end:0.3.13";
const FRONT_END_FILE: &str = "manifests/09-front-end-dep.yaml";

/// fluxctl with `args` and nothing of the caller's environment but `PATH`:
/// git isolated from the machine, plus `vars`.
fn fluxctl_in(env: &IsolatedEnv, args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.vars())
        .envs(vars.iter().copied())
        .output()
        .expect("fluxctl runs")
}

/// The file at the branch head.
fn file_at_head(repo: &BareRepo, path: &str) -> String {
    repo.git(&["show", &format!("{BRANCH}:{path}")])
}

/// The whole message of the branch head.
fn head_message(repo: &BareRepo) -> String {
    repo.git(&["log", "-1", "--format=%B", BRANCH])
}

/// How many commits the other writer pushes at most: fewer than the 20
/// attempts flux-git makes, so that however slow a loaded machine makes
/// each attempt, the release is pushed once the burst is over.
const BURST: usize = 12;

/// Another writer: commits to its own file and pushes, every 20 to 100 ms,
/// a burst of [`BURST`] commits or until stopped (pulling first when it
/// loses a race); answers how many of its commits reached the branch.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
    _work: tempfile::TempDir,
}

impl Writer {
    fn start(repo: &BareRepo) -> Writer {
        let work = tempfile::tempdir().expect("a temporary folder");
        let dir = work.path().join("clone");
        let env = IsolatedEnv::new();
        env.run(
            work.path(),
            &[
                "clone",
                "-q",
                "-b",
                BRANCH,
                &repo.url(),
                dir.to_str().expect("UTF-8"),
            ],
        );
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pushed = 0;
            while !stopped.load(Ordering::Relaxed) && pushed < BURST {
                std::fs::write(dir.join("other-team.txt"), format!("{pushed}\n"))
                    .expect("the clone is writable");
                env.run(&dir, &["commit", "-qam", &format!("Other team {pushed}")]);
                loop {
                    let push = env
                        .git(&dir)
                        .args(["push", "-q", "origin", BRANCH])
                        .output();
                    if push.expect("git runs").status.success() {
                        break;
                    }
                    env.run(&dir, &["pull", "-q", "--rebase", "origin", BRANCH]);
                }
                pushed += 1;
                // Another pipeline, not a tight loop: a writer that pushes
                // without pause starves every other (flux-git's retries
                // count on the pause).
                std::thread::sleep(std::time::Duration::from_millis(
                    20 + (pushed as u64 * 37) % 80,
                ));
            }
            pushed
        });
        Writer {
            stop,
            thread: Some(thread),
            _work: work,
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .expect("the writer does not panic")
    }
}

/// A sock-shop repo that also holds the other writer's file.
fn repo_with_another_writer() -> BareRepo {
    let repo = sock_shop_repo(None);
    repo.commit_file(BRANCH, "other-team.txt", "seed\n", "Other team's file");
    repo
}

/// Checks the outcome of a step that released NEWER while `writer` pushed:
/// every commit of the writer is on the branch, the release is there once,
/// and the front-end file differs from before only by the tag.
fn assert_released_beside(repo: &BareRepo, before: &str, writer: Writer, out: &Output) {
    let pushed = writer.stop();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    let log = repo.git(&["log", "--format=%s", BRANCH]);
    for n in 0..pushed {
        assert!(log.contains(&format!("Other team {n}\n")), "{log}");
    }
    let ours = |subject: &str| !subject.starts_with("Other team") && subject != "Seed";
    assert_eq!(log.lines().filter(|l| ours(l)).count(), 1, "{log}");
    assert_eq!(
        file_at_head(repo, FRONT_END_FILE),
        before.replace(OLD, NEWER),
        "only the tag changed"
    );
    let release = repo
        .git(&["log", "--format=%H %s", BRANCH])
        .lines()
        .find(|l| ours(&l[41..]))
        .map(|l| l[..7].to_string())
        .expect("the release commit");
    assert!(
        stdout(out).contains(&format!("Commit pushed:\t{release}")),
        "{}",
        stdout(out)
    );
}

#[test]
fn release_to_a_git_url_pushes_one_commit_in_fluxs_form() {
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let before = repo.head(BRANCH);
    let file = file_at_head(&repo, FRONT_END_FILE);
    let url = repo.url();
    let out = fluxctl_in(
        &env,
        &[
            "release",
            "--git-url",
            &url,
            "--git-branch",
            BRANCH,
            "--git-path",
            "manifests",
            "--workload",
            FRONT_END,
            "-i",
            NEWER,
            "--user",
            "Ada <ada@example.com>",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let head = repo.head(BRANCH);
    let text = stdout(&out);
    assert_eq!(
        text,
        format!(
            "WORKLOAD                        STATUS   UPDATES\n\
             {FRONT_END}  success  front-end: {OLD} -> 0.3.13\n\
             Commit pushed:\t{}\n",
            &head[..7]
        )
    );
    assert_eq!(
        repo.git(&["rev-parse", &format!("{head}^")]).trim(),
        before,
        "one commit on top of the old head"
    );
    assert_eq!(
        head_message(&repo),
        format!("Release {NEWER} to {FRONT_END}\n\n")
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>", BRANCH])
            .trim(),
        "Ada <ada@example.com>|Weave Flux <support@weave.works>"
    );
    assert_eq!(
        file_at_head(&repo, FRONT_END_FILE),
        file.replace(OLD, NEWER)
    );
    let changed = repo.git(&["diff", "--name-only", &before, &head]);
    assert_eq!(changed, format!("{FRONT_END_FILE}\n"));
}

#[test]
fn nothing_to_change_pushes_nothing_and_says_so() {
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let before = repo.head(BRANCH);
    let url = repo.url();
    let out = fluxctl_in(
        &env,
        &[
            "release",
            "--git-url",
            &url,
            "--git-branch",
            BRANCH,
            "--workload",
            FRONT_END,
            "-i",
            OLD,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to commit: no file changed, nothing pushed"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("Commit pushed"), "{}", stdout(&out));
    assert_eq!(repo.head(BRANCH), before);
}

#[test]
fn a_dry_run_prints_the_plan_and_pushes_nothing() {
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let before = repo.head(BRANCH);
    let url = repo.url();
    let out = fluxctl_in(
        &env,
        &[
            "release",
            "--git-url",
            &url,
            "--git-branch",
            BRANCH,
            "--workload",
            FRONT_END,
            "-i",
            NEWER,
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("success  front-end:"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("dry run, nothing pushed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repo.head(BRANCH), before);
}

#[test]
fn a_git_path_the_branch_lacks_is_named() {
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let url = repo.url();
    let out = fluxctl_in(
        &env,
        &[
            "release",
            "--git-url",
            &url,
            "--git-branch",
            BRANCH,
            "--git-path",
            "deploy",
            "--workload",
            FRONT_END,
            "-i",
            NEWER,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--git-path deploy: branch main has no such folder or file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn drone_step_releases_while_another_writer_pushes() {
    let repo = repo_with_another_writer();
    let env = IsolatedEnv::new();
    let before = file_at_head(&repo, FRONT_END_FILE);
    let writer = Writer::start(&repo);
    let url = repo.url();
    // What Drone sets for a plugin step: the step's settings as PLUGIN_*,
    // lists comma-joined, and its own DRONE_* (and CI_*) variables.
    let out = fluxctl_in(
        &env,
        &["plugin"],
        &[
            ("CI", "true"),
            ("DRONE", "true"),
            ("DRONE_BUILD_LINK", "https://drone.example.com/team/app/42"),
            (
                "DRONE_COMMIT_SHA",
                "3f1c0ffee3f1c0ffee3f1c0ffee3f1c0ffee3f1c",
            ),
            ("DRONE_COMMIT_AUTHOR", "ada"),
            ("DRONE_COMMIT_AUTHOR_NAME", "Ada Lovelace"),
            ("DRONE_COMMIT_AUTHOR_EMAIL", "ada@example.com"),
            ("PLUGIN_IMAGE", NEWER),
            ("PLUGIN_WORKLOAD", FRONT_END),
            ("PLUGIN_GIT_URL", &url),
            ("PLUGIN_GIT_BRANCH", BRANCH),
            ("PLUGIN_MANIFESTS", "manifests"),
        ],
    );
    assert_released_beside(&repo, &before, writer, &out);
    let release = repo.git(&["log", "--format=%H", "--grep=^Release ", BRANCH]);
    let release = release.trim();
    assert_eq!(
        repo.git(&["log", "-1", "--format=%B", release]),
        format!(
            "Release {NEWER} to {FRONT_END}\n\n\
             Pipeline: https://drone.example.com/team/app/42\n\
             Built from: 3f1c0ffee3f1c0ffee3f1c0ffee3f1c0ffee3f1c\n\n"
        )
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", release])
            .trim(),
        "Ada Lovelace <ada@example.com>"
    );
}

#[test]
fn woodpecker_step_releases_to_controllers_while_another_writer_pushes() {
    let repo = repo_with_another_writer();
    let env = IsolatedEnv::new();
    let before = file_at_head(&repo, FRONT_END_FILE);
    let writer = Writer::start(&repo);
    let url = repo.url();
    // Woodpecker: settings as PLUGIN_* (a YAML list comma-joined), its
    // CI_* variables.
    let out = fluxctl_in(
        &env,
        &["plugin"],
        &[
            ("CI", "woodpecker"),
            (
                "CI_PIPELINE_URL",
                "https://ci.example.com/repos/3/pipeline/17",
            ),
            ("CI_COMMIT_SHA", "77aa77aa77aa77aa77aa77aa77aa77aa77aa77aa"),
            ("CI_COMMIT_AUTHOR", "grace"),
            ("CI_COMMIT_AUTHOR_EMAIL", "grace@example.com"),
            ("PLUGIN_IMAGE", NEWER),
            (
                "PLUGIN_CONTROLLER",
                &format!("{FRONT_END},sock-shop:deployment/carts"),
            ),
            ("PLUGIN_GIT_URL", &url),
            ("PLUGIN_GIT_BRANCH", BRANCH),
            ("PLUGIN_GIT_PATH", "manifests"),
            ("PLUGIN_MESSAGE", "Ship the new front-end"),
        ],
    );
    assert_released_beside(&repo, &before, writer, &out);
    let release = repo.git(&["log", "--format=%H", "--grep=^Ship ", BRANCH]);
    assert_eq!(
        repo.git(&["log", "-1", "--format=%B", release.trim()]),
        format!(
            "Ship the new front-end\n\n\
             Release {NEWER} to {FRONT_END}, sock-shop:deployment/carts\n\n\
             Pipeline: https://ci.example.com/repos/3/pipeline/17\n\
             Built from: 77aa77aa77aa77aa77aa77aa77aa77aa77aa77aa\n\n"
        )
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", release.trim()])
            .trim(),
        "grace <grace@example.com>"
    );
}

/// The inputs `action.yml` declares, with their defaults (`""` when none).
fn action_inputs() -> Vec<(String, String)> {
    let action = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../action.yml");
    let text = std::fs::read_to_string(&action).expect("action.yml at the repository root");
    let mut inputs = Vec::new();
    let mut in_inputs = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_inputs = line.trim_end() == "inputs:";
            continue;
        }
        if !in_inputs {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            inputs.push((name.to_string(), String::new()));
        } else if let Some(default) = line.trim().strip_prefix("default:") {
            let last = inputs.last_mut().expect("a default belongs to an input");
            last.1 = default
                .trim()
                .trim_matches('"')
                .trim_matches('\'')
                .to_string();
        }
    }
    inputs
}

#[test]
fn github_action_step_releases_while_another_writer_pushes() {
    let repo = repo_with_another_writer();
    let env = IsolatedEnv::new();
    let before = file_at_head(&repo, FRONT_END_FILE);
    let writer = Writer::start(&repo);
    let url = repo.url();
    let given = [
        ("image", NEWER),
        ("workload", FRONT_END),
        ("git_url", url.as_str()),
        ("git_branch", BRANCH),
        ("git_path", "manifests"),
    ];
    // GitHub sets INPUT_<NAME> for every input action.yml declares: the
    // value given under `with:`, else the default, else empty.
    let inputs: Vec<(String, String)> = action_inputs()
        .into_iter()
        .map(|(name, default)| {
            let value = given
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default, |(_, v)| v.to_string());
            (format!("INPUT_{}", name.to_uppercase()), value)
        })
        .collect();
    let mut vars: Vec<(&str, &str)> = vec![
        ("CI", "true"),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "team/app"),
        ("GITHUB_RUN_ID", "9001"),
        ("GITHUB_SHA", "c0c0a0c0c0a0c0c0a0c0c0a0c0c0a0c0c0a0c0c0"),
        ("GITHUB_ACTOR", "octocat"),
    ];
    vars.extend(inputs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = fluxctl_in(&env, &["plugin"], &vars);
    assert_released_beside(&repo, &before, writer, &out);
    assert!(
        head_message_of_release(&repo).ends_with(
            "Pipeline: https://github.com/team/app/actions/runs/9001\n\
             Built from: c0c0a0c0c0a0c0c0a0c0c0a0c0c0a0c0c0a0c0c0\n\n"
        ),
        "{}",
        head_message_of_release(&repo)
    );
}

fn head_message_of_release(repo: &BareRepo) -> String {
    let release = repo.git(&["log", "--format=%H", "--grep=^Release ", BRANCH]);
    repo.git(&["log", "-1", "--format=%B", release.trim()])
}

#[test]
fn a_missing_setting_is_one_line_naming_it_and_nothing_is_cloned() {
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let before = repo.head(BRANCH);
    let url = repo.url();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("PLUGIN_WORKLOAD", FRONT_END), ("PLUGIN_GIT_URL", &url)],
            "fluxctl plugin: PLUGIN_IMAGE is not set",
        ),
        (
            &[
                ("PLUGIN_IMAGE", NEWER),
                ("PLUGIN_WORKLOAD", "front end"),
                ("PLUGIN_GIT_URL", &url),
            ],
            "fluxctl plugin: PLUGIN_WORKLOAD front end:",
        ),
        (
            &[
                ("PLUGIN_IMAGE", NEWER),
                ("PLUGIN_WORKLOAD", FRONT_END),
                ("PLUGIN_GIT_URL", &url),
                ("PLUGIN_WAIT", "true"),
            ],
            "fluxctl plugin: PLUGIN_WAIT needs PLUGIN_URL",
        ),
    ];
    for (vars, expected) in cases {
        let out = fluxctl_in(&env, &["plugin"], vars);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let message = stderr(&out);
        assert!(message.starts_with(expected), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(stdout(&out).is_empty());
    }
    assert_eq!(repo.head(BRANCH), before);
}

/// The fluxd of these tests, syncing the API server double.
async fn fluxd_with_cluster(repo: &BareRepo) -> (Fluxd, ApiServer) {
    let cluster = ApiServer::start();
    let fluxd =
        Fluxd::start_with_cluster(&binaries::fluxd(), repo, &cluster.kubeconfig(), &[]).await;
    (fluxd, cluster)
}

fn front_end_image(cluster: &ApiServer) -> Option<String> {
    let deployment = cluster.object("Deployment", Some("sock-shop"), "front-end")?;
    let image = &deployment["spec"]["template"]["spec"]["containers"][0]["image"];
    image.as_str().map(String::from)
}

#[tokio::test]
async fn plugin_with_a_fluxd_to_wait_for_ends_with_the_commit_applied() {
    let repo = sock_shop_repo(None);
    let (fluxd, cluster) = fluxd_with_cluster(&repo).await;
    flux_testkit::daemon::wait_for("fluxd to apply the seed", || async {
        front_end_image(&cluster).as_deref() == Some(OLD)
    })
    .await;
    let env = IsolatedEnv::new();
    let url = repo.url();
    let out = fluxctl_in(
        &env,
        &["plugin"],
        &[
            ("CI", "true"),
            ("DRONE", "true"),
            ("PLUGIN_IMAGE", NEWER),
            ("PLUGIN_WORKLOAD", FRONT_END),
            ("PLUGIN_GIT_URL", &url),
            ("PLUGIN_GIT_BRANCH", BRANCH),
            ("PLUGIN_GIT_PATH", "manifests"),
            ("PLUGIN_URL", &fluxd.url),
            ("PLUGIN_TOKEN", &fluxd.token),
            ("PLUGIN_WAIT", "true"),
            ("PLUGIN_TIMEOUT", "5m"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        fluxd.log()
    );
    let head = repo.head(BRANCH);
    let text = stdout(&out);
    assert!(
        text.ends_with(&format!(
            "Commit pushed:\t{short}\nCommit applied:\t{short}\n",
            short = &head[..7]
        )),
        "{text}"
    );
    // Applied means the cluster has it, not just that fluxd read it.
    assert_eq!(front_end_image(&cluster).as_deref(), Some(NEWER));
}

#[tokio::test]
async fn plugin_through_fluxd_alone_releases_as_a_daemon_job() {
    let repo = sock_shop_repo(None);
    let (fluxd, cluster) = fluxd_with_cluster(&repo).await;
    let env = IsolatedEnv::new();
    let out = fluxctl_in(
        &env,
        &["plugin"],
        &[
            ("CI", "woodpecker"),
            (
                "CI_PIPELINE_URL",
                "https://ci.example.com/repos/3/pipeline/18",
            ),
            ("CI_COMMIT_SHA", "5151515151515151515151515151515151515151"),
            ("PLUGIN_IMAGE", NEWER),
            ("PLUGIN_WORKLOAD", FRONT_END),
            ("PLUGIN_URL", &fluxd.url),
            ("PLUGIN_TOKEN", &fluxd.token),
            ("PLUGIN_TIMEOUT", "5m"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        fluxd.log()
    );
    let head = repo.head(BRANCH);
    assert!(
        stdout(&out).contains(&format!("Commit applied:\t{}", &head[..7])),
        "{}",
        stdout(&out)
    );
    assert_eq!(front_end_image(&cluster).as_deref(), Some(NEWER));
    // fluxd wrote the message; the run heads it, as `-m` does.
    assert_eq!(
        head_message(&repo),
        format!(
            "Pipeline: https://ci.example.com/repos/3/pipeline/18\n\
             Built from: 5151515151515151515151515151515151515151\n\n\
             Release {NEWER} to {FRONT_END}\n\n"
        )
    );
}

const TOKEN: &str = "ghp-5e1f0c2a9b";

#[test]
fn a_token_from_the_environment_pushes_over_https_and_is_never_shown() {
    let repo = sock_shop_repo(None);
    let server = HttpServer::serve(&repo, "x-access-token", TOKEN);
    let env = IsolatedEnv::new();
    let url = server.url();
    let out = fluxctl_in(
        &env,
        &[
            "release",
            "--git-url",
            &url,
            "--git-branch",
            BRANCH,
            "--workload",
            FRONT_END,
            "-i",
            NEWER,
        ],
        &[("FLUX_GIT_TOKEN", TOKEN)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        file_at_head(&repo, FRONT_END_FILE).matches(NEWER).count(),
        1
    );
    assert!(!stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN));
    assert_eq!(server.refused(), 0);
}

#[test]
fn a_wrong_token_is_an_authentication_error_that_does_not_show_it() {
    let repo = sock_shop_repo(None);
    let server = HttpServer::serve(&repo, "x-access-token", TOKEN);
    let env = IsolatedEnv::new();
    let before = repo.head(BRANCH);
    let url = server.url();
    let out = fluxctl_in(
        &env,
        &["plugin"],
        &[
            ("PLUGIN_IMAGE", NEWER),
            ("PLUGIN_WORKLOAD", FRONT_END),
            ("PLUGIN_GIT_URL", &url),
            ("PLUGIN_GIT_BRANCH", BRANCH),
            ("PLUGIN_GIT_TOKEN", "ghp-revoked-0000"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("authentication"), "{message}");
    assert!(!message.contains("ghp-revoked-0000"), "{message}");
    assert_eq!(repo.head(BRANCH), before);
}

#[test]
fn plugin_pushes_over_ssh_with_the_deploy_key_and_host_key_settings() {
    let keys = tempfile::tempdir().expect("a temporary folder");
    let key = keys.path().join("deploy");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let server = match SshServer::start(&public) {
        Ok(server) => server,
        Err(why) => {
            eprintln!("SKIPPED: sshd cannot start on this machine: {why}");
            return;
        }
    };
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let private = std::fs::read_to_string(&key).expect("private key");
    let url = server.url(&repo.path());
    let out = fluxctl_in(
        &env,
        &["plugin"],
        &[
            ("PLUGIN_IMAGE", NEWER),
            ("PLUGIN_WORKLOAD", FRONT_END),
            ("PLUGIN_GIT_URL", &url),
            ("PLUGIN_GIT_BRANCH", BRANCH),
            // CI secrets often lose the key's last newline.
            ("PLUGIN_SSH_KEY", private.trim_end()),
            ("PLUGIN_KNOWN_HOSTS", &server.known_hosts_line()),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        server.log()
    );
    assert_eq!(
        file_at_head(&repo, FRONT_END_FILE).matches(NEWER).count(),
        1
    );
}

#[test]
fn lock_with_a_git_url_commits_the_annotations_in_fluxs_form() {
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let before = repo.head(BRANCH);
    let url = repo.url();
    let out = fluxctl_in(
        &env,
        &[
            "lock",
            "--git-url",
            &url,
            "--git-branch",
            BRANCH,
            "-w",
            FRONT_END,
            "-m",
            "Freeze for the demo",
            "--user",
            "Ada <ada@example.com>",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let head = repo.head(BRANCH);
    assert_eq!(
        stdout(&out),
        format!(
            "WORKLOAD                        STATUS   UPDATES\n\
             {FRONT_END}  success\n\
             Commit pushed:\t{}\n",
            &head[..7]
        )
    );
    assert_eq!(
        head_message(&repo),
        format!("Freeze for the demo\n\n- Locked: {FRONT_END}\n\n")
    );
    let file = file_at_head(&repo, FRONT_END_FILE);
    assert!(file.contains("fluxcd.io/locked: \"true\""), "{file}");
    assert!(
        file.contains("fluxcd.io/locked_msg: Freeze for the demo"),
        "{file}"
    );
    assert_eq!(
        repo.git(&["diff", "--name-only", &before, &head]),
        format!("{FRONT_END_FILE}\n")
    );
}

#[test]
fn automating_an_automated_workload_pushes_nothing() {
    let repo = sock_shop_repo(None);
    let env = IsolatedEnv::new();
    let url = repo.url();
    let automate = || {
        fluxctl_in(
            &env,
            &[
                "automate",
                "--git-url",
                &url,
                "--git-branch",
                BRANCH,
                "-w",
                FRONT_END,
            ],
            &[],
        )
    };
    let first = automate();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(head_message(&repo).starts_with(&format!("Automated: {FRONT_END}")));
    let pushed = repo.head(BRANCH);
    let again = automate();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("skipped  no changes"),
        "{}",
        stdout(&again)
    );
    assert!(
        stderr(&again).contains("nothing to commit"),
        "{}",
        stderr(&again)
    );
    assert_eq!(repo.head(BRANCH), pushed);
}

#[tokio::test]
async fn update_all_images_with_a_git_url_scans_the_registry_and_pushes_the_newest() {
    let registry = flux_testkit::daemon::registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let env = IsolatedEnv::new();
    let url = repo.url();
    let out = fluxctl_in(
        &env,
        &[
            "release",
            "--git-url",
            &url,
            "--git-branch",
            BRANCH,
            "--workload",
            FRONT_END,
            "--update-all-images",
            "--no-registry-cache",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        file_at_head(&repo, FRONT_END_FILE).contains(&format!("image: {image}:0.4.0")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        head_message(&repo),
        format!("Release all latest to {FRONT_END}\n\n")
    );
}
