//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a sync run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `success` or `error`.
    pub result: String,
}

/// Labels of a job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `release` or `policy`.
    pub kind: String,
    /// `succeeded` or `failed`.
    pub status: String,
}

/// Labels of registry requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// Registry host.
    pub host: String,
    /// HTTP status code, or `error` when there was no answer.
    pub status: String,
}

/// Labels of job steps.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// `queued`, `committed`, `pushed`, `applied`, `ready`.
    pub step: String,
}

/// Labels of notification deliveries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `webhook`, `slack`, `teams`, `discord` or `events` (Kubernetes Events).
    pub endpoint: String,
    /// `delivered`, `retried` or `dropped`.
    pub result: String,
}

impl NotificationLabels {
    /// The labels of one outcome at one kind of endpoint.
    pub fn new(endpoint: &str, result: &str) -> NotificationLabels {
        NotificationLabels {
            endpoint: endpoint.to_string(),
            result: result.to_string(),
        }
    }
}

/// Every metric fluxd exports.
pub struct Metrics {
    registry: Registry,
    /// Sync duration by result.
    pub sync_duration: Family<SyncLabels, Histogram>,
    /// Job duration by kind and status.
    pub job_duration: Family<JobLabels, Histogram>,
    /// Jobs waiting to run.
    pub queue_length: Gauge,
    /// Registry requests by host and status.
    pub registry_requests: Family<RegistryLabels, Counter>,
    /// Manifests and config blobs answered from the cache.
    pub cache_hits: Counter,
    /// Seconds from a commit being pushed to it being applied.
    pub push_to_applied: Histogram,
    /// Seconds from a job's start (or the tag first seen) to each step.
    pub job_step: Family<StepLabels, Histogram>,
    /// 1 when the git repo is ready (cloned and writable unless read-only).
    pub git_ready: Gauge,
    /// Notification deliveries by endpoint kind and outcome.
    pub notifications: Family<NotificationLabels, Counter>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0].into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `flux` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flux");
        let sync_duration = Family::<SyncLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let job_duration = Family::<JobLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let job_step = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let queue_length = Gauge::default();
        let registry_requests = Family::<RegistryLabels, Counter>::default();
        let cache_hits = Counter::default();
        let push_to_applied = Histogram::new(latency_buckets());
        let git_ready = Gauge::default();
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "sync_duration_seconds",
            "Duration of sync runs",
            sync_duration.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Duration of jobs",
            job_duration.clone(),
        );
        registry.register(
            "job_step_seconds",
            "Time from a job's start to each of its steps",
            job_step.clone(),
        );
        registry.register(
            "job_queue_length",
            "Jobs waiting to run",
            queue_length.clone(),
        );
        registry.register(
            "registry_requests",
            "Registry requests by host and status",
            registry_requests.clone(),
        );
        registry.register(
            "registry_cache_hits",
            "Manifests and config blobs answered from the cache",
            cache_hits.clone(),
        );
        registry.register(
            "push_to_applied_seconds",
            "Time from a commit pushed to it applied",
            push_to_applied.clone(),
        );
        registry.register(
            "git_ready",
            "1 when the git repo is ready",
            git_ready.clone(),
        );
        registry.register(
            "notifications",
            "Notification deliveries (and Kubernetes Events) by endpoint kind and result",
            notifications.clone(),
        );
        Metrics {
            registry,
            sync_duration,
            job_duration,
            queue_length,
            registry_requests,
            cache_hits,
            push_to_applied,
            job_step,
            git_ready,
            notifications,
        }
    }

    /// The metrics in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut openmetrics = String::new();
        prometheus_client::encoding::text::encode(&mut openmetrics, &self.registry)
            .expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => openmetrics,
            Format::Prometheus => prometheus_text(&openmetrics),
        }
    }
}

