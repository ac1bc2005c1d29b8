//! The scanner against the real CNCF distribution registry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flux_image::{Glob, Name};
use flux_registry::{
    Cache, Client, ClientConfig, Credential, Credentials, Platform, ScanConfig, Scanner,
};
use flux_testkit::registry::{Flavour, ImageSpec, Registry};

fn name(registry: &Registry, repository: &str) -> Name {
    registry.image(repository).parse().expect("valid name")
}

fn scanner_with(cache: Cache, credentials: Credentials, config: ScanConfig) -> Scanner {
    let client = ClientConfig {
        backoff: Duration::from_millis(10),
        ..ClientConfig::default()
    };
    Scanner::new(
        Arc::new(Client::new(client, credentials)),
        Arc::new(cache),
        config,
    )
}

fn scanner(config: ScanConfig) -> Scanner {
    scanner_with(Cache::in_memory(), Credentials::none(), config)
}

fn time(text: &str) -> Option<jiff::Timestamp> {
    Some(text.parse().expect("valid time"))
}

#[tokio::test]
async fn cold_scan_reads_creation_times_digests_and_platforms_of_every_media_type() {
    let registry = Registry::start();
    let docker_digest = registry
        .push_image("app", "docker", &ImageSpec::created("2016-11-18T16:00:00Z"))
        .await;
    registry
        .push_image(
            "app",
            "oci",
            &ImageSpec::created("2017-01-02T03:04:05Z").oci(),
        )
        .await;
    let specs = [
        ImageSpec::created("2018-05-05T05:05:05Z"),
        ImageSpec::created("2019-06-06T06:06:06Z").platform("linux", "arm64"),
    ];
    registry
        .push_index("app", "multi", Flavour::Docker, &specs)
        .await;
    let oci_specs: Vec<ImageSpec> = specs.iter().cloned().map(ImageSpec::oci).collect();
    registry
        .push_index("app", "multi-oci", Flavour::Oci, &oci_specs)
        .await;
    registry
        .push_image(
            "app",
            "arm-only",
            &ImageSpec::created("2020-01-01T00:00:00Z").platform("linux", "arm64"),
        )
        .await;

    let scanner = scanner(ScanConfig::default());
    let result = scanner.poll_repository(&name(&registry, "app")).await;
    let info = result.info;
    assert_eq!(info.error, None);
    let tags: Vec<&str> = info.tags.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, ["arm-only", "docker", "multi", "multi-oci", "oci"]);

    let docker = info.tag("docker").unwrap();
    assert_eq!(docker.created, time("2016-11-18T16:00:00Z"));
    assert_eq!(docker.digest.as_deref(), Some(docker_digest.as_str()));
    assert_eq!(docker.platform, Some(Platform::linux_amd64()));
    assert_eq!(
        info.tag("oci").unwrap().created,
        time("2017-01-02T03:04:05Z")
    );

    for tag in ["multi", "multi-oci"] {
        let multi = info.tag(tag).unwrap();
        assert_eq!(multi.created, time("2018-05-05T05:05:05Z"), "{tag}");
        assert_eq!(
            multi.platforms.len(),
            2,
            "{tag}: every platform is recorded"
        );
        assert_eq!(multi.platform, Some(Platform::linux_amd64()));
        assert_ne!(
            multi.image_digest, multi.digest,
            "the selected image is the amd64 entry"
        );
    }

    let arm_only = info.tag("arm-only").unwrap();
    assert!(!arm_only.runs_here());
    assert_eq!(arm_only.created, None);
    let candidates: Vec<String> = info.candidates().into_iter().map(|c| c.tag).collect();
    assert!(!candidates.contains(&"arm-only".to_string()));
}

