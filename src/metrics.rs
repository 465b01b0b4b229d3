//! Prometheus metrics of the operator itself (not of DittoFS).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenderLabel {
    /// `rendered`, or `reused` (same inputs, objects settled: the kept render, no object needed).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// The HTTP method: `GET` (reads, lists and watches), `PATCH` (applies, status), `POST`, `DELETE`.
    pub method: String,
}

pub struct Metrics {
    registry: Registry,
    /// Requests this process sent the API server, watches included.
    pub kube_requests: Family<MethodLabel, Counter>,
    pub renders: Family<RenderLabel, Counter>,
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub applies: Family<ApplyLabel, Counter>,
    /// Reconciles running now: the part of the work queue being worked on.
    pub in_flight: Gauge,
    /// DittoServers with a change seen whose reconcile has not started yet.
    pub queue_depth: Gauge,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Watch stores whose first list is not in yet.
    pub watches_listing: Gauge,
    in_flight_count: AtomicI64,
    /// When each reconcile in flight started, by a number of its own: the oldest tells a
    /// stalled controller (`/healthz`).
    in_flight_since: Mutex<BTreeMap<u64, Instant>>,
    next_pass: AtomicU64,
    /// `namespace/name` of the DittoServers behind `queue_depth`.
    queued: Mutex<HashSet<String>>,
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
        let renders = Family::<RenderLabel, Counter>::default();
        registry.register(
            "renders",
            "Renders of the reconcile's apply step: rendered, or reused (inputs unchanged and every object as last applied)",
            renders.clone(),
        );
        let kube_requests = Family::<MethodLabel, Counter>::default();
        registry.register("kube_requests", "Requests sent to the API server, by HTTP method", kube_requests.clone());
        let in_flight = Gauge::default();
        registry.register("reconciles_in_flight", "Reconciles running now", in_flight.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "DittoServers waiting for a reconcile: a change was seen and their reconcile has not started (timed requeues count once due)",
            queue_depth.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        let watches_listing = Gauge::default();
        registry.register(
            "watches_listing",
            "Watches whose first list is not in yet (0: the operator knows every object it watches)",
            watches_listing.clone(),
        );
        Self {
            registry,
            kube_requests,
            renders,
            reconciles,
            reconcile_duration,
            applies,
            in_flight,
            queue_depth,
            leader,
            watches_listing,
            in_flight_count: AtomicI64::new(0),
            in_flight_since: Mutex::default(),
            next_pass: AtomicU64::new(0),
            queued: Mutex::default(),
        }
    }

    /// A layer for a kube client that counts its requests in `kube_requests`.
    pub fn counting_requests<B>(
        &self,
    ) -> tower::util::MapRequestLayer<impl Fn(http::Request<B>) -> http::Request<B> + Clone + use<B>> {
        let requests = self.kube_requests.clone();
        tower::util::MapRequestLayer::new(move |request: http::Request<B>| {
            requests.get_or_create(&MethodLabel { method: request.method().to_string() }).inc();
            request
        })
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("metrics encode");
        text
    }

    /// A change concerning `key` (`namespace/name`) was seen: its reconcile is due.
    pub fn enqueued(&self, key: String) {
        let mut queued = self.queued.lock().expect("queue lock");
        queued.insert(key);
        self.queue_depth.set(queued.len() as i64);
    }

    /// `key` left the queue: its reconcile started, or it no longer exists.
    pub fn dequeued(&self, key: &str) {
        let mut queued = self.queued.lock().expect("queue lock");
        queued.remove(key);
        self.queue_depth.set(queued.len() as i64);
    }

    /// The controller stopped (shutdown, lost leadership): nothing waits any more.
    pub fn queue_cleared(&self) {
        let mut queued = self.queued.lock().expect("queue lock");
        queued.clear();
        self.queue_depth.set(0);
    }

