//! Semver ranges with the meaning Masterminds/semver v3 gives them. The cases
//! are that library's published behaviour, restated as our own table.

use flux_image::semver::{Range, Version};

/// (range, version, admitted)
const CASES: &[(&str, &str, bool)] = &[
    // equality, with and without wildcards
    ("=2.0.0", "1.2.3", false),
    ("=2.0.0", "2.0.0", true),
    ("2.0.0", "2.0.0", true),
    ("v1.2.3", "1.2.3", true),
    ("4.1", "4.1.0", true),
    ("4.1", "4.1.7", true),
    ("4.1.x", "4.1.3", true),
    ("4.1.x", "4.2.0", false),
    ("1.x", "1.4", true),
    ("1.*", "1.9", true),
    ("1.*", "2.0", false),
    ("1.2.X", "1.2.9", true),
    ("*", "1.2.3", true),
    ("*", "0.0.1", true),
    ("*", "1.2.3-alpha", false),
    ("x", "99.0.0", true),
    // not equal
    ("!=4.1", "4.1.0", false),
    ("!=4.1", "4.1.5", false),
    ("!=4.1", "5.1.0", true),
    ("!=4.1.0", "4.1.1", true),
    ("!=4.1-alpha", "4.1.0", true),
    ("!=4.1", "5.1.0-alpha.1", false),
    // greater, less
    (">1.1", "4.1.0", true),
    (">1.1", "1.1.0", false),
    (">1.1", "1.1.9", false),
    (">1.1", "1.2.0", true),
    (">1", "1.9.9", false),
    (">1", "2.0.0", true),
    (">0", "0.0.1-alpha", false),
    (">0", "1", true),
    (">1.1.0", "1.1.1", true),
    ("<1.1", "0.1.0", true),
    ("<1.1", "1.1.0", false),
    ("<1.1", "1.1.1", false),
    ("<1.1.0", "1.0.9-rc.1", false),
    ("<=1.1", "1.1.1", true),
    ("<=1.1", "0.1.0", true),
    ("<=1.1", "1.2.0", false),
    ("<=1", "1.9.9", true),
    ("<=1.1.0", "1.1.1", false),
    (">=1.1", "4.1.0", true),
    (">=1.1", "1.1.0", true),
    (">=1.1", "0.0.9", false),
    ("=>1.1", "1.1.0", true),
    ("=<1.1", "1.1.0", true),
    (">= 1.2", "1.3.0", true),
    // caret, including the 0.x rules
    ("^1.2.3", "1.8.9", true),
    ("^1.2.3", "2.8.9", false),
    ("^1.2.3", "1.2.1", false),
    ("^1.1.0", "2.1.0", false),
    ("^1.2.0", "1.2.1-alpha.1", false),
    ("^1.2.0-alpha.0", "1.2.1-alpha.1", true),
    ("^1.2.0-alpha.0", "1.2.1-alpha.0", true),
    ("^1.2.0-alpha.2", "1.2.0-alpha.1", false),
    ("^1.2", "1.8.9", true),
    ("^1.2", "2.8.9", false),
    ("^1", "1.8.9", true),
    ("^1", "2.8.9", false),
    ("^1.x", "1.1.1", true),
    ("^1.x", "2.1.1", false),
    ("^0.2.3", "0.2.3", true),
    ("^0.2.3", "0.2.5", true),
    ("^0.2.3", "0.3.0", false),
    ("^0.2.3", "1.0.0", false),
    ("^0.2", "0.2.9", true),
    ("^0.2", "0.3.0", false),
    ("^0.0.3", "0.0.3", true),
    ("^0.0.3", "0.0.4", false),
    ("^0.0", "0.0.9", true),
    ("^0.0", "0.1.0", false),
    ("^0", "0.9.9", true),
    ("^0", "1.0.0", false),
    ("^0.x.x", "0.9.0", true),
    ("^*", "9.0.0", true),
    // tilde
    ("~1.2.3", "1.2.4", true),
    ("~1.2.3", "1.2.2", false),
    ("~1.2.3", "1.3.4", false),
    ("~1.2", "1.2.4", true),
    ("~1.2", "1.3.4", false),
    ("~1", "1.2.4", true),
    ("~1", "2.3.4", false),
    ("~1.x", "1.9.9", true),
    ("~0.2.3", "0.2.5", true),
    ("~0.2.3", "0.3.5", false),
    ("~>1.2.3", "1.2.9", true),
    ("~>1.2.3", "1.3.0", false),
    ("~1.2.3-beta.2", "1.2.3-beta.4", true),
    ("~1.2.3-beta.2", "1.2.4-beta.2", true),
    ("~1.2.3-beta.2", "1.3.4-beta.2", false),
    ("~*", "3.0.0", true),
    // hyphen ranges
    ("1.1 - 2", "1.1.1", true),
    ("1.1 - 2", "2.1.0", true),
    ("1.1 - 3", "4.3.2", false),
    ("1.2.3 - 4.5.6", "4.5.7", false),
    ("1.2.3 - 4.5.6", "1.2.3", true),
    ("1.2 - 1.4.5", "1.4.5", true),
    ("1.2 - 1.4.5", "1.4.6", false),
    ("1.2 - 1.4.5", "1.1.9", false),
    // AND by comma or space, OR by ||
    (">=1.1, <2", "1.5", true),
    (">=1.1, <2", "2.0.0", false),
    (">=1.1 <2", "1.5", true),
    (">=1.1 <2", "2.0.0", false),
    (">=1.1,<2", "1.0.9", false),
    ("1.1 || 4.1", "4.1.0", true),
    ("1.1 || 4.1", "2.0.0", false),
    (">=1.1 <2 || >=3", "3.1", true),
    (">=1.1 <2 || >=3", "2.5", false),
    ("<2 || >=3 <4 || 5.x", "5.3.0", true),
    // prereleases only where the comparator names one
    (">=1.2.3-alpha", "1.2.3-beta", true),
    (">1.2.3-alpha", "1.2.3-alpha", false),
    (">=1.0.0", "1.5.0-rc.1", false),
    // lenient versions on the version side
    ("~1.25", "1.25-alpine", false),
    (">=1.25-a", "1.25-alpine", true),
    (">=1", "v2", true),
];

