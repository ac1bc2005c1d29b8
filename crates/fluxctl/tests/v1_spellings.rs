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
