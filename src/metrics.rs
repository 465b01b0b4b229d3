//! Prometheus metrics of the operator itself (not of DittoFS).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok`, or the error's reason (`ApplyFailed`, `ReadFailed`, …).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplyLabel {
    /// `done` (written) or `skipped` (the dry-run diff was empty).
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub applies: Family<ApplyLabel, Counter>,
    /// Reconciles running now: the part of the work queue being worked on.
    pub in_flight: Gauge,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    in_flight_count: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dittofs_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register("reconcile_duration_seconds", "Reconcile duration", reconcile_duration.clone());
        let applies = Family::<ApplyLabel, Counter>::default();
        registry.register("applies", "Objects written vs. skipped because the dry-run diff was empty", applies.clone());
        let in_flight = Gauge::default();
        registry.register("reconciles_in_flight", "Reconciles running now", in_flight.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        Self {
            registry,
            reconciles,
            reconcile_duration,
            applies,
            in_flight,
            leader,
            in_flight_count: AtomicI64::new(0),
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("metrics encode");
        text
    }

    pub fn started(&self) {
        let now = self.in_flight_count.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.set(now);
    }

    pub fn finished(&self, result: &str, took: Duration) {
        let now = self.in_flight_count.fetch_sub(1, Ordering::SeqCst) - 1;
        self.in_flight.set(now);
        self.reconciles.get_or_create(&ResultLabel { result: result.into() }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn applied(&self, written: usize, skipped: usize) {
        self.applies.get_or_create(&ApplyLabel { outcome: "done".into() }).inc_by(written as u64);
        self.applies.get_or_create(&ApplyLabel { outcome: "skipped".into() }).inc_by(skipped as u64);
    }

    /// Reconciles finished with this result so far (for tests and the leader check).
    pub fn reconciles_with(&self, result: &str) -> u64 {
        self.reconciles.get_or_create(&ResultLabel { result: result.into() }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_operator_series() {
        let m = Metrics::new();
        m.started();
        m.finished("ok", Duration::from_millis(20));
        m.applied(1, 6);
        let text = m.encode();
        for series in [
            "dittofs_operator_reconciles_total{result=\"ok\"} 1",
            "dittofs_operator_applies_total{outcome=\"skipped\"} 6",
            "dittofs_operator_applies_total{outcome=\"done\"} 1",
            "dittofs_operator_reconcile_duration_seconds_count 1",
            "dittofs_operator_reconciles_in_flight 0",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }
}
