//! Prometheus metrics of the running daemon (counted since it started, as Prometheus expects).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    durations: Family<JobLabels, Histogram>,
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 45 minutes: from an identity check to a long trial window.
    Histogram::new(exponential_buckets(0.01, 3.0, 15))
}

impl Metrics {
    pub fn new(started_at_seconds: i64) -> Metrics {
        let mut registry = Registry::with_prefix("whittle");
        let runs = Family::<RunLabels, Counter>::default();
        let durations = Family::<JobLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let start = Gauge::<i64>::default();
        start.set(started_at_seconds);
        let info = Family::<BuildLabels, Gauge>::default();
        info.get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .set(1);
        registry.register(
            "job_runs",
            "Job runs by job and outcome (skipped: the previous run was still busy)",
            runs.clone(),
        );
        registry.register(
            "job_run_duration_seconds",
            "Duration of finished job runs",
            durations.clone(),
        );
        registry.register(
            "start_time_seconds",
            "When the daemon started, in Unix seconds",
            start,
        );
        registry.register("build_info", "The running whittle version", info);
        Metrics {
            registry,
            runs,
            durations,
        }
    }

    /// Makes every configured job appear in /metrics from the start, at zero.
    pub fn declare_job(&self, job: &str) {
        for outcome in ["succeeded", "failed", "skipped"] {
            drop(self.runs.get_or_create(&RunLabels {
                job: job.to_owned(),
                outcome: outcome.to_owned(),
            }));
        }
    }

    pub fn run_finished(&self, job: &str, outcome: &str, seconds: f64) {
        self.runs
            .get_or_create(&RunLabels {
                job: job.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.durations
            .get_or_create(&JobLabels {
                job: job.to_owned(),
            })
            .observe(seconds);
    }

    pub fn run_skipped(&self, job: &str) {
        self.runs
            .get_or_create(&RunLabels {
                job: job.to_owned(),
                outcome: "skipped".to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
