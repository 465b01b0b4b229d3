//! Conditions and phase from what was rendered and observed. Pure, so transitions are unit-tested.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{DittoServerStatus, Phase};

pub const READY: &str = "Ready";
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const CONFIG_READY: &str = "ConfigReady";
pub const DATABASE_READY: &str = "DatabaseReady";
pub const IN_SYNC: &str = "InSync";
pub const TEMPLATES_READY: &str = "TemplatesReady";
pub const DEGRADED: &str = "Degraded";
/// DittoFS exports the spec's shares on the spec's ports (the runtime step).
pub const SERVING: &str = "Serving";

/// One condition as decided this reconcile; the transition time is filled in by [`merge`].
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub type_: &'static str,
    pub status: bool,
    /// Usually a constant; a condition carried over from the stored status has its own.
    pub reason: std::borrow::Cow<'static, str>,
    pub message: String,
}

impl Decided {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }

    /// The stored condition `type_` of `conditions` as it is, for a pass that does not decide it anew.
    pub fn stored(type_: &'static str, conditions: &[Condition]) -> Option<Self> {
        let found = conditions.iter().find(|c| c.type_ == type_)?;
        Some(Self {
            type_,
            status: found.status == "True",
            reason: found.reason.clone().into(),
            message: found.message.clone(),
        })
    }
}

/// What the StatefulSet reports, reduced to what conditions need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload {
    pub desired: i32,
    pub ready: i32,
    pub rolled_out: bool,
}

impl Workload {
    pub fn from_stateful_set(sts: &StatefulSet, desired: i32) -> Self {
        let status = sts.status.clone().unwrap_or_default();
        let generation = sts.metadata.generation.unwrap_or_default();
        let observed = status.observed_generation.unwrap_or_default();
        let updated = status.updated_replicas.unwrap_or_default();
        let same_revision = status.current_revision.is_some() && status.current_revision == status.update_revision;
        Self {
            desired,
            ready: status.ready_replicas.unwrap_or_default(),
            rolled_out: observed >= generation && updated == desired && (same_revision || desired == 0),
        }
    }
}

/// Available / Progressing from the workload.
pub fn workload_conditions(workload: &Workload) -> Vec<Decided> {
    let available = if workload.desired == 0 {
        Decided::new(AVAILABLE, true, "Stopped", "spec.replicas is 0: the server is stopped on purpose")
    } else if workload.ready >= workload.desired {
        Decided::new(AVAILABLE, true, "MinimumReplicasAvailable", "The DittoFS pod is ready")
    } else {
        Decided::new(
            AVAILABLE,
            false,
            "NoReplicasAvailable",
            "The DittoFS pod is not ready yet; see the StatefulSet's pod for why",
        )
    };
    let progressing = if workload.rolled_out && workload.ready >= workload.desired {
        Decided::new(PROGRESSING, false, "ReconcileComplete", "The StatefulSet runs the current configuration")
    } else {
        Decided::new(
            PROGRESSING,
            true,
            "RollingOut",
            format!("The StatefulSet is rolling out ({}/{} ready)", workload.ready, workload.desired),
        )
    };
    vec![available, progressing]
}

/// Ready summarises the others: config rendered, database ready, pod available, nothing rolling.
pub fn ready_condition(others: &[Decided]) -> Decided {
    let blocking: Vec<String> = others
        .iter()
        .filter(|c| c.type_ != READY)
        .filter(|c| if c.type_ == PROGRESSING || c.type_ == DEGRADED { c.status } else { !c.status })
        .map(|c| format!("{} ({}: {})", c.type_, c.reason, c.message))
        .collect();
    if blocking.is_empty() {
        Decided::new(READY, true, "AllConditionsMet", "The DittoFS server is running with the current configuration")
    } else {
        Decided::new(READY, false, "ConditionsNotMet", format!("Waiting for: {}", blocking.join("; ")))
    }
}

pub fn phase(decided: &[Decided], workload: Option<&Workload>, deleting: bool) -> Phase {
    let is = |t: &str| decided.iter().find(|c| c.type_ == t).map(|c| c.status);
    if deleting {
        return Phase::Deleting;
    }
    if is(DEGRADED) == Some(true)
        || (workload.is_some() && (is(CONFIG_READY) == Some(false) || is(TEMPLATES_READY) == Some(false)))
    {
        return Phase::Degraded;
    }
    match workload {
        Some(w) if w.desired == 0 => Phase::Stopped,
        Some(w) if w.ready >= w.desired && w.rolled_out => Phase::Running,
        _ => Phase::Pending,
    }
}

/// New conditions, keeping `lastTransitionTime` where the status did not change.
pub fn merge(previous: &[Condition], decided: &[Decided], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let mut out: Vec<Condition> = decided
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_string();
            let last = previous
                .iter()
                .find(|p| p.type_ == d.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_string(),
                status,
                reason: d.reason.to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time: last,
            }
        })
        .collect();
    sort_conditions(&mut out);
    out
}

