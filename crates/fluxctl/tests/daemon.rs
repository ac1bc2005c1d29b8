//! `fluxctl` against a real `fluxd` (`--cluster=none`) on a bare repo seeded
//! with the sock-shop manifests, and a real registry.
//!
//! The `fluxd` binary is the one built next to `fluxctl` (`cargo test
//! --workspace` builds both; with `-p fluxctl` alone, `cargo build -p fluxd`
//! first).

mod binaries;

use binaries::{fluxctl, stderr, stdout};
use flux_testkit::daemon::{FRONT_END, Fluxd, registry_with_front_end, sock_shop_repo, wait_for};
use flux_testkit::git::BRANCH;

#[tokio::test]
async fn list_workloads_through_the_daemon_equals_the_offline_listing() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let manifests = flux_testkit::sock_shop_manifests();
    let offline = fluxctl(&[
        "list-workloads",
        "--manifests",
        manifests.to_str().expect("the fixture path is UTF-8"),
    ]);
    let online = fluxctl(&["--url", &fluxd.url, "list-workloads"]);
    assert!(online.status.success(), "{}", stderr(&online));
    assert!(stdout(&online).contains(FRONT_END));
    assert_eq!(stdout(&online), stdout(&offline));

    let json = fluxctl(&["--url", &fluxd.url, "list-workloads", "-o", "json"]);
    let listed: Vec<flux_api::Workload> =
        serde_json::from_slice(&json.stdout).expect("-o json is the API's workloads");
    assert!(listed.iter().any(|w| w.id == FRONT_END));
}

