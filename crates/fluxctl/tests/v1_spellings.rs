//! Flux v1's spellings, typed as its users type them: the transcripts of
//! the Flux documents word for word, against a real `fluxd` and with
//! `--manifests`; the old workload ids and flags; comma-separated lists.

mod binaries;

use std::path::Path;

use binaries::{fluxctl, stderr, stdout};
use flux_testkit::daemon::{FRONT_END, Fluxd, registry_with_front_end, wait_for};
use flux_testkit::git::{BRANCH, BareRepo};

const HELLOWORLD: &str = "default:deployment/helloworld";

/// The helloworld Deployment of the Flux documents.
const HELLOWORLD_YAML: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: helloworld
  namespace: default
spec:
  template:
    spec:
      containers:
      - name: helloworld
        image: quay.io/weaveworks/helloworld:master-9a16ff945b9e
";

/// The sock-shop manifests with front-end's image in `registry_image`, and
/// the helloworld Deployment, into `dir`.
fn fill(dir: &Path, registry_image: &str) {
    flux_testkit::copy_dir(&flux_testkit::sock_shop_manifests(), dir).expect("fixtures copy");
    let path = dir.join("09-front-end-dep.yaml");
    let text = std::fs::read_to_string(&path).expect("the fixture exists");
    let moved = text.replace("weaveworksdemos/front-end", registry_image);
    assert_ne!(moved, text);
    std::fs::write(&path, moved).expect("the copy is writable");
    std::fs::write(dir.join("helloworld.yaml"), HELLOWORLD_YAML).expect("writable");
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().skip(1).collect()
}

#[tokio::test]
async fn the_transcripts_work_word_for_word_with_manifests() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), &image);
    let manifests = dir.path().to_str().unwrap();
    let run = |line: &str| {
        let mut args = words(line);
        args.extend(["--manifests", manifests]);
        if args[0] != "list-services" {
            args.push("--no-registry-cache");
        }
        fluxctl(&args)
    };

    let listed = run("fluxctl list-services --namespace=sock-shop");
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains(FRONT_END), "{}", stdout(&listed));
    assert!(!stdout(&listed).contains(HELLOWORLD));

    let images = run("fluxctl list-images --service=sock-shop/front-end");
    assert!(images.status.success(), "{}", stderr(&images));
    assert!(stdout(&images).contains(FRONT_END));
    assert!(stdout(&images).contains("|   0.4.0"), "{}", stdout(&images));

    let released = run("fluxctl release --service=sock-shop/front-end --update-all-images");
    assert!(released.status.success(), "{}", stderr(&released));
    let front_end = std::fs::read_to_string(dir.path().join("09-front-end-dep.yaml")).unwrap();
    assert!(front_end.contains(&format!("{image}:0.4.0")), "{front_end}");

    let released = run(
        "fluxctl release --controller=default:deployment/helloworld --update-image=quay.io/weaveworks/helloworld:master-a000001",
    );
    assert!(released.status.success(), "{}", stderr(&released));
    let hello = std::fs::read_to_string(dir.path().join("helloworld.yaml")).unwrap();
    assert!(
        hello.contains("image: quay.io/weaveworks/helloworld:master-a000001"),
        "{hello}"
    );

    // quay.io is out of reach here: the table still names the workload and
    // the image it runs, and the unread repository fails the run.
    let images = run("fluxctl list-images --controller default:deployment/helloworld");
    let table = stdout(&images);
    assert!(table.contains(HELLOWORLD), "{table}{}", stderr(&images));
    assert!(table.contains("quay.io/weaveworks/helloworld"), "{table}");
    assert!(!table.contains(FRONT_END), "{table}");
}