/// Ready first, then the brief's order; unknown types last, by name.
fn sort_conditions(conditions: &mut [Condition]) {
    conditions.sort_by(|a, b| condition_rank(&a.type_).cmp(&condition_rank(&b.type_)).then(a.type_.cmp(&b.type_)));
}

/// Like [`merge`], but conditions not decided now are kept as they were (deletion decides only a few).
pub fn merge_keeping(
    previous: &[Condition],
    decided: &[Decided],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out = merge(previous, decided, generation, now);
    out.extend(previous.iter().filter(|p| !decided.iter().any(|d| d.type_ == p.type_)).cloned());
    sort_conditions(&mut out);
    out
}

fn condition_rank(type_: &str) -> usize {
    [READY, AVAILABLE, PROGRESSING, DEGRADED, CONFIG_READY, DATABASE_READY, TEMPLATES_READY, IN_SYNC]
        .iter()
        .position(|t| *t == type_)
        .unwrap_or(99)
}

/// Whether writing `new` would change what is stored (so a steady state writes nothing).
pub fn differs(old: Option<&DittoServerStatus>, new: &DittoServerStatus) -> bool {
    old != Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn stopped_server_is_available_and_ready() {
        let w = Workload { desired: 0, ready: 0, rolled_out: true };
        let mut c = workload_conditions(&w);
        c.push(Decided::new(CONFIG_READY, true, "Rendered", "ok"));
        let ready = ready_condition(&c);
        assert!(ready.status, "{ready:?}");
        assert_eq!(phase(&c, Some(&w), false), Phase::Stopped);
    }

    #[test]
    fn unready_pod_blocks_ready_and_says_why() {
        let w = Workload { desired: 1, ready: 0, rolled_out: false };
        let mut c = workload_conditions(&w);
        c.push(Decided::new(CONFIG_READY, true, "Rendered", "ok"));
        let ready = ready_condition(&c);
        assert!(!ready.status);
        assert!(ready.message.contains("Available"), "{}", ready.message);
        assert!(ready.message.contains("Progressing"), "{}", ready.message);
        assert_eq!(phase(&c, Some(&w), false), Phase::Pending);
    }

    #[test]
    fn running_when_rolled_out_and_ready() {
        let w = Workload { desired: 1, ready: 1, rolled_out: true };
        let mut c = workload_conditions(&w);
        c.push(Decided::new(CONFIG_READY, true, "Rendered", "ok"));
        assert!(ready_condition(&c).status);
        assert_eq!(phase(&c, Some(&w), false), Phase::Running);
    }

    #[test]
    fn broken_template_with_running_workload_is_degraded() {
        let c = vec![Decided::new(TEMPLATES_READY, false, "TemplateInvalid", "t")];
        let w = Workload { desired: 1, ready: 1, rolled_out: true };
        assert_eq!(phase(&c, Some(&w), false), Phase::Degraded);
    }

    #[test]
    fn degraded_blocks_ready() {
        let c = vec![Decided::new(DEGRADED, true, "PodCrashLooping", "x")];
        assert!(!ready_condition(&c).status);
        let c = vec![Decided::new(DEGRADED, false, "AsExpected", "x")];
        assert!(ready_condition(&c).status);
    }

    #[test]
    fn bad_config_with_running_workload_is_degraded() {
        let c = vec![Decided::new(CONFIG_READY, false, "InvalidSpec", "spec.x: bad")];
        let w = Workload { desired: 1, ready: 1, rolled_out: true };
        assert_eq!(phase(&c, Some(&w), false), Phase::Degraded);
        assert_eq!(phase(&c, None, false), Phase::Pending);
    }

    #[test]
    fn transition_time_kept_while_status_holds() {
        let old = merge(&[], &[Decided::new(READY, false, "A", "a")], Some(1), &time("2026-01-01T00:00:00Z"));
        let same = merge(&old, &[Decided::new(READY, false, "B", "b")], Some(2), &time("2026-01-02T00:00:00Z"));
        assert_eq!(same[0].last_transition_time, time("2026-01-01T00:00:00Z"));
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(&old, &[Decided::new(READY, true, "C", "c")], Some(2), &time("2026-01-03T00:00:00Z"));
        assert_eq!(flipped[0].last_transition_time, time("2026-01-03T00:00:00Z"));
    }

    #[test]
    fn deletion_keeps_the_conditions_it_does_not_decide() {
        let t = time("2026-01-01T00:00:00Z");
        let old = merge(
            &[],
            &[Decided::new(READY, true, "AllConditionsMet", "r"), Decided::new(IN_SYNC, true, "Applied", "s")],
            Some(1),
            &t,
        );
        let new = merge_keeping(&old, &[Decided::new(READY, false, "Deleting", "d")], Some(1), &t);
        let types: Vec<_> = new.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(types, vec![(READY, "False"), (IN_SYNC, "True")]);
    }
}
