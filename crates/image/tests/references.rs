//! Image references against the distribution reference grammar and Docker's
//! normalisation. The cases are facts of that grammar, written as our own table.

use flux_image::{ImageRef, Name, Problem};

const SHA: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// (input, canonical form, familiar form)
const VALID: &[(&str, &str, &str)] = &[
    ("nginx", "docker.io/library/nginx", "nginx"),
    ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
    (
        "library/nginx:1.25",
        "docker.io/library/nginx:1.25",
        "nginx:1.25",
    ),
    (
        "docker.io/library/nginx:1.25",
        "docker.io/library/nginx:1.25",
        "nginx:1.25",
    ),
    ("index.docker.io/nginx", "docker.io/library/nginx", "nginx"),
    (
        "weaveworksdemos/front-end:0.3.12",
        "docker.io/weaveworksdemos/front-end:0.3.12",
        "weaveworksdemos/front-end:0.3.12",
    ),
    (
        "docker.io/weaveworks/flux:1.0",
        "docker.io/weaveworks/flux:1.0",
        "weaveworks/flux:1.0",
    ),
    (
        "quay.io/weaveworks/flux:1.0",
        "quay.io/weaveworks/flux:1.0",
        "quay.io/weaveworks/flux:1.0",
    ),
    ("test_com", "docker.io/library/test_com", "test_com"),
    (
        "test.com:tag",
        "docker.io/library/test.com:tag",
        "test.com:tag",
    ),
    (
        "test.com:5000",
        "docker.io/library/test.com:5000",
        "test.com:5000",
    ),
    (
        "test.com/repo:tag",
        "test.com/repo:tag",
        "test.com/repo:tag",
    ),
    ("test:5000/repo", "test:5000/repo", "test:5000/repo"),
    (
        "test:5000/repo:tag",
        "test:5000/repo:tag",
        "test:5000/repo:tag",
    ),
    ("localhost/repo", "localhost/repo", "localhost/repo"),
    (
        "localhost:5000/a/b/c:v1",
        "localhost:5000/a/b/c:v1",
        "localhost:5000/a/b/c:v1",
    ),
    (
        "127.0.0.1:5000/repo",
        "127.0.0.1:5000/repo",
        "127.0.0.1:5000/repo",
    ),
    (
        "[2001:db8::1]:5000/repo:tag",
        "[2001:db8::1]:5000/repo:tag",
        "[2001:db8::1]:5000/repo:tag",
    ),
    (
        "[2001:db8::1]/repo",
        "[2001:db8::1]/repo",
        "[2001:db8::1]/repo",
    ),
    (
        "foo_bar.com:8080",
        "docker.io/library/foo_bar.com:8080",
        "foo_bar.com:8080",
    ),
    (
        "foo/foo_bar.com:8080",
        "docker.io/foo/foo_bar.com:8080",
        "foo/foo_bar.com:8080",
    ),
    (
        "a--b/c__d/e.f/g_h",
        "docker.io/a--b/c__d/e.f/g_h",
        "a--b/c__d/e.f/g_h",
    ),
    ("Example.COM/repo", "Example.COM/repo", "Example.COM/repo"),
    ("repo:_tag", "docker.io/library/repo:_tag", "repo:_tag"),
    ("docker.io/0.0/a", "docker.io/0.0/a", "docker.io/0.0/a"),
    (
        "docker.io/localhost/a",
        "docker.io/localhost/a",
        "docker.io/localhost/a",
    ),
    (
        "repo:Tag.With-Dots_1",
        "docker.io/library/repo:Tag.With-Dots_1",
        "repo:Tag.With-Dots_1",
    ),
];

#[test]
fn valid_references_normalise_to_canonical_and_familiar_forms() {
    for (input, canonical, familiar) in VALID {
        let image = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(image.canonical(), *canonical, "canonical of {input}");
        assert_eq!(image.familiar(), *familiar, "familiar of {input}");
        assert_eq!(
            ImageRef::parse(canonical).unwrap(),
            image,
            "{canonical} equals {input}"
        );
    }
}

#[test]
fn digests_stand_alone_or_after_a_tag() {
    let by_digest = ImageRef::parse(&format!("test:5000/repo@{SHA}")).unwrap();
    assert_eq!(by_digest.tag(), None);
    assert_eq!(by_digest.digest(), Some(SHA));
    let both = ImageRef::parse(&format!("nginx:1.25@{SHA}")).unwrap();
    assert_eq!(both.tag(), Some("1.25"));
    assert_eq!(both.digest(), Some(SHA));
    assert_eq!(both.familiar(), format!("nginx:1.25@{SHA}"));
    let sha512 = format!("sha512:{}", "0".repeat(128));
    assert_eq!(
        ImageRef::parse(&format!("repo@{sha512}")).unwrap().digest(),
        Some(sha512.as_str())
    );
}