#[tokio::test]
async fn the_transcripts_work_word_for_word_against_fluxd() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = BareRepo::seeded_with(|work| fill(&work.join("manifests"), &image));
    let include = format!("--registry-include-image={}/*", registry.host());
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[&include]).await;
    let client = fluxd.client();
    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await;
        images.is_ok_and(|i| i[0].containers[0].available.len() == 3)
    })
    .await;
    let run = |line: &str| {
        let mut args = words(line);
        // Without a cluster no commit is ever applied: no need to wait.
        args.extend(["--url", &fluxd.url, "--token", &fluxd.token, "--timeout=1s"]);
        fluxctl(&args)
    };

    let listed = run("fluxctl list-services --namespace=sock-shop");
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains(FRONT_END), "{}", stdout(&listed));
    assert!(!stdout(&listed).contains(HELLOWORLD));

    let images = run("fluxctl list-images --service=sock-shop/front-end");
    assert!(images.status.success(), "{}", stderr(&images));
    assert!(stdout(&images).contains("|   0.4.0"), "{}", stdout(&images));

    let released = run("fluxctl release --service=sock-shop/front-end --update-all-images");
    assert!(
        stdout(&released).contains(&format!("{FRONT_END}  success")),
        "{}{}",
        stdout(&released),
        stderr(&released)
    );
    let pushed = repo.git(&["show", &format!("{BRANCH}:manifests/09-front-end-dep.yaml")]);
    assert!(pushed.contains(&format!("{image}:0.4.0")), "{pushed}");

    let released = run(
        "fluxctl release --controller=default:deployment/helloworld --update-image=quay.io/weaveworks/helloworld:master-a000001",
    );
    assert!(
        stdout(&released).contains(&format!("{HELLOWORLD}  success")),
        "{}{}",
        stdout(&released),
        stderr(&released)
    );
    let pushed = repo.git(&["show", &format!("{BRANCH}:manifests/helloworld.yaml")]);
    assert!(pushed.contains("helloworld:master-a000001"), "{pushed}");

    // fluxd scans only the test registry: quay.io's tags are not known, so
    // the run fails, but the table names the workload and its repository.
    let images = run("fluxctl list-images --controller default:deployment/helloworld");
    let table = stdout(&images);
    assert!(
        table.contains("quay.io/weaveworks/helloworld  not scanned yet"),
        "{table}"
    );
    assert!(table.contains(HELLOWORLD), "{table}");
    assert!(!table.contains(FRONT_END), "{table}");
}

