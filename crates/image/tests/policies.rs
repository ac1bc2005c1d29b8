//! Tag policies: parsing the annotation strings, admitting tags, and the
//! newest-first order automation picks from.

use flux_image::{Candidate, Policy, PolicyError, Rejection};
use jiff::Timestamp;

fn policy(text: &str) -> Policy {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn admitted(text: &str, tags: &[&str]) -> Vec<String> {
    let verdict = policy(text).judge(tags.iter().map(|t| Candidate::new(*t)));
    verdict.admitted.into_iter().map(|c| c.tag).collect()
}

#[test]
fn policy_strings_choose_their_kind_by_prefix() {
    assert!(matches!(policy("semver:~1.2"), Policy::Semver(_)));
    assert!(matches!(policy("regexp:^v"), Policy::Regex { .. }));
    assert!(matches!(policy("regex:^v"), Policy::Regex { .. }));
    assert!(matches!(policy("glob:master-*"), Policy::Glob(_)));
    assert!(matches!(policy("master-*"), Policy::Glob(_)));
    assert_eq!(policy("regex:^v").to_string(), "regex:^v");
    assert_eq!(policy("master-*").to_string(), "glob:master-*");
}

#[test]
fn any_other_string_is_a_literal_glob() {
    let p = policy("foo:bar");
    assert_eq!(p.to_string(), "glob:foo:bar");
    assert!(p.admits("foo:bar"));
    assert!(!p.admits("foo"));
}

#[test]
fn glob_star_matches_any_run_including_none() {
    for (glob, tag, expected) in [
        ("*", "", true),
        ("*", "anything", true),
        ("master-*", "master-a000001", true),
        ("master-*", "master-", true),
        ("master-*", "main-1", false),
        ("*-alpine", "1.25-alpine", true),
        ("*-alpine", "alpine", false),
        ("1.*.*", "1.2.3", true),
        ("1.*.*", "1.2", false),
        ("a*a", "a", false),
        ("a*a", "aa", true),
        ("*b*", "abc", true),
        ("v?.1", "v1.1", false),
        ("[ab]", "a", false),
        ("[ab]", "[ab]", true),
    ] {
        assert_eq!(
            policy(&format!("glob:{glob}")).admits(tag),
            expected,
            "{glob} on {tag:?}"
        );
    }
}

#[test]
fn regex_is_unanchored_like_go() {
    assert!(policy("regexp:[0-9]+").admits("build-42"));
    assert!(!policy("regexp:^[0-9]+$").admits("build-42"));
    assert!(policy(r"regexp:^v\d+\.\d+$").admits("v1.25"));
}

#[test]
fn invalid_policies_are_refused_with_the_whole_string() {
    let semver = "semver:>=>1.0".parse::<Policy>().unwrap_err();
    assert!(matches!(semver, PolicyError::Semver { .. }));
    assert!(semver.to_string().contains("semver:>=>1.0"), "{semver}");
    let regex = "regexp:(".parse::<Policy>().unwrap_err();
    assert!(matches!(regex, PolicyError::Regex { .. }));
    assert!(regex.to_string().contains("unclosed group"), "{regex}");
    assert!("semver:".parse::<Policy>().is_err());
}

#[test]
fn semver_tilde_admits_the_patch_range_newest_first() {
    assert_eq!(
        admitted(
            "semver:~1.2",
            &["1.2.0", "1.2.9", "v1.2.3", "1.3.0", "1.2.0-rc.1"]
        ),
        ["1.2.9", "v1.2.3", "1.2.0"]
    );
}

#[test]
fn comma_and_space_join_comparators_alike() {
    let tags = ["0.9", "1.0", "1.5.3", "2.0.0", "2.0.0-rc.1", "latest"];
    assert_eq!(
        admitted("semver:>=1.0 <2.0", &tags),
        admitted("semver:>=1.0, <2.0", &tags)
    );
    assert_eq!(admitted("semver:>=1.0 <2.0", &tags), ["1.5.3", "1.0"]);
}

#[test]
fn glob_admits_master_builds_only() {
    assert_eq!(
        admitted("glob:master-*", &["master-a000001", "main-1"]),
        ["master-a000001"]
    );
}

#[test]
fn semver_never_admits_tags_that_are_not_versions() {
    let p = policy("semver:*");
    assert_eq!(p.check("latest"), Err(Rejection::NotAVersion));
    assert_eq!(p.check("master-a000001"), Err(Rejection::NotAVersion));
    assert_eq!(p.check("1.0.0-rc.1"), Err(Rejection::Prerelease));
    assert!(p.admits("0.0.1"));
}

#[test]
fn rejections_explain_themselves() {
    let p = policy("semver:~1.2");
    assert_eq!(
        p.check("1.3.0").unwrap_err().to_string(),
        "outside the range (fails ~1.2)"
    );
    assert_eq!(
        p.check("1.3.0-rc.1").unwrap_err().to_string(),
        "prerelease, and the range has none"
    );
    assert_eq!(
        policy("glob:a*").check("b").unwrap_err(),
        Rejection::GlobMismatch
    );
}

#[test]
fn semver_ties_put_the_more_explicit_tag_first() {
    // One version, four spellings: the tag that sorts last as text is the
    // newest, so a container on `1.0.0` is never "upgraded" to `1.0`.
    assert_eq!(
        admitted("semver:*", &["1", "1.0.0", "v1.0.0", "1.0"]),
        ["v1.0.0", "1.0.0", "1.0", "1"]
    );
}

/// Flux v1's own table for its semver order (`TestImage_OrderBySemverTagDesc`):
/// versions newest first, `1.10.0` before `1.10`, then the tags that are not
/// versions in ascending order.
#[test]
fn semver_order_follows_flux_v1s_table() {
    let p = policy("semver:*");
    let expected = [
        "3",
        "1.10.0",
        "1.10",
        "1.2.30",
        "v1",
        "aaa-not-semver",
        "bbb-not-semver",
    ];
    let mut tags = vec![
        "3",
        "v1",
        "1.10",
        "1.2.30",
        "1.10.0",
        "bbb-not-semver",
        "aaa-not-semver",
    ];
    for _ in 0..2 {
        let mut candidates: Vec<Candidate> = tags.iter().map(|t| Candidate::new(*t)).collect();
        p.sort_newest_first(&mut candidates);
        let sorted: Vec<&str> = candidates.iter().map(|c| c.tag.as_str()).collect();
        assert_eq!(sorted, expected, "from {tags:?}");
        tags.reverse();
    }
}

#[test]
fn build_metadata_is_a_tie_broken_by_tag() {
    assert_eq!(
        admitted(
            "semver:~1.10",
            &["1.10.0", "1.10.0+build.2", "1.10.0+build.1"]
        ),
        ["1.10.0+build.2", "1.10.0+build.1", "1.10.0"]
    );
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_479_484_800 + seconds).unwrap()
}