/// (input, position, problem)
fn invalid() -> Vec<(String, usize, Problem)> {
    let hex64 = "a".repeat(64);
    vec![
        (String::new(), 0, Problem::Empty),
        (":justtag".into(), 0, Problem::Empty),
        (format!("@{SHA}"), 0, Problem::Empty),
        ("Uppercase:tag".into(), 0, Problem::Uppercase),
        ("docker.io/Library/nginx".into(), 10, Problem::Uppercase),
        ("aa/asdf$$^/aa".into(), 7, Problem::Unexpected('$')),
        ("a___b".into(), 1, Problem::BadComponent),
        ("a-_b".into(), 1, Problem::BadComponent),
        ("_a".into(), 0, Problem::BadComponent),
        ("a.".into(), 1, Problem::BadComponent),
        ("a//b".into(), 2, Problem::BadComponent),
        ("repo/".into(), 5, Problem::BadComponent),
        ("-host.com/repo".into(), 0, Problem::BadHost),
        ("host.com:port/repo".into(), 9, Problem::BadPort),
        ("repo:".into(), 5, Problem::BadTag),
        ("repo:-tag".into(), 5, Problem::BadTag),
        ("repo:.tag".into(), 5, Problem::BadTag),
        ("repo:ta$g".into(), 7, Problem::BadTag),
        (
            format!("repo:{}", "a".repeat(129)),
            5 + 128,
            Problem::BadTag,
        ),
        (
            "repo@sha256:abc".into(),
            12,
            Problem::BadDigest("wrong length for algorithm"),
        ),
        (
            format!("repo@md5:{}", "0".repeat(32)),
            5,
            Problem::BadDigest("unsupported algorithm"),
        ),
        (
            format!("repo@sha256:{}", "F".repeat(64)),
            12,
            Problem::BadDigest("hex must be lowercase"),
        ),
        (
            format!("repo@sha256:{}", "g".repeat(64)),
            12,
            Problem::BadDigest("expected hex digits"),
        ),
        (
            "repo@nocolon".into(),
            5,
            Problem::BadDigest("expected algorithm:hex"),
        ),
        (hex64, 0, Problem::HexName),
        (
            format!("{}/{}", "a".repeat(128), "b".repeat(127)),
            255,
            Problem::TooLong,
        ),
    ]
}

#[test]
fn invalid_references_say_what_is_wrong_and_where() {
    for (input, position, problem) in invalid() {
        let error = ImageRef::parse(&input).expect_err(&input);
        assert_eq!(
            (error.position, &error.problem),
            (position, &problem),
            "{input}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("at position {position}")),
            "{message}"
        );
    }
}

#[test]
fn names_of_255_characters_are_the_limit() {
    let name = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(name.len(), 255);
    assert!(ImageRef::parse(&name).is_ok());
}

#[test]
fn docker_hub_is_called_on_its_api_host() {
    let hub = ImageRef::parse("nginx").unwrap();
    assert_eq!(hub.name().registry(), "docker.io");
    assert_eq!(hub.name().api_host(), "registry-1.docker.io");
    let quay = ImageRef::parse("quay.io/a/b").unwrap();
    assert_eq!(quay.name().api_host(), "quay.io");
}

#[test]
fn equality_and_hashing_use_the_canonical_form() {
    use std::collections::HashSet;
    let set: HashSet<ImageRef> = [
        "nginx:1",
        "library/nginx:1",
        "docker.io/library/nginx:1",
        "index.docker.io/library/nginx:1",
    ]
    .iter()
    .map(|s| ImageRef::parse(s).unwrap())
    .collect();
    assert_eq!(set.len(), 1);
    assert_ne!(
        ImageRef::parse("nginx:1").unwrap(),
        ImageRef::parse("nginx:2").unwrap()
    );
}

#[test]
fn a_repository_name_refuses_a_tag_or_digest() {
    let name: Name = "weaveworksdemos/front-end".parse().unwrap();
    assert_eq!(name.to_string(), "docker.io/weaveworksdemos/front-end");
    assert!("nginx:1.25".parse::<Name>().is_err());
    assert!(format!("nginx@{SHA}").parse::<Name>().is_err());
    assert_eq!(
        name.with_tag("0.3.13").unwrap().familiar(),
        "weaveworksdemos/front-end:0.3.13"
    );
}

#[test]
fn references_serialise_as_canonical_strings() {
    let image = ImageRef::parse("nginx:1.25").unwrap();
    let json = serde_json::to_string(&image).unwrap();
    assert_eq!(json, "\"docker.io/library/nginx:1.25\"");
    assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), image);
    assert!(serde_json::from_str::<ImageRef>("\"Bad:ref\"").is_err());
}

#[test]
fn names_order_by_registry_then_path() {
    let short: Name = "a.b/zz".parse().unwrap();
    let long: Name = "a.b.c/aa".parse().unwrap();
    assert_eq!((short.registry(), short.path()), ("a.b", "zz"));
    assert!(short < long, "the registry a.b sorts before a.b.c");
    assert_eq!(
        format!("{short:?}"),
        r#"Name { registry: "a.b", path: "zz" }"#
    );
}

#[test]
fn a_shared_name_is_taken_only_from_the_same_repository() {
    let mut image = ImageRef::parse("nginx:1.25").unwrap();
    image.share_name(&"quay.io/other".parse().unwrap());
    assert_eq!(image.canonical(), "docker.io/library/nginx:1.25");
    image.share_name(&"docker.io/library/nginx".parse().unwrap());
    assert_eq!(image.canonical(), "docker.io/library/nginx:1.25");
}
