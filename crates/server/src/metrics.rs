//! The server's Prometheus metrics: API calls by action and outcome, exports by status, and
//! the collectors this process runs. Rendered in the OpenMetrics text format for `/metrics`.

use crate::state::AppState;
use gpdiag_core::CollectorHealth;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    action: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabel {
    instance: String,
}

type InstanceGauges = Family<InstanceLabel, Gauge>;

/// The collectors' figures, from their health reports: set at each scrape.
#[derive(Default)]
struct CollectorGauges {
    lag_bytes: InstanceGauges,
    log_files: InstanceGauges,
    log_records: InstanceGauges,
    bad_log_records: InstanceGauges,
    running_queries: InstanceGauges,
    sampler_connected: InstanceGauges,
    last_sample: InstanceGauges,
    last_error: InstanceGauges,
}

impl CollectorGauges {
    /// Each family with its metric name (after the `gpdiag_` prefix) and help text.
    fn described(&self) -> [(&'static str, &'static str, &InstanceGauges); 8] {
        [
            (
                "collector_lag_bytes",
                "Log bytes not read yet",
                &self.lag_bytes,
            ),
            (
                "collector_log_files",
                "Log files in the log directory",
                &self.log_files,
            ),
            (
                "collector_log_records",
                "Query records read from the logs since this process took the instance",
                &self.log_records,
            ),
            (
                "collector_bad_log_records",
                "Unreadable log records skipped since this process took the instance",
                &self.bad_log_records,
            ),
            (
                "collector_running_queries",
                "Queries running at the last activity sample",
                &self.running_queries,
            ),
            (
                "collector_sampler_connected",
                "1 when the activity sampler is connected",
                &self.sampler_connected,
            ),
            (
                "collector_last_sample_timestamp_seconds",
                "When the last activity sample was taken (Unix time)",
                &self.last_sample,
            ),
            (
                "collector_last_error_timestamp_seconds",
                "When the collector last reported an error (Unix time)",
                &self.last_error,
            ),
        ]
    }
}

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<ActionLabel, Histogram>,
    exports: Family<StatusLabel, Gauge>,
    collectors: CollectorGauges,
    /// The instances this process collects, and the owner name its collectors report under.
    collected: Vec<String>,
    owner: String,
    /// One scrape at a time: each clears and refills the gauges.
    scrape: tokio::sync::Mutex<()>,
}

impl Metrics {
    pub fn new(collected: Vec<String>, owner: String) -> Self {
        let mut registry = Registry::with_prefix("gpdiag");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "api_calls",
            "API calls answered, by action (empty when the action is unknown) and result code (OK or the error code)",
            calls.clone(),
        );
        let latency = Family::<ActionLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "api_call_duration_seconds",
            "Time to answer an API call, by action",
            latency.clone(),
        );
        let exports = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "exports",
            "Export tasks in the store, by status",
            exports.clone(),
        );
        let collectors = CollectorGauges::default();
        for (name, help, family) in collectors.described() {
            registry.register(name, help, family.clone());
        }
        Self {
            registry,
            calls,
            latency,
            exports,
            collectors,
            collected,
            owner,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts one answered API call. `action` is empty when it was not a known action, so the
    /// label values stay a small fixed set whatever clients send.
    pub fn observe_call(&self, action: &'static str, code: &'static str, elapsed: Duration) {
        self.calls.get_or_create(&CallLabels { action, code }).inc();
        self.latency
            .get_or_create(&ActionLabel { action })
            .observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text: the counters as they are, the gauges read now.
    pub async fn render(&self, state: &AppState) -> String {
        let _one = self.scrape.lock().await;
        for (status, count) in state.registry.task_counts() {
            self.exports
                .get_or_create(&StatusLabel {
                    status: status.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.render_collectors(state).await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Only the instances this process collects now: in a multi-node deployment each node
    /// reports its own, so sums across nodes count every instance once.
    async fn render_collectors(&self, state: &AppState) {
        let c = &self.collectors;
        for (_, _, family) in c.described() {
            family.clear();
        }
        for instance in &self.collected {
            let health = match state.store.collector_health(instance).await {
                Ok(Some(json)) => serde_json::from_str::<CollectorHealth>(&json).ok(),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(%instance, error = %e, "metrics: cannot read collector health");
                    None
                }
            };
            let Some(h) = health.filter(|h| h.owner == self.owner) else {
                continue;
            };
            let label = InstanceLabel {
                instance: instance.clone(),
            };
            let set = |family: &InstanceGauges, value: u64| {
                family
                    .get_or_create(&label)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set(&c.lag_bytes, h.lag_bytes);
            set(&c.log_files, h.log_files);
            set(&c.log_records, h.log_records);
            set(&c.bad_log_records, h.bad_log_records);
            set(&c.running_queries, h.running_queries);
            set(&c.sampler_connected, u64::from(h.sampler_connected));
            for (family, at) in [
                (&c.last_sample, &h.last_sample_at),
                (&c.last_error, &h.last_error_at),
            ] {
                if let Some(t) = at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                {
                    set(family, u64::try_from(t.timestamp()).unwrap_or(0));
                }
            }
        }
    }
}