#[test]
fn glob_orders_by_creation_time_with_unknown_times_last() {
    let p = policy("glob:*");
    let mut candidates = vec![
        Candidate::new("unknown-b"),
        Candidate::created_at("old", at(0)),
        Candidate::new("unknown-a"),
        Candidate::created_at("new", at(60)),
        Candidate::created_at("same-b", at(30)),
        Candidate::created_at("same-a", at(30)),
    ];
    p.sort_newest_first(&mut candidates);
    let tags: Vec<&str> = candidates.iter().map(|c| c.tag.as_str()).collect();
    assert_eq!(
        tags,
        ["new", "same-a", "same-b", "old", "unknown-a", "unknown-b"]
    );
    assert!(p.can_automate(&candidates[0]));
    assert!(
        !p.can_automate(&candidates[4]),
        "a tag with no known time is never picked"
    );
}

#[test]
fn semver_orders_by_version_whatever_the_creation_times() {
    let p = policy("semver:>=0");
    let mut candidates = vec![
        Candidate::created_at("1.0.0", at(100)),
        Candidate::created_at("2.0.0", at(0)),
        Candidate::new("1.5.0"),
    ];
    p.sort_newest_first(&mut candidates);
    let tags: Vec<&str> = candidates.iter().map(|c| c.tag.as_str()).collect();
    assert_eq!(tags, ["2.0.0", "1.5.0", "1.0.0"]);
    assert!(p.can_automate(&candidates[1]));
}

#[test]
fn without_creation_times_glob_keeps_input_order() {
    assert_eq!(admitted("glob:*", &["b", "c", "a"]), ["b", "c", "a"]);
}

#[test]
fn the_default_policy_admits_everything_but_latest() {
    let all = Policy::all();
    assert!(all.is_all());
    assert!(all.admits("master-a000001"));
    assert!(all.admits(""));
    assert_eq!(all.check("latest"), Err(Rejection::Latest));
    assert!(!policy("glob:v*").is_all());
}

/// Flux v1 kept `latest` out of every policy but `latest` itself
/// (`TestImageInfos_Filter_latest`), comparing the tag in any case.
#[test]
fn only_the_policy_latest_admits_latest() {
    for text in ["latest", "glob:latest"] {
        let p = policy(text);
        assert!(p.is_latest(), "{text}");
        assert!(p.admits("latest"), "{text}");
        assert!(!p.admits("v0"), "{text}");
        assert!(!p.admits("Latest"), "{text}: globs are case-sensitive");
    }
    for text in [
        "*",
        "glob:*",
        "glob:lat*",
        "glob:*test",
        "regexp:.*",
        "regex:^latest$",
    ] {
        let p = policy(text);
        assert!(!p.is_latest(), "{text}");
        for tag in ["latest", "LATEST", "Latest"] {
            assert_eq!(p.check(tag), Err(Rejection::Latest), "{text} on {tag}");
        }
    }
    assert!(policy("glob:lat*").admits("latest-but-one"));
    assert_eq!(
        policy("semver:*").check("latest"),
        Err(Rejection::NotAVersion)
    );
}

#[test]
fn the_latest_rejection_says_which_policy_admits_it() {
    assert_eq!(
        Rejection::Latest.to_string(),
        "latest is admitted only by the policy glob:latest"
    );
}
