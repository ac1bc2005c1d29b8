//! The sock-shop manifests: every workload, container and image is found.

use flux_manifests::{Checkout, LoadError, LoadOptions, ResourceId};

const EXPECTED: &[(&str, &str, &str)] = &[
    (
        "sock-shop:deployment/carts",
        "carts",
        "weaveworksdemos/carts:0.4.8",
    ),
    ("sock-shop:deployment/carts-db", "carts-db", "mongo"),
    (
        "sock-shop:deployment/catalogue",
        "catalogue",
        "weaveworksdemos/catalogue:0.3.5",
    ),
    (
        "sock-shop:deployment/catalogue-db",
        "catalogue-db",
        "weaveworksdemos/catalogue-db:0.3.0",
    ),
    (
        "sock-shop:deployment/front-end",
        "front-end",
        "weaveworksdemos/front-end:0.3.12",
    ),
    (
        "sock-shop:deployment/orders",
        "orders",
        "weaveworksdemos/orders:0.4.7",
    ),
    ("sock-shop:deployment/orders-db", "orders-db", "mongo"),
    (
        "sock-shop:deployment/payment",
        "payment",
        "weaveworksdemos/payment:0.4.3",
    ),
    (
        "sock-shop:deployment/queue-master",
        "queue-master",
        "weaveworksdemos/queue-master:0.3.1",
    ),
    (
        "sock-shop:deployment/rabbitmq",
        "rabbitmq",
        "rabbitmq:3.6.8-management",
    ),
    (
        "sock-shop:deployment/rabbitmq",
        "rabbitmq-exporter",
        "kbudde/rabbitmq-exporter",
    ),
    (
        "sock-shop:deployment/session-db",
        "session-db",
        "redis:alpine",
    ),
    (
        "sock-shop:deployment/shipping",
        "shipping",
        "weaveworksdemos/shipping:0.4.8",
    ),
    (
        "sock-shop:deployment/user",
        "user",
        "weaveworksdemos/user:0.4.7",
    ),
    (
        "sock-shop:deployment/user-db",
        "user-db",
        "weaveworksdemos/user-db:0.3.0",
    ),
];

fn listed(checkout: &Checkout) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = checkout
        .workloads
        .iter()
        .flat_map(|w| {
            w.containers
                .iter()
                .map(|c| (w.id.to_string(), c.name.clone(), c.spelling.clone()))
        })
        .collect();
    rows.sort();
    rows
}

fn expected() -> Vec<(String, String, String)> {
    EXPECTED
        .iter()
        .map(|(w, c, i)| (w.to_string(), c.to_string(), i.to_string()))
        .collect()
}

#[test]
fn every_sock_shop_workload_container_and_image_is_listed() {
    let checkout = Checkout::load(
        &[flux_testkit::sock_shop_manifests()],
        LoadOptions::default(),
    );
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    assert_eq!(listed(&checkout), expected());
    assert_eq!(checkout.files.len(), 29);
}

#[test]
fn sock_shop_services_and_the_namespace_are_resources_with_original_ids() {
    let checkout = Checkout::load(
        &[flux_testkit::sock_shop_manifests()],
        LoadOptions::default(),
    );
    let ids: Vec<String> = checkout
        .resources
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert!(ids.contains(&"<cluster>:namespace/sock-shop".to_string()));
    assert!(ids.contains(&"sock-shop:service/front-end".to_string()));
    assert_eq!(ids.len(), 29);
}

#[test]
fn the_complete_demo_file_holds_the_same_workloads_in_one_multi_document_file() {
    let file = flux_testkit::shared_fixtures().join("sock-shop/complete-demo.yaml");
    let checkout = Checkout::load(&[file], LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    assert_eq!(listed(&checkout), expected());
}

#[test]
fn loading_both_copies_reports_each_duplicate_with_both_files() {
    let fixtures = flux_testkit::shared_fixtures().join("sock-shop");
    let checkout = Checkout::load(
        &[
            fixtures.join("manifests"),
            fixtures.join("complete-demo.yaml"),
        ],
        LoadOptions::default(),
    );
    let front_end: ResourceId = "sock-shop:deployment/front-end".parse().unwrap();
    let duplicate = checkout
        .errors
        .iter()
        .find(|e| matches!(e, LoadError::Duplicate { id, .. } if *id == front_end))
        .expect("front-end is reported as a duplicate");
    let message = duplicate.to_string();
    assert!(message.contains("09-front-end-dep.yaml"), "{message}");
    assert!(message.contains("complete-demo.yaml"), "{message}");
    // The first definition is kept, once.
    assert_eq!(
        checkout
            .workloads
            .iter()
            .filter(|w| w.id == front_end)
            .count(),
        1
    );
}