    /// A reconcile of `key` starts; it counts as in flight until the guard is dropped, also when
    /// the reconcile is cancelled (a controller stopped mid-way).
    pub fn started(&self, key: &str) -> InFlight<'_> {
        self.dequeued(key);
        let now = self.in_flight_count.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.set(now);
        let pass = self.next_pass.fetch_add(1, Ordering::Relaxed);
        self.in_flight_since.lock().expect("in-flight lock").insert(pass, Instant::now());
        InFlight(self, pass)
    }

    /// How long the oldest reconcile in flight has run, if any runs.
    pub fn oldest_in_flight(&self) -> Option<Duration> {
        let since = self.in_flight_since.lock().expect("in-flight lock");
        since.values().min().map(Instant::elapsed)
    }

    pub fn finished(&self, result: &str, took: Duration) {
        self.reconciles.get_or_create(&ResultLabel { result: result.into() }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn applied(&self, written: usize, skipped: usize) {
        self.applies.get_or_create(&ApplyLabel { outcome: "done".into() }).inc_by(written as u64);
        self.applies.get_or_create(&ApplyLabel { outcome: "skipped".into() }).inc_by(skipped as u64);
    }

    /// A pass rendered its DittoServer, or reused the kept render.
    pub fn rendered(&self, reused: bool) {
        let outcome = if reused { "reused" } else { "rendered" };
        self.renders.get_or_create(&RenderLabel { outcome: outcome.into() }).inc();
    }

    /// Renders so far with this outcome (`rendered`, `reused`).
    pub fn renders_with(&self, outcome: &str) -> u64 {
        self.renders.get_or_create(&RenderLabel { outcome: outcome.into() }).get()
    }

    /// Reconciles finished with this result so far (for tests and the leader check).
    pub fn reconciles_with(&self, result: &str) -> u64 {
        self.reconciles.get_or_create(&ResultLabel { result: result.into() }).get()
    }
}

/// A reconcile in flight (see [`Metrics::started`]).
pub struct InFlight<'a>(&'a Metrics, u64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = self.0.in_flight_count.fetch_sub(1, Ordering::SeqCst) - 1;
        self.0.in_flight.set(now);
        self.0.in_flight_since.lock().expect("in-flight lock").remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_layer_counts_requests_by_method() {
        use tower::{Layer, ServiceExt};
        let m = Metrics::new();
        let service = m
            .counting_requests()
            .layer(tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(()) }));
        for method in [http::Method::GET, http::Method::GET, http::Method::PATCH] {
            let request = http::Request::builder().method(method).body(()).unwrap();
            service.clone().oneshot(request).await.unwrap();
        }
        let text = m.encode();
        assert!(text.contains("dittofs_operator_kube_requests_total{method=\"GET\"} 2"), "{text}");
        assert!(text.contains("dittofs_operator_kube_requests_total{method=\"PATCH\"} 1"), "{text}");
    }

    #[test]
    fn exposition_has_the_operator_series() {
        let m = Metrics::new();
        m.enqueued("ns/a".into());
        m.enqueued("ns/b".into());
        m.enqueued("ns/a".into());
        assert_eq!(m.queue_depth.get(), 2, "one entry per DittoServer, however many changes");
        let running = m.started("ns/a");
        assert_eq!((m.queue_depth.get(), m.in_flight.get()), (1, 1));
        m.finished("ok", Duration::from_millis(20));
        drop(running);
        let cancelled = m.started("ns/b");
        assert!(m.oldest_in_flight().is_some());
        drop(cancelled);
        assert_eq!(m.in_flight.get(), 0, "a cancelled reconcile leaves the in-flight count");
        assert_eq!(m.oldest_in_flight(), None, "and its start time");
        m.enqueued("ns/c".into());
        m.applied(1, 6);
        m.rendered(false);
        m.rendered(true);
        m.rendered(true);
        let text = m.encode();
        for series in [
            "dittofs_operator_reconciles_total{result=\"ok\"} 1",
            "dittofs_operator_applies_total{outcome=\"skipped\"} 6",
            "dittofs_operator_applies_total{outcome=\"done\"} 1",
            "dittofs_operator_reconcile_duration_seconds_count 1",
            "dittofs_operator_reconciles_in_flight 0",
            "dittofs_operator_queue_depth 1",
            "dittofs_operator_renders_total{outcome=\"rendered\"} 1",
            "dittofs_operator_renders_total{outcome=\"reused\"} 2",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }
}