#[tokio::test]
async fn wanted_platform_list_picks_the_first_offered() {
    let registry = Registry::start();
    let specs = [
        ImageSpec::created("2018-05-05T05:05:05Z"),
        ImageSpec::created("2019-06-06T06:06:06Z").platform("linux", "arm64"),
    ];
    registry
        .push_index("app", "multi", Flavour::Oci, &specs)
        .await;
    let scanner = scanner(ScanConfig {
        platforms: vec!["linux/arm64".parse().unwrap(), Platform::linux_amd64()],
        ..ScanConfig::default()
    });
    let info = scanner.poll_repository(&name(&registry, "app")).await.info;
    let multi = info.tag("multi").unwrap();
    assert_eq!(multi.platform, Some("linux/arm64".parse().unwrap()));
    assert_eq!(multi.created, time("2019-06-06T06:06:06Z"));
}

#[tokio::test]
async fn labels_win_only_for_images_named_in_use_labels() {
    let registry = Registry::start();
    let spec = ImageSpec::created("2016-01-01T00:00:00Z")
        .label("org.opencontainers.image.created", "2021-02-03T04:05:06Z");
    registry.push_image("labelled", "1", &spec).await;
    registry.push_image("plain", "1", &spec).await;
    let legacy = ImageSpec::created("2016-01-01T00:00:00Z")
        .label("org.label-schema.build-date", "2019-09-09T09:09:09Z");
    registry.push_image("labelled", "2", &legacy).await;

    let scanner = scanner(ScanConfig {
        use_labels: vec![Glob::new("*/labelled")],
        ..ScanConfig::default()
    });
    let labelled = scanner
        .poll_repository(&name(&registry, "labelled"))
        .await
        .info;
    assert_eq!(
        labelled.tag("1").unwrap().created,
        time("2021-02-03T04:05:06Z")
    );
    assert_eq!(
        labelled.tag("2").unwrap().created,
        time("2019-09-09T09:09:09Z")
    );
    let plain = scanner
        .poll_repository(&name(&registry, "plain"))
        .await
        .info;
    assert_eq!(
        plain.tag("1").unwrap().created,
        time("2016-01-01T00:00:00Z")
    );
}

#[tokio::test]
async fn second_poll_with_nothing_new_costs_one_tags_request_per_repository() {
    let registry = Registry::start();
    let repositories = ["a", "b", "c"];
    for repository in repositories {
        for i in 0..5 {
            let created = format!("2020-01-0{}T00:00:00Z", i + 1);
            registry
                .push_image(repository, &format!("v{i}"), &ImageSpec::created(&created))
                .await;
        }
    }
    let names: Vec<Name> = repositories.iter().map(|r| name(&registry, r)).collect();
    let scanner = scanner(ScanConfig::default());
    let counters = scanner.client().counters();

    let first = scanner.poll(&names).await;
    assert!(
        first
            .iter()
            .all(|r| r.info.error.is_none() && r.info.tags.len() == 5)
    );
    assert!(
        first.iter().all(|r| r.new_tags.is_empty()),
        "the first poll is the baseline"
    );
    // One tags page, then one manifest and one config per tag.
    assert_eq!(counters.total(), 3 * (1 + 5 * 2));

    let before = counters.total();
    let second = scanner.poll(&names).await;
    assert_eq!(counters.total() - before, 3);
    assert!(second.iter().all(|r| r.new_tags.is_empty()));

    // A new tag costs its manifest and config only; a new tag on a known
    // image costs its manifest and no config.
    let digest = registry
        .push_image("a", "v9", &ImageSpec::created("2021-01-01T00:00:00Z"))
        .await;
    registry
        .retag("b", &second_digest(&second, "b", "v1"), "again")
        .await;
    let before = counters.total();
    let third = scanner.poll(&names).await;
    assert_eq!(counters.total() - before, 3 + 2 + 1);
    let events: Vec<(String, String)> = third
        .iter()
        .flat_map(|r| {
            r.new_tags
                .iter()
                .map(|e| (e.name.path().to_string(), e.tag.clone()))
        })
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.contains(&("a".into(), "v9".into())));
    assert!(events.contains(&("b".into(), "again".into())));
    let a = third.iter().find(|r| r.info.name.path() == "a").unwrap();
    let v9 = a.new_tags.iter().find(|e| e.tag == "v9").unwrap();
    assert_eq!(v9.digest, digest);
    assert_eq!(v9.created, time("2021-01-01T00:00:00Z"));
}

