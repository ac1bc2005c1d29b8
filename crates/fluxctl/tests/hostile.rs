//! `fluxctl --manifests` on a hostile repo: the path out or the file past a
//! limit is refused on standard error by name, nothing of what lies outside
//! shows, and the verbs still work on the rest of the repo.

use std::path::Path;
use std::process::{Command, Output};

use flux_testkit::hostile::{Case, GOOD, Outside, SECRET};

/// `fluxctl <args> --manifests <repo>`, with the case's `--git-path`s.
fn fluxctl(case: Case, repo: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fluxctl"));
    command.args(args).arg("--manifests").arg(repo);
    if case.git_paths() != ["."] {
        command.arg("--git-path").arg(case.git_paths().join(","));
    }
    command.output().expect("fluxctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("fluxctl writes UTF-8")
}

fn hostile_repo(case: Case) -> (tempfile::TempDir, Outside) {
    let outside = Outside::new();
    let repo = tempfile::tempdir().expect("a temporary folder");
    case.fill(repo.path(), &outside);
    (repo, outside)
}

#[test]
fn list_workloads_refuses_each_hostile_file_by_name_and_lists_the_rest() {
    for case in Case::ALL {
        let (repo, outside) = hostile_repo(case);
        let output = fluxctl(case, repo.path(), &["list-workloads", "-n", "default"]);
        let (out, err) = (text(&output.stdout), text(&output.stderr));
        assert!(
            !output.status.success(),
            "{case:?}: a refusal fails the run"
        );
        assert_eq!(
            err,
            format!("fluxctl: {}/{}\n", repo.path().display(), case.error()),
            "{case:?}"
        );
        assert!(out.contains(GOOD), "{case:?}: {out}");
        for shown in [&out, &err] {
            assert!(!shown.contains(SECRET), "{case:?}: {shown}");
            assert!(
                !shown.contains(&*outside.dir().to_string_lossy()),
                "{case:?}: {shown}"
            );
        }
    }
}

#[test]
fn release_edits_the_rest_of_a_hostile_repo_and_leaves_what_is_outside() {
    for case in [Case::SymlinkAbsolute, Case::SymlinkFolder, Case::AliasBomb] {
        let (repo, outside) = hostile_repo(case);
        let secret_before = std::fs::read_to_string(outside.secret_file()).expect("it reads");
        let output = fluxctl(
            case,
            repo.path(),
            &[
                "release",
                "--workload",
                GOOD,
                "--update-image",
                "docker.io/library/nginx:1.27",
            ],
        );
        let err = text(&output.stderr);
        assert!(err.contains(case.message().as_str()), "{case:?}: {err}");
        let good = std::fs::read_to_string(repo.path().join("apps/good.yaml")).expect("it reads");
        assert!(good.contains("nginx:1.27"), "{case:?}: {good}\n{err}");
        let secret_after = std::fs::read_to_string(outside.secret_file()).expect("it reads");
        assert_eq!(secret_before, secret_after, "{case:?}");
    }
}

#[test]
fn a_git_path_out_of_the_repo_is_refused_however_it_is_spelled() {
    let (repo, outside) = hostile_repo(Case::GitPathOut);
    let absolute = outside.dir().to_string_lossy().into_owned();
    for (given, why) in [
        ("outside", "it is a symlink out of the checkout"),
        ("../elsewhere", "it leads out of the checkout"),
        (absolute.as_str(), "it is not inside the checkout"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
            .args(["list-workloads", "-n", "default", "--manifests"])
            .arg(repo.path())
            .args(["--git-path", "apps", "--git-path", given])
            .output()
            .expect("fluxctl runs");
        let err = text(&output.stderr);
        let shown = if given.starts_with('/') {
            given.to_string()
        } else {
            repo.path().join(given).display().to_string()
        };
        assert_eq!(
            err,
            format!("fluxctl: {shown}: refused: {why}\n"),
            "{given}"
        );
        assert!(text(&output.stdout).contains(GOOD), "{given}");
    }
}

#[test]
fn the_file_size_limit_is_a_flag() {
    let (repo, _outside) = hostile_repo(Case::HugeFile);
    let output = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args([
            "list-workloads",
            "--manifest-max-file-size",
            "8MiB",
            "--manifests",
        ])
        .arg(repo.path())
        .output()
        .expect("fluxctl runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args([
            "list-workloads",
            "--manifest-max-file-size",
            "4 MB",
            "--manifests",
        ])
        .arg(repo.path())
        .output()
        .expect("fluxctl runs");
    assert!(
        text(&output.stderr).contains("invalid size \"4 MB\""),
        "{}",
        text(&output.stderr)
    );
}
