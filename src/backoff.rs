//! Exponential backoff schedules, and the runtime step's gate that counts time, not passes.
//!
//! A DittoServer's pass runs on every watch event of its objects: the burst after a create or a
//! roll is a dozen passes within a second. The runtime step dials the DittoFS API only when a
//! try is due (the first, a backoff interval after the last failure, or as soon as the pod
//! turned Ready again), so such a burst makes one attempt and raises the count once.

use std::time::{Duration, Instant};

/// `first`, doubled per consecutive failure, capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after the `failures`-th consecutive failure (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// A failed reconcile pass (an API server error): 1 s doubling to 5 minutes.
pub const RECONCILE: Backoff = Backoff { first: Duration::from_secs(1), max: Duration::from_secs(300) };

/// The DittoFS API of a Ready pod does not serve what the spec asks: 5 s doubling to 5 minutes.
pub const RUNTIME: Backoff = Backoff { first: Duration::from_secs(5), max: Duration::from_secs(300) };

/// One server's runtime failures: when the next try is due, and what was last reported.
#[derive(Clone, Debug)]
pub struct RetryGate<T> {
    failures: u32,
    next_try: Instant,
    /// The pod's readiness when the try failed ([`PodReadiness::fingerprint`]): a pod Ready
    /// again since (restarted, rolled out) may serve now, so it is tried without waiting.
    pod: String,
    /// What the failed try reported, reported again by passes that do not dial.
    pub last: T,
}

/// Whether a pass dials the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Now,
    /// Not before this long: the pass reports the last failure and asks to run again then.
    In(Duration),
}

impl<T> RetryGate<T> {
    /// Whether a try is due at `now` for a pod whose readiness is `pod`.
    pub fn due(gate: Option<&Self>, now: Instant, pod: &str) -> Due {
        match gate {
            Some(gate) if gate.pod == pod && now < gate.next_try => Due::In(gate.next_try - now),
            _ => Due::Now,
        }
    }

    /// Records a failed try at `now`: the next is due one backoff interval later.
    pub fn failed(gate: Option<Self>, schedule: Backoff, now: Instant, pod: &str, last: T) -> Self {
        let failures = gate.map_or(0, |g| g.failures).saturating_add(1);
        Self { failures, next_try: now + schedule.delay(failures), pod: pod.to_string(), last }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long after `now` the next try is due.
    pub fn retry_in(&self, now: Instant) -> Duration {
        self.next_try.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_up_to_the_cap() {
        let delays: Vec<u64> = (1..=8).map(|n| RUNTIME.delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(RECONCILE.delay(1), Duration::from_secs(1));
        assert_eq!(RECONCILE.delay(u32::MAX), Duration::from_secs(300));
    }

    /// The burst of passes that follows a create (one per watch event of the operator's own
    /// writes) makes one API attempt; the next comes at the first backoff interval.
    #[test]
    fn a_burst_of_passes_after_one_failure_makes_one_attempt() {
        let start = Instant::now();
        let pod = "uid-1/2026-12-07T00:00:00Z";
        let mut gate: Option<RetryGate<&str>> = None;
        let mut attempts = Vec::new();
        // 11 passes within one second: the first dials and fails.
        for i in 0..11u64 {
            let now = start + Duration::from_millis(i * 90);
            if RetryGate::due(gate.as_ref(), now, pod) == Due::Now {
                attempts.push(now - start);
                gate = Some(RetryGate::failed(gate, RUNTIME, now, pod, "ApiUnreachable"));
            }
        }
        assert_eq!(attempts, [Duration::ZERO]);
        let gate_now = gate.as_ref().unwrap();
        assert_eq!(gate_now.failures(), 1);
        assert_eq!(gate_now.last, "ApiUnreachable");
        // The last pass of the burst asks to run again when the try is due.
        let last_pass = start + Duration::from_millis(900);
        assert_eq!(RetryGate::due(gate.as_ref(), last_pass, pod), Due::In(Duration::from_millis(4100)));
        // Just before the first interval: still not due; at it: due.
        let almost = start + RUNTIME.first - Duration::from_millis(1);
        assert!(matches!(RetryGate::due(gate.as_ref(), almost, pod), Due::In(_)));
        assert_eq!(RetryGate::due(gate.as_ref(), start + RUNTIME.first, pod), Due::Now);
        // A second failure there doubles the interval.
        let second = RetryGate::failed(gate, RUNTIME, start + RUNTIME.first, pod, "ApiUnreachable");
        assert_eq!(second.failures(), 2);
        assert_eq!(second.retry_in(start + RUNTIME.first), Duration::from_secs(10));
    }

    #[test]
    fn a_pod_ready_again_since_the_failure_is_tried_at_once() {
        let start = Instant::now();
        let gate = RetryGate::failed(None, RUNTIME, start, "uid-1/t1", ());
        let soon = start + Duration::from_millis(100);
        assert!(matches!(RetryGate::due(Some(&gate), soon, "uid-1/t1"), Due::In(_)));
        // Restarted in place (a new Ready transition) or replaced (a new pod): due now.
        assert_eq!(RetryGate::due(Some(&gate), soon, "uid-1/t2"), Due::Now);
        assert_eq!(RetryGate::due(Some(&gate), soon, "uid-2/t3"), Due::Now);
    }
}