/// The two text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text exposition format 0.0.4: what `promtool`, older
    /// scrapers and people with curl read.
    Prometheus,
    /// OpenMetrics 1.0.0 text, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: the acceptable one with the
    /// highest quality, the Prometheus text format when the header names
    /// neither (or is absent).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut offers: Vec<(f32, Format)> = accept
            .unwrap_or_default()
            .split(',')
            .filter_map(Format::from_media_range)
            .filter(|(quality, _)| *quality > 0.0)
            .collect();
        // Stable: of equal qualities the one listed first wins.
        offers.sort_by(|a, b| b.0.total_cmp(&a.0));
        offers
            .first()
            .map_or(Format::Prometheus, |(_, format)| *format)
    }

    /// The format a media range of `Accept` names, with its quality.
    fn from_media_range(range: &str) -> Option<(f32, Format)> {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next()?.to_ascii_lowercase();
        let mut quality = 1.0;
        let mut version = None;
        for parameter in parts {
            let Some((key, value)) = parameter.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.parse().ok()?,
                "version" => version = Some(value.to_string()),
                _ => {}
            }
        }
        let format = match (media_type.as_str(), version.as_deref()) {
            ("application/openmetrics-text", None | Some("1.0.0")) => Format::OpenMetrics,
            ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", None) => Format::Prometheus,
            _ => return None,
        };
        Some((quality, format))
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The Prometheus text format 0.0.4 of the OpenMetrics text the registry
/// writes. For what fluxd registers (counters, gauges and histograms, with
/// no units and no exemplars) samples read the same in both; they differ in
/// a counter family's name (`foo` in OpenMetrics, `foo_total`, its
/// samples' name, in 0.0.4), in the names of some types, and in the `# EOF`
/// that ends an OpenMetrics exposition.
fn prometheus_text(openmetrics: &str) -> String {
    let mut text = String::with_capacity(openmetrics.len());
    // OpenMetrics puts HELP before TYPE; the name HELP carries is only
    // known once TYPE has said what kind of family it is.
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').map_or("", |(_, help)| help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_string(), "untyped"),
                kind => (name.to_string(), kind),
            };
            if let Some(help) = help.take() {
                text.push_str(&format!("# HELP {name} {help}\n"));
            }
            text.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled() -> Metrics {
        let metrics = Metrics::new();
        metrics
            .registry_requests
            .get_or_create(&RegistryLabels {
                host: "127.0.0.1:5000".into(),
                status: "200".into(),
            })
            .inc_by(3);
        metrics.push_to_applied.observe(0.4);
        metrics.git_ready.set(1);
        metrics
    }

    #[test]
    fn metrics_render_in_the_prometheus_text_format_with_their_labels() {
        let text = sampled().render(Format::Prometheus);
        assert!(
            text.contains(r#"flux_registry_requests_total{host="127.0.0.1:5000",status="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("flux_push_to_applied_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(text.contains("flux_git_ready 1"), "{text}");
    }

    #[test]
    fn a_counter_family_is_named_after_its_samples_in_prometheus_text_and_without_total_in_openmetrics()
     {
        let prometheus = sampled().render(Format::Prometheus);
        assert!(
            prometheus.contains(
                "# HELP flux_registry_requests_total Registry requests by host and status.\n\
                 # TYPE flux_registry_requests_total counter\n"
            ),
            "{prometheus}"
        );
        assert!(!prometheus.contains("# EOF"), "{prometheus}");

        let openmetrics = sampled().render(Format::OpenMetrics);
        assert!(
            openmetrics.contains("# TYPE flux_registry_requests counter\n"),
            "{openmetrics}"
        );
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    }

    #[test]
    fn the_accept_header_picks_the_format_with_the_highest_quality() {
        let prometheus_scraper = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, format) in [
            (None, Format::Prometheus),
            (Some(""), Format::Prometheus),
            (Some("*/*"), Format::Prometheus),
            (Some("text/plain"), Format::Prometheus),
            (Some(prometheus_scraper), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("text/plain;version=0.0.4;q=0.5, application/openmetrics-text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.2, text/plain;q=0.9"),
                Format::Prometheus,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Prometheus),
            // A version fluxd does not write is not taken.
            (
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Prometheus,
            ),
            (Some("application/json"), Format::Prometheus),
        ] {
            assert_eq!(Format::negotiate(accept), format, "Accept: {accept:?}");
        }
    }
}