#[tokio::test]
async fn release_through_the_daemon_prints_the_result_and_the_commit_it_pushed() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let include = format!("--registry-include-image={}/*", registry.host());
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[&include]).await;
    let client = fluxd.client();
    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await;
        images.is_ok_and(|i| i[0].containers[0].available.len() == 3)
    })
    .await;

    let listed = fluxctl(&["--url", &fluxd.url, "list-images", "-w", FRONT_END]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = stdout(&listed);
    assert!(table.contains("|   0.4.0"), "{table}");
    assert!(table.contains("'-> 0.3.12"), "{table}");
    let json = fluxctl(&[
        "--url",
        &fluxd.url,
        "list-images",
        "-w",
        FRONT_END,
        "-o",
        "json",
    ]);
    let statuses: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("-o json is JSON");
    let container = &statuses[0]["Containers"][0];
    assert_eq!(container["Current"]["ID"], format!("{image}:0.3.12"));
    assert_eq!(container["Available"].as_array().map(Vec::len), Some(3));

    let before = repo.head(BRANCH);
    let target = format!("{image}:0.4.0");
    let base = ["--url", &fluxd.url, "--token", &fluxd.token, "release"];
    let dry = fluxctl(
        &[
            &base[..],
            &["--workload", FRONT_END, "-i", &target, "--dry-run"],
        ]
        .concat(),
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("front-end: "), "{}", stdout(&dry));
    assert_eq!(repo.head(BRANCH), before, "a dry run pushes nothing");

    // Without a cluster the commit is never applied: the wait for it is
    // cut short (see release_follow.rs for how that ends).
    let released = fluxctl(
        &[
            &base[..],
            &["--workload", FRONT_END, "-i", &target, "--timeout", "1s"],
        ]
        .concat(),
    );
    assert!(
        stderr(&released).contains("--cluster=none"),
        "{}",
        stderr(&released)
    );
    assert!(stderr(&released).contains("Submitting release ..."));
    let after = repo.head(BRANCH);
    let out = stdout(&released);
    assert!(out.starts_with("WORKLOAD"), "{out}");
    assert!(
        out.contains(&format!(
            "{FRONT_END}  success  front-end: {image}:0.3.12 -> 0.4.0"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("Commit pushed:\t{}", &after[..7])),
        "{out}"
    );
    assert_eq!(
        repo.git(&["rev-parse", "HEAD~1"]).trim(),
        before,
        "exactly one commit"
    );
}

#[tokio::test]
async fn automate_through_the_daemon_commits_the_annotation() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let out = fluxctl(&[
        "--url",
        &fluxd.url,
        "--token",
        &fluxd.token,
        "automate",
        "-w",
        FRONT_END,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = repo.head(BRANCH);
    assert_ne!(after, before);
    assert!(
        stdout(&out).contains(&format!("{FRONT_END}  success")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(&format!("Commit pushed:\t{}", &after[..7])));
    let manifest = repo.git(&["show", "HEAD:manifests/09-front-end-dep.yaml"]);
    assert!(manifest.contains("fluxcd.io/automated"), "{manifest}");
}

#[tokio::test]
async fn without_a_token_a_release_is_refused_and_nothing_is_pushed() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let out = fluxctl(&[
        "--url",
        &fluxd.url,
        "release",
        "--workload",
        FRONT_END,
        "-i",
        "weaveworksdemos/front-end:0.3.13",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing or wrong API token"),
        "{}",
        stderr(&out)
    );
    assert_eq!(repo.head(BRANCH), before);
}

#[tokio::test]
async fn identity_says_clearly_that_a_daemon_without_ssh_has_no_key() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let out = fluxctl(&["--url", &fluxd.url, "identity"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no deploy key"), "{}", stderr(&out));
}

/// Without a cluster a revision counts as synced once fluxd has read it:
/// `sync` follows the same steps and ends.
#[tokio::test]
async fn sync_without_a_cluster_ends_once_fluxd_has_read_the_revision() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let head = repo.commit_file(
        BRANCH,
        "manifests/zz-config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: sock-shop\n",
        "Add a config map",
    );
    let out = fluxctl(&[
        "--url",
        &fluxd.url,
        "--token",
        &fluxd.token,
        "sync",
        "--timeout",
        "30s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("Synchronizing with {}", fluxd.url),
            format!("Revision of {BRANCH} to apply is {}", &head[..7]),
            format!("Waiting for {} to be applied ...", &head[..7]),
            "Done.".to_string(),
        ]
    );
}

#[test]
fn version_prints_the_client_version_without_a_daemon() {
    let out = fluxctl(&["--url", "http://127.0.0.1:9", "version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("fluxctl {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completion_bash_writes_a_script_for_fluxctl() {
    let out = fluxctl(&["completion", "bash"]);
    assert!(out.status.success());
    let script = stdout(&out);
    assert!(script.contains("_fluxctl()"), "{script}");
    assert!(script.contains("list-workloads"));
}

#[test]
fn an_unreachable_daemon_is_named_with_the_root_cause() {
    let out = fluxctl(&["--url", "http://127.0.0.1:9", "list-workloads"]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.starts_with("fluxctl: cannot reach fluxd at http://127.0.0.1:9/"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[tokio::test]
async fn policy_through_the_daemon_sets_a_tag_filter_and_refuses_a_bad_one_before_sending() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let base = ["--url", &fluxd.url, "--token", &fluxd.token, "policy"];
    let before = repo.head(BRANCH);
    let bad = fluxctl(
        &[
            &base[..],
            &["-w", FRONT_END, "--tag", "front-end=semver:nope"],
        ]
        .concat(),
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("--tag front-end=semver:nope"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(repo.head(BRANCH), before, "nothing sent, nothing pushed");

    let good = fluxctl(
        &[
            &base[..],
            &[
                "-w",
                FRONT_END,
                "--tag",
                "front-end=semver:~0.3",
                "-m",
                "pin 0.3",
            ],
        ]
        .concat(),
    );
    assert!(good.status.success(), "{}", stderr(&good));
    let manifest = repo.git(&["show", "HEAD:manifests/09-front-end-dep.yaml"]);
    assert!(
        manifest.contains("fluxcd.io/tag.front-end: semver:~0.3"),
        "{manifest}"
    );
    let message = repo.git(&["log", "-1", "--format=%B", BRANCH]);
    assert!(message.contains("pin 0.3"), "{message}");
}

#[test]
fn bad_release_arguments_are_refused_before_the_daemon_is_asked() {
    let out = fluxctl(&[
        "--url",
        "http://127.0.0.1:9",
        "release",
        "--workload",
        "front-end",
        "-i",
        "weaveworksdemos/front-end:0.3.13",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--workload front-end"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_broken_file_keeps_its_workloads_listed_and_is_named_with_its_line() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let path = "manifests/09-front-end-dep.yaml";
    let front_end = repo.git(&["show", &format!("{BRANCH}:{path}")]);
    repo.commit_file(
        BRANCH,
        path,
        &format!("{front_end}  broken: [\n"),
        "Break front-end",
    );
    let synced = fluxctl(&["--url", &fluxd.url, "--token", &fluxd.token, "sync"]);
    assert_eq!(synced.status.code(), Some(1), "{}", stdout(&synced));
    assert!(
        stderr(&synced).contains(&format!("fluxctl: {path}:")),
        "{}",
        stderr(&synced)
    );

    let listed = fluxctl(&["--url", &fluxd.url, "list-workloads", "-n", "sock-shop"]);
    assert_eq!(listed.status.code(), Some(1), "the listing is not whole");
    let said = stderr(&listed);
    let named: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with(&format!("fluxctl: {path}:")))
        .collect();
    assert_eq!(named.len(), 1, "{said}");
    let line_and_column = named[0].trim_start_matches(&format!("fluxctl: {path}:"));
    let mut numbers = line_and_column
        .split(':')
        .take(2)
        .map(|n| n.parse::<usize>());
    assert!(numbers.all(|n| n.is_ok()), "{}", named[0]);
    assert!(
        stdout(&listed).lines().any(|l| l.starts_with(FRONT_END)),
        "{}",
        stdout(&listed)
    );

    let client = fluxd.client();
    let workloads = client.workloads(None).await.expect("workloads are listed");
    let front_end = workloads
        .iter()
        .find(|w| w.id == FRONT_END)
        .expect("front-end still listed");
    assert!(
        front_end
            .read_error
            .as_deref()
            .is_some_and(|e| e.starts_with(path)),
        "{front_end:?}"
    );
    let read = client.read_state().await.expect("the read state");
    assert_eq!(read.errors.len(), 1, "{read:?}");
    assert_eq!(read.errors[0].file, path);
    assert!(read.errors[0].line.is_some() && read.errors[0].column.is_some());
    assert_eq!(read.revision, repo.head(BRANCH));
}

#[tokio::test]
async fn before_fluxd_has_read_git_every_listing_says_why() {
    let missing = tempfile::tempdir().expect("a temporary folder");
    let url = format!("file://{}/nothing-here.git", missing.path().display());
    let fluxd = Fluxd::spawn(
        &binaries::fluxd(),
        &url,
        None,
        flux_testkit::git::free_port(),
        &["--git-poll-interval", "1s"],
        &[],
    )
    .await;
    for verb in [&["list-workloads"][..], &["list-images"][..]] {
        let listed = fluxctl(&[&["--url", fluxd.url.as_str()][..], verb].concat());
        assert_eq!(
            listed.status.code(),
            Some(1),
            "{verb:?}: {}",
            stdout(&listed)
        );
        assert_eq!(stdout(&listed), "", "no empty table");
        let said = stderr(&listed);
        assert!(
            said.contains("fluxd has not read the git repo"),
            "{verb:?}: {said}"
        );
        assert!(said.contains("nothing-here.git"), "{verb:?}: {said}");
    }
}

#[tokio::test]
async fn fluxds_commits_are_by_its_own_identity_whatever_its_environment_says() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::spawn(
        &binaries::fluxd(),
        &repo.url(),
        None,
        flux_testkit::git::free_port(),
        &["--git-user", "Flux Bot", "--git-email", "flux@example.com"],
        &[
            ("GIT_AUTHOR_NAME", "Someone Else"),
            ("GIT_AUTHOR_EMAIL", "someone@example.com"),
            ("GIT_COMMITTER_NAME", "Someone Else"),
            ("GIT_COMMITTER_EMAIL", "someone@example.com"),
            ("EMAIL", "someone@example.com"),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "user.name"),
            ("GIT_CONFIG_VALUE_0", "Config Person"),
        ],
    )
    .await;
    let client = fluxd.client();
    wait_for("the manifests to be read", || async {
        client.workloads(None).await.is_ok_and(|w| !w.is_empty())
    })
    .await;
    let automated = fluxctl(&[
        "--url",
        &fluxd.url,
        "--token",
        &fluxd.token,
        "automate",
        "-w",
        FRONT_END,
    ]);
    assert!(automated.status.success(), "{}", stderr(&automated));
    let who = repo.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>", BRANCH]);
    assert_eq!(
        who.trim(),
        "Flux Bot <flux@example.com>|Flux Bot <flux@example.com>"
    );
}

/// The resources a saved file holds, read as a checkout of that one file.
fn saved(path: &std::path::Path) -> flux_manifests::Checkout {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was saved: {e}", path.display()));
    assert!(text.starts_with("---\n"), "{text}");
    flux_manifests::Checkout::from_text(path, &text, flux_manifests::LoadOptions::default())
}

#[tokio::test]
async fn save_writes_each_resource_the_daemon_read_in_flux_v1s_layout() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let out = tempfile::tempdir().expect("a folder to save into");
    let dir = out.path().to_str().expect("the temporary path is UTF-8");

    let save = fluxctl(&["--url", &fluxd.url, "save", "--out", dir]);
    assert!(save.status.success(), "{}", stderr(&save));
    assert_eq!(stdout(&save), "", "files only: nothing on stdout");

    let front_end = saved(&out.path().join("sock-shop/front-end-dep.yaml"));
    assert_eq!(front_end.resources.len(), 1);
    let id: flux_manifests::ResourceId = FRONT_END.parse().expect("a valid id");
    let workload = front_end.workload(&id).expect("the front-end Deployment");
    assert_eq!(
        workload.containers[0].image.familiar(),
        "weaveworksdemos/front-end:0.3.12"
    );
    let namespace = saved(&out.path().join("sock-shop-ns.yaml"));
    assert_eq!(
        namespace.resources[0].id.to_string(),
        "<cluster>:namespace/sock-shop"
    );
    let service = saved(&out.path().join("sock-shop/front-end-svc.yaml"));
    assert_eq!(service.resources[0].kind, "Service");

    // As in git, byte for byte, after the separator.
    let written = std::fs::read_to_string(out.path().join("sock-shop/front-end-dep.yaml"))
        .expect("saved above");
    let original =
        std::fs::read_to_string(flux_testkit::sock_shop_manifests().join("09-front-end-dep.yaml"))
            .expect("the fixture");
    assert!(original.ends_with(&written["---\n".len()..]), "{written}");

    let listed = fluxctl(&["--url", &fluxd.url, "save"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let stream = stdout(&listed);
    assert!(
        stream.starts_with("---\napiVersion: v1\nkind: Namespace\n"),
        "{stream}"
    );
    let all = flux_manifests::Checkout::from_text(
        std::path::Path::new("saved.yaml"),
        &stream,
        flux_manifests::LoadOptions::default(),
    );
    assert!(all.errors.is_empty(), "{:?}", all.errors);
    let files = std::fs::read_dir(out.path().join("sock-shop"))
        .expect("saved above")
        .count();
    assert_eq!(
        all.resources.len(),
        files + 1,
        "one file per resource, and the Namespace"
    );
    assert!(all.workload(&id).is_some());

    let answered = fluxd.client().manifests().await.expect("the manifests");
    let deployment = answered
        .iter()
        .find(|m| m.id == FRONT_END)
        .expect("front-end");
    assert_eq!(
        (deployment.kind.as_str(), deployment.file.as_str()),
        ("Deployment", "manifests/09-front-end-dep.yaml"),
        "the file is named from the repo's root"
    );
}

#[tokio::test]
async fn save_into_a_missing_folder_fails_naming_it() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let out = tempfile::tempdir().expect("a temporary folder");
    let missing = out.path().join("missing");
    let missing = missing.to_str().expect("the temporary path is UTF-8");
    let save = fluxctl(&["--url", &fluxd.url, "save", "-o", missing]);
    assert_eq!(save.status.code(), Some(1));
    assert!(
        stderr(&save).contains(&format!("{missing} is not a folder")),
        "{}",
        stderr(&save)
    );
    assert_eq!(stdout(&save), "");
}

#[tokio::test]
async fn list_images_explain_says_why_automation_leaves_a_container() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let include = format!("--registry-include-image={}/*", registry.host());
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[&include]).await;
    let client = fluxd.client();
    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await;
        images.is_ok_and(|i| i[0].containers[0].available.len() == 3)
    })
    .await;
    let url = fluxd.url.as_str();
    let token = fluxd.token.as_str();
    let limited = fluxctl(&[
        "--url",
        url,
        "--token",
        token,
        "policy",
        "-w",
        FRONT_END,
        "--tag",
        "front-end=semver:~0.3",
    ]);
    assert!(limited.status.success(), "{}", stderr(&limited));
    wait_for("the tag filter to be read", || async {
        let workloads = client.workloads(Some("sock-shop")).await.unwrap();
        workloads
            .iter()
            .any(|w| w.id == FRONT_END && w.policies.tags.contains_key("front-end"))
    })
    .await;

    let explained = fluxctl(&["--url", url, "list-images", "--explain", "-w", FRONT_END]);
    assert!(explained.status.success(), "{}", stderr(&explained));
    assert_eq!(
        stdout(&explained),
        format!(
            "front-end: {image}:0.3.12\n  automation moves it to 0.3.13 next\n  \
             not automated (fluxctl automate turns it on)\n  \
             0.4.0: rejected by semver:~0.3: outside the range (fails ~0.3)\n"
        )
    );
    let json = fluxctl(&[
        "--url",
        url,
        "list-images",
        "--explain",
        "-w",
        FRONT_END,
        "-o",
        "json",
    ]);
    let answer: Vec<flux_api::Explanation> =
        serde_json::from_slice(&json.stdout).expect("-o json is the API's answer");
    assert_eq!(answer[0].next.as_deref(), Some("0.3.13"));

    let two = fluxctl(&["--url", url, "list-images", "--explain"]);
    assert_eq!(two.status.code(), Some(2), "{}", stderr(&two));
    assert!(stderr(&two).contains("--explain needs exactly one workload"));
}

/// With `--git-verify-signatures`, `sync` says why the head is not applied,
/// waits for the newest verified revision instead, and exits 1.
#[tokio::test]
async fn sync_names_the_commit_that_is_not_verified() {
    let keys = tempfile::TempDir::new().expect("temp dir");
    let make_key = |name: &str| {
        let private = keys.path().join(name);
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success());
        private
    };
    let alice = make_key("alice");
    let own = make_key("fluxd");
    let public = std::fs::read_to_string(alice.with_extension("pub")).expect("public key");
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("alice@example.com {public}")).expect("file");
    let repo = sock_shop_repo(None);
    let signing_key = format!("user.signingKey={}", alice.display());
    repo.git(&[
        "-c",
        "gpg.format=ssh",
        "-c",
        &signing_key,
        "tag",
        "-s",
        "-m",
        "Sync marker",
        "flux-sync",
        BRANCH,
    ]);
    let verified = repo.head(BRANCH);
    let allowed_flag = format!("--git-verify-allowed-signers={}", allowed.display());
    let own_flag = format!("--git-signing-key={}", own.display());
    let fluxd = Fluxd::start(
        &binaries::fluxd(),
        &repo,
        &[
            "--git-verify-signatures",
            &allowed_flag,
            &own_flag,
            "--git-signing-format=ssh",
        ],
    )
    .await;
    let unsigned = repo.commit_file(
        BRANCH,
        "manifests/zz-config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: sock-shop\n",
        "Add a config map, unsigned",
    );
    let out = fluxctl(&[
        "--url",
        &fluxd.url,
        "--token",
        &fluxd.token,
        "sync",
        "--timeout",
        "30s",
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "the head {} of {BRANCH} is not applied: commit {unsigned} is not verified: not signed",
            &unsigned[..7]
        )),
        "{said}"
    );
    assert!(
        stdout(&out).contains(&format!(
            "Revision of {BRANCH} to apply is {}",
            &verified[..7]
        )),
        "{}",
        stdout(&out)
    );
}
