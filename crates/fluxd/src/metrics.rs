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
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_text_format_with_their_labels() {
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
        let text = metrics.render();
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
}
