//! The dashboard in a real browser: headless chromium, driven through
//! chromedriver, against a real fluxd on a bare repo seeded with the
//! sock-shop manifests, a real registry holding front-end's tags, and the
//! Kubernetes API server double with its simulated controller rolling
//! Deployments out. Screenshots of the views land in `target/ui-screenshots/`.

#[path = "ui/browser.rs"]
mod browser;

use browser::Browser;
use flux_api::JobStatus;
use flux_testkit::daemon::{FRONT_END, Fluxd, wait_for};
use flux_testkit::git::{BRANCH, BareRepo};
use flux_testkit::kube::{ApiServer, Controller};
use flux_testkit::registry::{ImageSpec, Registry};
use serde_json::json;

/// A registry with three front-end tags, the sock-shop repo running the
/// oldest, the cluster double with its controller, and fluxd syncing it.
struct World {
    _registry: Registry,
    repo: BareRepo,
    _controller: Controller,
    _cluster: ApiServer,
    fluxd: Fluxd,
    /// `<registry>/sock-shop/front-end`.
    image: String,
}

impl World {
    async fn start() -> World {
        let registry = Registry::start();
        for (tag, created) in [
            ("0.3.12", "2016-11-18T16:00:00Z"),
            ("0.3.13", "2017-01-10T10:00:00Z"),
            ("0.4.0", "2017-03-01T10:00:00Z"),
        ] {
            registry
                .push_image("sock-shop/front-end", tag, &ImageSpec::created(created))
                .await;
        }
        let image = registry.image("sock-shop/front-end");
        let repo = flux_testkit::daemon::sock_shop_repo(Some(&format!("{image}:0.3.12")));
        let cluster = ApiServer::start();
        let controller = Controller::start(&cluster);
        let include = format!("--registry-include-image={}/*", registry.host());
        let fluxd = Fluxd::start_with_cluster(
            std::path::Path::new(env!("CARGO_BIN_EXE_fluxd")),
            &repo,
            &cluster.kubeconfig(),
            &[&include],
        )
        .await;
        let client = fluxd.client();
        wait_for("the registry's tags in the view", || async {
            let images = client.images(&[FRONT_END.to_string()], None).await;
            images.is_ok_and(|i| i[0].containers[0].available.len() == 3)
        })
        .await;
        World {
            _registry: registry,
            repo,
            _controller: controller,
            _cluster: cluster,
            fluxd,
            image,
        }
    }

    /// A browser on the dashboard, once its first page of workloads is shown.
    async fn browser(&self) -> Browser {
        let browser = Browser::start(1400, 1000).await;
        browser
            .client
            .goto(&format!("{}/", self.fluxd.url))
            .await
            .expect("the browser opens the dashboard");
        browser.until_text(&row(FRONT_END), "front-end").await;
        browser.until_text("#live", "live").await;
        browser
    }

    /// The changed lines of the commits after `before`, `-` and `+` alike.
    fn changed_lines_since(&self, before: &str) -> Vec<String> {
        self.repo
            .git(&["diff", "--unified=0", before, BRANCH])
            .lines()
            .filter(|l| l.starts_with(['-', '+']) && !l.starts_with("---") && !l.starts_with("+++"))
            .map(str::to_string)
            .collect()
    }
}

/// The CSS selector of a workload's first row.
fn row(id: &str) -> String {
    format!("tr[data-workload={}]", json!(id))
}

/// Marks the page, so a later check can tell it was never reloaded.
async fn mark(browser: &Browser) {
    browser.run("window.notReloaded = true; return true;").await;
}