#[test]
fn ranges_admit_what_masterminds_semver_admits() {
    let mut wrong = Vec::new();
    for (range, version, expected) in CASES {
        let parsed: Range = range.parse().unwrap_or_else(|e| panic!("{range}: {e}"));
        let v: Version = version.parse().unwrap_or_else(|e| panic!("{version}: {e}"));
        if parsed.admits(&v) != *expected {
            wrong.push(format!("{range} on {version}: expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn invalid_ranges_point_at_the_problem() {
    for (range, position) in [
        (">=>1.0", 2),
        ("1.2.3.4", 0),
        ("x1", 0),
        ("~", 0),
        ("1.2 - ", 4),
        ("> 1 ||", 6),
        ("", 0),
        ("1.0 - 2.0 - 3.0", 4),
        (">=1.0 <", 6),
        ("1.2.3-", 0),
        ("a.b.c", 0),
    ] {
        let error = range.parse::<Range>().expect_err(range);
        assert_eq!(error.position, position, "{range}: {error}");
    }
}

#[test]
fn versions_order_by_semver_precedence() {
    let ordered = [
        "0.9.9",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "v1.0.1",
        "1.1",
        "1.10.0",
        "2",
    ];
    let versions: Vec<Version> = ordered.iter().map(|s| s.parse().unwrap()).collect();
    for pair in versions.windows(2) {
        assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
    }
}

#[test]
fn build_metadata_does_not_change_precedence() {
    let a: Version = "1.2.3+build.1".parse().unwrap();
    let b: Version = "1.2.3+build.2".parse().unwrap();
    assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
    assert!(">=1.2.3, <=1.2.3".parse::<Range>().unwrap().admits(&a));
}

#[test]
fn lenient_parsing_accepts_what_users_tag() {
    for (text, canonical) in [
        ("v1.2.3", "1.2.3"),
        ("1.2", "1.2.0"),
        ("1", "1.0.0"),
        ("1.25-alpine", "1.25.0-alpine"),
        ("1.2.3-rc.1+sha.5114f85", "1.2.3-rc.1+sha.5114f85"),
    ] {
        assert_eq!(text.parse::<Version>().unwrap().to_string(), canonical);
    }
    for text in [
        "latest",
        "master-a000001",
        "1.2.3.4",
        "1.02.3-01",
        "v",
        "1.2.3+",
        "1..2",
    ] {
        assert!(text.parse::<Version>().is_err(), "{text}");
    }
}