#[test]
fn excluding_two_workloads_with_one_comma_separated_flag_releases_neither() {
    let copy = flux_testkit::sock_shop_copy();
    let dir = copy.path().to_str().unwrap();
    std::fs::write(
        copy.path().join("front-end-canary.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: front-end-canary\n  namespace: sock-shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: front-end\n        image: weaveworksdemos/front-end:0.3.12\n",
    )
    .unwrap();
    let out = fluxctl(&[
        "release",
        "--manifests",
        dir,
        "--all",
        "--update-image=weaveworksdemos/front-end:9.9.9",
        "--exclude=sock-shop:deployment/front-end,sock-shop/front-end-canary",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = ["09-front-end-dep.yaml", "front-end-canary.yaml"];
    for file in files {
        let text = std::fs::read_to_string(copy.path().join(file)).unwrap();
        assert!(!text.contains("9.9.9"), "{file} was released to:\n{text}");
    }

    let bad = fluxctl(&[
        "release",
        "--manifests",
        dir,
        "--all",
        "--update-image=weaveworksdemos/front-end:9.9.9",
        "--exclude=sock-shop:deployment/front-end,name.space:deployment/x",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--exclude name.space:deployment/x: not a workload id"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test]
async fn a_workload_id_that_names_nothing_is_an_error_in_both_modes() {
    let copy = flux_testkit::sock_shop_copy();
    let dir = copy.path().to_str().unwrap();
    let nope = "sock-shop:deployment/nope";
    let offline = fluxctl(&["list-images", "--manifests", dir, "-w", nope]);
    assert_eq!(offline.status.code(), Some(1), "{}", stderr(&offline));
    assert!(stderr(&offline).contains(&format!("no workload {nope}")));
    assert_eq!(stdout(&offline), "");

    let repo = flux_testkit::daemon::sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let online = fluxctl(&["--url", &fluxd.url, "list-images", "-w", nope]);
    assert_eq!(online.status.code(), Some(1), "{}", stderr(&online));
    assert!(stderr(&online).contains(&format!("no workload {nope}")));
    assert_eq!(stdout(&online), "");
}

#[test]
fn malformed_ids_are_refused_before_the_daemon_is_asked() {
    // Nothing listens on port 9: reaching it would exit 1, not 2.
    for args in [
        &["list-images", "-w", "name.space:deployment/x"][..],
        &[
            "release",
            "--workload",
            "name.space:deployment/x",
            "-i",
            "a/b:1",
        ],
        &["automate", "--controller", "front-end"],
        &["lock", "-n", "sock-shop", "-w", "deployment/a b"],
    ] {
        let out = fluxctl(&[&["--url", "http://127.0.0.1:9"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a workload id"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn kind_slash_name_ids_are_read_in_the_namespace_given() {
    let copy = flux_testkit::sock_shop_copy();
    let dir = copy.path().to_str().unwrap();
    let out = fluxctl(&[
        "lock",
        "--manifests",
        dir,
        "-n",
        "sock-shop",
        "-w",
        "deployment/front-end",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{FRONT_END}  success")),
        "{}",
        stdout(&out)
    );
    let text = std::fs::read_to_string(copy.path().join("09-front-end-dep.yaml")).unwrap();
    assert!(text.contains("fluxcd.io/locked"), "{text}");
}

#[tokio::test]
async fn v1_global_and_verb_flags_are_accepted() {
    let repo = flux_testkit::daemon::sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let listed = fluxctl(&[
        "-u",
        &fluxd.url,
        "--context",
        "kind",
        "list-controllers",
        "--output-format",
        "json",
    ]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stderr(&listed).contains("--url is given, so --context are ignored"));
    let _: Vec<flux_api::Workload> = serde_json::from_slice(&listed.stdout).expect("JSON");

    let images = fluxctl(&[
        "-u",
        &fluxd.url,
        "list-images",
        "-c",
        FRONT_END,
        "--no-headers",
    ]);
    // No registry is reachable here, so the run fails; the table is still printed.
    assert!(
        stdout(&images).starts_with(FRONT_END),
        "{}",
        stdout(&images)
    );

    // release's -w is v1's --watch: with -c naming the workload and
    // -f forcing, a watch without a cluster says there is no rollout.
    let released = fluxctl(&[
        "-u",
        &fluxd.url,
        "-t",
        &fluxd.token,
        "release",
        "-c",
        FRONT_END,
        "-i",
        "weaveworksdemos/front-end:0.4.0",
        "-f",
        "-w",
        "--timeout=1s",
    ]);
    assert!(
        stderr(&released).contains("--watch: no rollout to follow without a cluster"),
        "{}",
        stderr(&released)
    );
    assert!(stdout(&released).contains(&format!("{FRONT_END}  success")));
}

#[tokio::test]
async fn identity_regenerate_replaces_the_deploy_key_and_shows_the_new_one() {
    // An ssh URL nobody answers: fluxd makes its key at start either way.
    let port = flux_testkit::git::free_port();
    let url = format!("ssh://git@127.0.0.1:{port}/repo.git");
    // Its own free port: `port + 1` may be taken by another test's server.
    let listen = std::iter::repeat_with(flux_testkit::git::free_port)
        .find(|p| *p != port)
        .expect("a second free port");
    let fluxd = Fluxd::spawn(&binaries::fluxd(), &url, None, listen, &[], &[]).await;
    let before = fluxctl(&["--url", &fluxd.url, "identity"]);
    assert!(before.status.success(), "{}", stderr(&before));
    assert!(
        stdout(&before).starts_with("ssh-ed25519 "),
        "{}",
        stdout(&before)
    );

    let refused = fluxctl(&["--url", &fluxd.url, "identity", "-r"]);
    assert_eq!(refused.status.code(), Some(1), "a new key needs the token");

    let regenerated = fluxctl(&["--url", &fluxd.url, "-t", &fluxd.token, "identity", "-r"]);
    assert!(regenerated.status.success(), "{}", stderr(&regenerated));
    let new = stdout(&regenerated);
    assert!(new.starts_with("ssh-ed25519 "), "{new}");
    assert_ne!(new, stdout(&before));
    let after = fluxctl(&["--url", &fluxd.url, "identity"]);
    assert_eq!(stdout(&after), new, "the API shows the new key");
    let on_disk = std::fs::read_dir(fluxd.data.path().join("ssh"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "pub"))
        .expect("a public key file");
    let key = std::fs::read_to_string(on_disk).unwrap();
    let fields = |text: &str| {
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(fields(&key), fields(&new), "the key fluxd's ssh uses");
}