async fn still_marked(browser: &Browser) -> bool {
    browser.run("return window.notReloaded === true;").await == json!(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_the_sock_shop_workloads_with_their_images_and_rollouts() {
    let world = World::start().await;
    let browser = world.browser().await;
    let workloads = world.fluxd.client().workloads(None).await.expect("listed");
    assert!(workloads.len() > 10, "sock-shop has its many services");
    let script = format!(
        "return document.querySelectorAll('tbody th[scope=row]').length === {};",
        workloads.len()
    );
    browser.until("every workload to be listed", &script).await;
    for workload in &workloads {
        let text = browser.text(&row(&workload.id)).await;
        assert!(
            text.contains(&workload.id),
            "{} is listed: {text}",
            workload.id
        );
        let image = &workload.containers[0].image;
        assert!(
            text.contains(image.as_str()),
            "{} shows {image}: {text}",
            workload.id
        );
    }
    browser.until_text(&row(FRONT_END), "ready").await;
    browser.screenshot("workloads").await;

    // The search narrows the listing to what matches, by id or image.
    browser.type_into("#search", "front").await;
    browser
        .until(
            "the search to leave front-end alone",
            "return document.querySelectorAll('tbody th[scope=row]').length === 1;",
        )
        .await;
    assert!(browser.text("#count").await.starts_with("1 workload"));

    // A workload's images: newest first, the running one and the newer marked.
    browser
        .click(&format!("{} .workload-name", row(FRONT_END)))
        .await;
    browser.until_text("#containers", "0.4.0").await;
    let tags = browser.text("#containers table.tags tbody").await;
    let order: Vec<&str> = ["0.4.0", "0.3.13", "0.3.12"]
        .into_iter()
        .map(|tag| {
            let at = tags
                .find(tag)
                .unwrap_or_else(|| panic!("{tag} listed: {tags}"));
            (at, tag)
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    assert_eq!(order, ["0.4.0", "0.3.13", "0.3.12"], "{tags}");
    assert!(
        tags.contains("0.3.12\t2016-11-18T16:00:00Z\trunning"),
        "{tags}"
    );
    assert!(
        tags.contains("0.4.0\t2017-03-01T10:00:00Z\tnewer"),
        "{tags}"
    );

    // The policy editor previews what a policy admits as it is typed.
    let policy = "#policy-front-end";
    browser
        .run(&format!(
            "document.querySelector('{policy}').value = ''; return true;"
        ))
        .await;
    browser.type_into(policy, "semver:~0.3").await;
    browser
        .until_text(
            ".policy-preview",
            "semver:~0.3 admits 2, leaves out 1: 0.3.13, 0.3.12",
        )
        .await;
    browser.screenshot("images").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_previewed_line_by_line_then_committed_and_the_row_follows_it_to_ready() {
    let world = World::start().await;
    let before = world.repo.head(BRANCH);
    let browser = world.browser().await;
    mark(&browser).await;

    browser
        .click(&format!("{} .workload-name", row(FRONT_END)))
        .await;
    browser.until_text("#containers", "0.3.13").await;
    browser.click("label[for='tag-front-end-1']").await;
    browser.click("#containers button.release").await;
    // The token is asked for once, for this tab.
    browser
        .until(
            "the token dialog",
            "return document.getElementById('token-dialog').open;",
        )
        .await;
    browser.type_into("#token-input", &world.fluxd.token).await;
    browser.click("#token-use").await;

    browser
        .until(
            "the preview",
            "return document.getElementById('release-dialog').open;",
        )
        .await;
    let image = &world.image;
    browser
        .until_text("#release-lines", &format!("+ image: {image}:0.3.13"))
        .await;
    let preview = browser.text("#release-lines").await;
    assert!(
        preview.contains(&format!("- image: {image}:0.3.12")),
        "{preview}"
    );
    assert!(
        preview.contains("manifests/09-front-end-dep.yaml"),
        "{preview}"
    );
    assert_eq!(
        browser.text("#release-summary").await,
        "1 line will change."
    );
    browser.screenshot("release-preview").await;
    assert_eq!(world.repo.head(BRANCH), before, "a preview commits nothing");

    browser.click("#release-confirm").await;
    browser
        .until_text(&row(FRONT_END), &format!("{image}:0.3.13"))
        .await;
    let client = world.fluxd.client();
    wait_for("the release's rollout to be ready", || async {
        let jobs = client.jobs().await.expect("jobs are listed");
        jobs.iter().any(|j| j.timeline.ready.is_some())
    })
    .await;
    let script = format!(
        "const row = document.querySelector({}); \
         return !!row && row.querySelector('td.running').innerText === {} \
             && row.querySelector('td.status').innerText.startsWith('ready 1/1');",
        json!(row(FRONT_END)),
        json!(format!("{image}:0.3.13"))
    );
    browser
        .until("the row to show the new tag running, ready", &script)
        .await;
    assert!(still_marked(&browser).await, "the page was not reloaded");

    assert_eq!(
        world
            .repo
            .git(&["rev-list", "--count", &format!("{before}..{BRANCH}")])
            .trim(),
        "1",
        "one commit"
    );
    assert_eq!(
        world.changed_lines_since(&before),
        [
            format!("-        image: {image}:0.3.12"),
            format!("+        image: {image}:0.3.13"),
        ]
    );
    browser.screenshot("released").await;

    browser.click("#nav-activity").await;
    browser.until_text("#jobs", "succeeded").await;
    browser.until_text("#jobs .timeline", "ready").await;
    browser.screenshot("activity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_with_a_message_and_nothing_changes() {
    let world = World::start().await;
    let before = world.repo.head(BRANCH);
    let browser = world.browser().await;
    browser
        .run("sessionStorage.setItem('fluxd-api-token', 'not-the-token'); return true;")
        .await;

    browser
        .click(&format!("{} .workload-name", row(FRONT_END)))
        .await;
    browser.until_text("#detail-title", FRONT_END).await;
    browser.click("#lock").await;
    browser
        .until_text(
            "#message",
            "fluxd refused the API token (missing or wrong bearer token); nothing was changed",
        )
        .await;
    browser.click("#containers button.release").await;
    browser.until_text("#token-dialog", "API token").await;
    browser
        .until(
            "the refused token to be forgotten, so the next action asks again",
            "return document.getElementById('token-dialog').open \
                 && sessionStorage.getItem('fluxd-api-token') === null;",
        )
        .await;
    browser.screenshot("wrong-token").await;

    let jobs = world.fluxd.client().jobs().await.expect("jobs are listed");
    assert!(jobs.is_empty(), "no job was queued: {jobs:?}");
    assert_eq!(world.repo.head(BRANCH), before, "nothing was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_shows_the_lock_in_the_row() {
    let world = World::start().await;
    let before = world.repo.head(BRANCH);
    let browser = world.browser().await;
    mark(&browser).await;
    let token = json!(world.fluxd.token);
    browser
        .run(&format!(
            "sessionStorage.setItem('fluxd-api-token', {token}); return true;"
        ))
        .await;

    browser
        .click(&format!("{} .workload-name", row(FRONT_END)))
        .await;
    browser.until_text("#detail-title", FRONT_END).await;
    browser
        .type_into("#lock-message", "Holding for the demo")
        .await;
    browser.click("#lock").await;
    browser
        .until_text(
            &format!("{} td.policies", row(FRONT_END)),
            "locked: Holding for the demo",
        )
        .await;
    browser.until_text("#lock", "Unlock").await;
    assert!(still_marked(&browser).await, "the page was not reloaded");
    let client = world.fluxd.client();
    let job = client.jobs().await.expect("jobs are listed").remove(0);
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    let message = world.repo.git(&["log", "-1", "--format=%B", BRANCH]);
    assert!(message.contains("Holding for the demo"), "{message}");
    assert_eq!(
        world.changed_lines_since(&before),
        [
            "+  annotations:",
            "+    fluxcd.io/locked: \"true\"",
            "+    fluxcd.io/locked_msg: Holding for the demo",
        ],
    );
    browser.screenshot("locked").await;
}
