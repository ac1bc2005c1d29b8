//! `fluxctl check-policy`, run as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn fluxctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fluxctl starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("fluxctl finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn admitted_tags_print_newest_first() {
    let out = fluxctl(
        &[
            "check-policy",
            "semver:~1.2",
            "1.2.0",
            "1.2.9",
            "v1.2.3",
            "1.3.0",
            "1.2.0-rc.1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "1.2.9\nv1.2.3\n1.2.0\n");
}

#[test]
fn explain_says_why_each_rejected_tag_was_rejected() {
    let out = fluxctl(
        &[
            "check-policy",
            "--explain",
            "semver:~1.2",
            "1.2.0",
            "1.3.0",
            "1.2.0-rc.1",
            "latest",
        ],
        None,
    );
    assert_eq!(
        stdout(&out),
        "1.2.0\n1.3.0: outside the range (fails ~1.2)\n1.2.0-rc.1: prerelease, and the range has none\nlatest: not a version\n"
    );
}

#[test]
fn tags_come_from_stdin_when_none_are_given() {
    let out = fluxctl(
        &["check-policy", "glob:master-*"],
        Some("master-a000001\nmain-1\n\nmaster-b000002\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "master-a000001\nmaster-b000002\n");
}

#[test]
fn comma_and_space_ranges_print_the_same() {
    let tags = ["0.9", "1.0", "1.5.3", "2.0.0"];
    let space = fluxctl(
        &[&["check-policy", "semver:>=1.0 <2.0"][..], &tags].concat(),
        None,
    );
    let comma = fluxctl(
        &[&["check-policy", "semver:>=1.0, <2.0"][..], &tags].concat(),
        None,
    );
    assert_eq!(stdout(&space), "1.5.3\n1.0\n");
    assert_eq!(stdout(&space), stdout(&comma));
}

#[test]
fn json_output_lists_admitted_and_rejected() {
    let out = fluxctl(
        &[
            "check-policy",
            "-o",
            "json",
            "glob:master-*",
            "master-a000001",
            "main-1",
        ],
        None,
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        report,
        serde_json::json!({
            "policy": "glob:master-*",
            "admitted": ["master-a000001"],
            "rejected": [{"tag": "main-1", "reason": "does not match the glob"}],
        })
    );
}

#[test]
fn no_admitted_tag_exits_1() {
    let out = fluxctl(&["check-policy", "semver:^2", "1.0.0", "latest"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
}

#[test]
fn an_invalid_policy_exits_2_and_points_at_the_problem() {
    for (policy, hint) in [
        ("semver:>=>1.0", "position 2"),
        ("regexp:(", "unclosed group"),
    ] {
        let out = fluxctl(&["check-policy", policy, "1.0.0"], None);
        assert_eq!(out.status.code(), Some(2), "{policy}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(policy) && stderr.contains(hint), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn latest_is_refused_by_every_policy_but_latest() {
    let out = fluxctl(
        &[
            "check-policy",
            "--explain",
            "glob:*",
            "latest",
            "1.0",
            "LATEST",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "1.0\nlatest: latest is admitted only by the policy glob:latest\nLATEST: latest is admitted only by the policy glob:latest\n"
    );

    let out = fluxctl(&["check-policy", "latest", "latest", "1.0"], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "latest\n");
}
