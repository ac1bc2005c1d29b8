//! What fluxd serves for other tools passes those tools' own checks:
//! `/metrics` in the Prometheus text format through `promtool check
//! metrics`, its OpenMetrics form (asked for by Accept, as Prometheus asks)
//! through the Python client's OpenMetrics parser, and
//! `/api/openapi.json` through `openapi-spec-validator`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use flux_api::{ImageUpdate, JobSpec, ReleaseSpec, Targets};
use flux_testkit::daemon::{
    FRONT_END, Fluxd, finished, registry_with_front_end, sock_shop_repo, wait_for,
};
use flux_testkit::git::free_port;
use flux_testkit::kube::ApiServer;
use flux_testkit::registry::Registry;

/// The Accept header Prometheus scrapes with.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// Runs `program` with `input` on its standard input.
fn run_with_input(program: &mut Command, input: &str) -> Output {
    let mut child = program
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the checker runs (scripts/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("the checker reads its input");
    child.wait_with_output().expect("the checker finishes")
}

fn report(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Names of the metric families a text exposition declares with `# TYPE`.
fn declared_families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Whether a sample line belongs to `family` (its name, or its name with a
/// histogram's or counter's suffix).
fn has_sample(text: &str, family: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|line| {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        name == family
            || ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family))
    })
}

/// A fluxd syncing the API server double, which has scanned the registry,
/// released a new front-end tag and applied it: every metric family then
/// has a sample.
struct Busy {
    fluxd: Fluxd,
    /// `http://<--listen-metrics>`.
    metrics_url: String,
    _cluster: ApiServer,
    _registry: Registry,
}

async fn busy_fluxd() -> Busy {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let cluster = ApiServer::start();
    let include = format!("--registry-include-image={}/*", registry.host());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let listen_metrics = format!("--listen-metrics={metrics_addr}");
    let fluxd = Fluxd::start_with_cluster(
        fluxd_binary(),
        &repo,
        &cluster.kubeconfig(),
        &[&include, &listen_metrics],
    )
    .await;
    let client = fluxd.client();
    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await;
        images.is_ok_and(|i| i[0].containers[0].available.len() == 3)
    })
    .await;
    let release = JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![FRONT_END.into()]),
        exclude: Vec::new(),
        update: ImageUpdate::Image(format!("{image}:0.4.0")),
        force: false,
        dry_run: false,
        message: None,
        user: None,
        containers: Default::default(),
    });
    let submitted = client
        .submit(&release)
        .await
        .expect("the release is queued");
    finished(&client, &submitted.id).await;
    wait_for("the release applied", || async {
        let job = client.job(&submitted.id).await.expect("the job is kept");
        job.timeline.applied.is_some()
    })
    .await;
    Busy {
        fluxd,
        metrics_url: format!("http://{metrics_addr}"),
        _cluster: cluster,
        _registry: registry,
    }
}

/// `/metrics` of `base` with `accept`: the content type and the text.
async fn scrape(base: &str, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(accept) = accept {
        request = request.header(reqwest::header::ACCEPT, accept);
    }
    let response = request.send().await.expect("fluxd answers /metrics");
    assert!(response.status().is_success(), "{}", response.status());
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (content_type, response.text().await.expect("a text body"))
}

#[tokio::test]
async fn metrics_pass_promtool_and_the_openmetrics_parser_with_a_sample_in_every_family() {
    let busy = busy_fluxd().await;
    let bases = [busy.fluxd.url.as_str(), busy.metrics_url.as_str()];

    for (base, accept) in bases
        .iter()
        .flat_map(|base| [None, Some("text/plain"), Some("*/*")].map(|accept| (*base, accept)))
    {
        let (content_type, text) = scrape(base, accept).await;
        let families = declared_families(&text);
        assert!(families.len() >= 8, "{text}");
        for family in &families {
            assert!(has_sample(&text, family), "{family} has no sample:\n{text}");
        }
        let checked = run_with_input(Command::new("promtool").args(["check", "metrics"]), &text);
        assert!(checked.status.success(), "{}\n{text}", report(&checked));
        assert!(
            checked.stdout.is_empty() && checked.stderr.is_empty(),
            "promtool found problems: {}\n{text}",
            report(&checked)
        );
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{base} with Accept {accept:?}"
        );
    }

    for base in bases {
        let (content_type, text) = scrape(base, Some(PROMETHEUS_ACCEPT)).await;
        assert_eq!(
            content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "{base}"
        );
        check_openmetrics(&text);
    }
}

/// Parses `text` with the Python client's OpenMetrics parser, which refuses
/// anything the OpenMetrics format does not allow.
fn check_openmetrics(text: &str) {
    let parse = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(sys.stdin.read()))\n\
        print(len(families))\n";
    let parsed = run_with_input(Command::new("python3").args(["-c", parse]), text);
    assert!(parsed.status.success(), "{}\n{text}", report(&parsed));
    let count: usize = String::from_utf8_lossy(&parsed.stdout)
        .trim()
        .parse()
        .expect("the parser prints a count");
    assert_eq!(count, declared_families(text).len(), "{text}");
}

#[tokio::test]
async fn the_openapi_document_passes_openapi_spec_validator() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[]).await;
    let document = reqwest::get(format!("{}/api/openapi.json", fluxd.url))
        .await
        .expect("fluxd answers /api/openapi.json")
        .text()
        .await
        .expect("a text body");
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("a temporary file");
    std::fs::write(file.path(), &document).expect("the document is written");
    let checked = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all"])
        .arg(file.path())
        .output()
        .expect("openapi-spec-validator runs (scripts/test installs it)");
    assert!(checked.status.success(), "{}\n{document}", report(&checked));
}