fn second_digest(results: &[flux_registry::PollResult], repository: &str, tag: &str) -> String {
    results
        .iter()
        .find(|r| r.info.name.path() == repository)
        .and_then(|r| r.info.tag(tag))
        .and_then(|t| t.digest.clone())
        .expect("tag was scanned")
}

#[tokio::test]
async fn registry_ignoring_the_page_size_gives_every_tag_in_one_request() {
    // distribution 2.8 answers tags lists whole, whatever `n` says.
    let registry = Registry::start();
    let digest = registry
        .push_image("many", "t000", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    for i in 1..53 {
        registry.retag("many", &digest, &format!("t{i:03}")).await;
    }
    let client = Client::new(
        ClientConfig {
            page_size: 10,
            ..ClientConfig::default()
        },
        Credentials::none(),
    );
    let tags = client.list_tags(&name(&registry, "many")).await.unwrap();
    assert_eq!(tags.len(), 53);
    assert_eq!(tags.iter().collect::<BTreeSet<_>>().len(), 53);
    assert_eq!(client.counters().total(), 1);
}

#[tokio::test]
async fn latest_is_rechecked_with_head_and_a_move_is_reported() {
    let registry = Registry::start();
    let first = registry
        .push_image("app", "latest", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    registry
        .push_image("app", "1.0", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    let scanner = scanner(ScanConfig {
        recheck_min: Duration::ZERO,
        ..ScanConfig::default()
    });
    let counters = scanner.client().counters();
    let app = name(&registry, "app");
    scanner.poll_repository(&app).await;

    let before = counters.total();
    let quiet = scanner.poll_repository(&app).await;
    assert!(quiet.new_tags.is_empty());
    assert_eq!(
        counters.total() - before,
        2,
        "tags list and one HEAD of latest"
    );

    let second = registry
        .push_image("app", "latest", &ImageSpec::created("2021-01-01T00:00:00Z"))
        .await;
    let moved = scanner.poll_repository(&app).await;
    assert_eq!(moved.new_tags.len(), 1);
    let event = &moved.new_tags[0];
    assert_eq!(event.tag, "latest");
    assert_eq!(event.digest, second);
    assert_eq!(event.previous.as_deref(), Some(first.as_str()));
    assert_eq!(
        moved.info.tag("latest").unwrap().created,
        time("2021-01-01T00:00:00Z")
    );
}

#[tokio::test]
async fn movable_tags_back_off_while_they_hold_still() {
    let registry = Registry::start();
    registry
        .push_image("app", "latest", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    let scanner = scanner(ScanConfig {
        recheck_min: Duration::from_secs(3600),
        ..ScanConfig::default()
    });
    let counters = scanner.client().counters();
    let app = name(&registry, "app");
    scanner.poll_repository(&app).await;
    let before = counters.total();
    scanner.poll_repository(&app).await;
    assert_eq!(
        counters.total() - before,
        1,
        "latest is not due for a re-check yet"
    );
}

#[tokio::test]
async fn cache_file_spares_every_manifest_and_config_after_a_restart() {
    let registry = Registry::start();
    for i in 0..4 {
        registry
            .push_image(
                "app",
                &format!("v{i}"),
                &ImageSpec::created("2020-01-01T00:00:00Z"),
            )
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let app = name(&registry, "app");
    {
        let scanner = scanner_with(
            Cache::open(&path),
            Credentials::none(),
            ScanConfig::default(),
        );
        scanner.poll_repository(&app).await;
    }
    let scanner = scanner_with(
        Cache::open(&path),
        Credentials::none(),
        ScanConfig::default(),
    );
    let result = scanner.poll_repository(&app).await;
    assert_eq!(scanner.client().counters().total(), 1);
    assert_eq!(result.info.tags.len(), 4);
    assert!(result.info.tags.iter().all(|t| t.created.is_some()));
    assert!(result.new_tags.is_empty());
}

#[tokio::test]
async fn a_failing_repository_records_its_error_and_the_others_are_scanned() {
    let registry = Registry::start();
    registry
        .push_image("good", "1", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    let scanner = scanner(ScanConfig::default());
    let names = [name(&registry, "missing"), name(&registry, "good")];
    let results = scanner.poll(&names).await;
    let missing = results
        .iter()
        .find(|r| r.info.name.path() == "missing")
        .unwrap();
    let error = missing.info.error.as_deref().unwrap();
    assert!(
        error.contains("404") && error.contains("NAME_UNKNOWN"),
        "{error}"
    );
    let good = results
        .iter()
        .find(|r| r.info.name.path() == "good")
        .unwrap();
    assert_eq!(good.info.error, None);
    assert_eq!(good.info.tags.len(), 1);
    assert_eq!(
        scanner.info(&names[0]).error.as_deref(),
        Some(error),
        "kept in the cache"
    );
}

#[tokio::test]
async fn basic_auth_uses_credentials_and_says_so_without() {
    let registry = Registry::start_with_basic_auth("flux", "s3cret");
    registry
        .push_image("private", "1", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    let private = name(&registry, "private");

    let anonymous = scanner(ScanConfig::default());
    let refused = anonymous.poll_repository(&private).await.info;
    let error = refused.error.unwrap();
    assert!(error.contains("401"), "{error}");

    let mut credentials = Credentials::none();
    credentials.insert(
        &registry.host(),
        Credential {
            username: "flux".into(),
            password: "s3cret".into(),
        },
    );
    let scanner = scanner_with(Cache::in_memory(), credentials, ScanConfig::default());
    scanner.client().ping(&registry.host()).await.unwrap();
    let info = scanner.poll_repository(&private).await.info;
    assert_eq!(info.error, None);
    assert_eq!(info.tag("1").unwrap().created, time("2020-01-01T00:00:00Z"));
}

#[tokio::test]
async fn docker_config_credentials_reach_the_registry() {
    let registry = Registry::start_with_basic_auth("flux", "s3cret");
    registry
        .push_image("private", "1", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    let config = format!(
        r#"{{"auths":{{"http://{}":{{"auth":"Zmx1eDpzM2NyZXQ="}}}}}}"#,
        registry.host()
    );
    let credentials = Credentials::from_docker_config(&config, "config.json").unwrap();
    let scanner = scanner_with(Cache::in_memory(), credentials, ScanConfig::default());
    let info = scanner
        .poll_repository(&name(&registry, "private"))
        .await
        .info;
    assert_eq!(info.error, None);
}

#[tokio::test]
async fn include_and_exclude_globs_choose_what_is_scanned() {
    let registry = Registry::start();
    for repository in ["team/a", "team/b", "other/c"] {
        registry
            .push_image(repository, "1", &ImageSpec::created("2020-01-01T00:00:00Z"))
            .await;
    }
    let scanner = scanner(ScanConfig {
        include: vec![Glob::new("*/team/*")],
        exclude: vec![Glob::new("*/team/b")],
        ..ScanConfig::default()
    });
    let names: Vec<Name> = ["team/a", "team/b", "other/c"]
        .iter()
        .map(|r| name(&registry, r))
        .collect();
    let results = scanner.poll(&names).await;
    let scanned: Vec<&str> = results.iter().map(|r| r.info.name.path()).collect();
    assert_eq!(scanned, ["team/a"]);
}

#[tokio::test]
async fn run_loop_sends_new_tags_on_the_channel() {
    let registry = Registry::start();
    registry
        .push_image("app", "1", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    let scanner = scanner(ScanConfig {
        poll_interval: Duration::from_millis(200),
        ..ScanConfig::default()
    });
    let (images_tx, images_rx) =
        tokio::sync::watch::channel(BTreeSet::from([name(&registry, "app")]));
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(async move { scanner.run(images_rx, events_tx).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry
        .push_image("app", "2", &ImageSpec::created("2021-01-01T00:00:00Z"))
        .await;
    let event = tokio::time::timeout(Duration::from_secs(10), events_rx.recv())
        .await
        .expect("an event within 10s")
        .expect("channel open");
    assert_eq!(event.tag, "2");
    assert_eq!(event.created, time("2021-01-01T00:00:00Z"));
    drop(images_tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop ends when the image set is gone")
        .unwrap();
}

#[tokio::test]
async fn a_broken_tag_is_retried_at_the_next_poll_then_later_or_when_a_change_names_it() {
    let registry = Registry::start();
    registry
        .push_image("app", "good", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    registry
        .push_image("app", "broken", &ImageSpec::created("2020-01-02T00:00:00Z"))
        .await;
    let app = name(&registry, "app");
    let scanner = scanner(ScanConfig::default());
    let fetched = scanner.client().get_manifest(&app, "broken").await.unwrap();
    let flux_registry::manifest::Manifest::Image { config } = fetched.manifest else {
        panic!("an image manifest")
    };
    registry.delete_blob("app", &config).await;

    let counters = scanner.client().counters();
    let before = counters.total();
    let first = scanner.poll_repository(&app).await;
    let error = first.info.tag("broken").unwrap().error.clone().unwrap();
    assert!(error.contains("404"), "{error}");
    assert_eq!(first.info.tag("good").unwrap().error, None);
    assert!(first.info.tag("good").unwrap().created.is_some());
    assert!(counters.total() - before > 1);

    // A tag listed an instant before its manifest is served looks the same:
    // the next poll tries it again.
    let before = counters.total();
    let second = scanner.poll_repository(&app).await;
    assert!(counters.total() - before > 1, "the next poll retries it");
    assert!(second.info.tag("broken").unwrap().error.is_some());

    let before = counters.total();
    let third = scanner.poll_repository(&app).await;
    assert_eq!(
        counters.total() - before,
        1,
        "then the broken tag waits for its retry"
    );
    assert!(third.info.tag("broken").unwrap().error.is_some());

    // A change naming the repository (a registry notification, whose tag
    // may be listed before it is served) tries it again at once.
    let before = counters.total();
    let named = scanner.poll_repository_after_change(&app).await;
    assert!(counters.total() - before > 1, "a change retries it now");
    assert!(named.info.tag("broken").unwrap().error.is_some());
    let before = counters.total();
    scanner.poll_repository(&app).await;
    assert_eq!(counters.total() - before, 1, "and the wait goes on after");
}

#[tokio::test]
async fn update_all_plan_from_a_real_scan_skips_tags_without_the_platform() {
    use flux_registry::{ContainerImage, plan_update_all};
    let registry = Registry::start();
    registry
        .push_image("app", "1.0.0", &ImageSpec::created("2020-01-01T00:00:00Z"))
        .await;
    let both = [
        ImageSpec::created("2021-01-01T00:00:00Z"),
        ImageSpec::created("2021-01-01T00:00:00Z").platform("linux", "arm64"),
    ];
    registry
        .push_index("app", "1.1.0", Flavour::Oci, &both)
        .await;
    let arm_only = [ImageSpec::created("2022-01-01T00:00:00Z").platform("linux", "arm64")];
    registry
        .push_index("app", "1.2.0", Flavour::Oci, &arm_only)
        .await;
    registry
        .push_image(
            "app",
            "nightly",
            &ImageSpec {
                created: None,
                ..ImageSpec::created("")
            },
        )
        .await;

    let scanner = scanner(ScanConfig::default());
    let app = name(&registry, "app");
    let info = scanner.poll_repository(&app).await.info;
    let repositories = std::collections::HashMap::from([(app.clone(), info)]);
    let container = |policy: &str| ContainerImage {
        workload: "default:deployment/app".into(),
        container: "app".into(),
        image: app.with_tag("1.0.0").unwrap(),
        policy: policy.parse().unwrap(),
    };
    let plan = plan_update_all(
        &[container("semver:^1"), container("glob:*")],
        &repositories,
    );
    let targets: Vec<String> = plan
        .iter()
        .map(|u| u.to.tag().unwrap().to_string())
        .collect();
    assert_eq!(
        targets,
        ["1.1.0", "1.1.0"],
        "1.2.0 has no linux/amd64 image; nightly has no time"
    );
}
