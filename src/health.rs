//! Degraded: what the cluster says about the DittoFS pod and its storage that the StatefulSet's
//! counters do not (a crash loop, an image that cannot be pulled, a claim that never binds, a
//! StorageClass that does not exist).

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::ApiResource;

use crate::cache::Reads;

use crate::conditions::{DEGRADED, Decided};

/// A claim Pending longer than this is reported (binding may wait for the pod's scheduling);
/// `--claim-pending-grace-seconds` changes it.
pub const DEFAULT_CLAIM_PENDING_GRACE: Duration = Duration::from_secs(120);

/// Container waiting reasons that mean the pod will not come up by itself.
const STUCK: &[(&str, &str)] = &[
    ("CrashLoopBackOff", "PodCrashLooping"),
    ("ImagePullBackOff", "ImagePullFailed"),
    ("ErrImagePull", "ImagePullFailed"),
    // imagePullPolicy Never and the image is not on the node.
    ("ErrImageNeverPull", "ImagePullFailed"),
    ("InvalidImageName", "ImagePullFailed"),
    ("CreateContainerConfigError", "ContainerConfigError"),
    ("CreateContainerError", "ContainerConfigError"),
];

/// Whether the named StorageClass exists (None = the CR names none).
pub async fn storage_class_missing(reads: Reads<'_>, name: Option<&str>) -> Result<Option<String>, kube::Error> {
    let Some(name) = name else { return Ok(None) };
    let found = reads.exists(&ApiResource::erase::<StorageClass>(&()), "", name).await?;
    Ok((!found).then(|| name.to_string()))
}

pub fn storage_class_condition(missing: &str) -> Decided {
    Decided::new(
        DEGRADED,
        true,
        "StorageClassMissing",
        format!(
            "spec.storage.storageClassName: StorageClass {missing:?} does not exist; create it or choose another (the StatefulSet is not created until it exists)"
        ),
    )
}

/// Degraded as observed now, and when to look again if that can change by itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub degraded: Decided,
    /// A claim is Pending but still within its grace: it counts once the grace is over.
    pub recheck_after: Option<Duration>,
    /// A pod stuck on a revision the StatefulSet no longer wants: the StatefulSet controller
    /// waits for it to become Ready, which it never will, so it must be deleted to roll forward
    /// (the StatefulSet documentation's "forced rollback").
    pub stuck_on_old_revision: Option<StalePod>,
    /// The pod `<name>-0` does not carry the StatefulSet's selector labels: it was left by an
    /// earlier StatefulSet of that name (one re-created with another selector, such as the
    /// earlier Go operator's), and the StatefulSet cannot create its own pod while it exists.
    pub foreign_pod: Option<ForeignPod>,
}

/// A pod named like the StatefulSet's, that the StatefulSet cannot adopt.
#[derive(Clone, Debug, PartialEq)]
pub struct ForeignPod {
    pub name: String,
    pub uid: Option<String>,
    /// The selector labels it lacks or has with other values, as `key=value`.
    pub missing: Vec<String>,
}

/// `Some` when `pod` lacks any of the StatefulSet's selector labels.
pub fn foreign_pod(pod: &Pod, selector: &std::collections::BTreeMap<String, String>) -> Option<ForeignPod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let labels = pod.labels();
    let missing: Vec<String> =
        selector.iter().filter(|(k, v)| labels.get(*k) != Some(*v)).map(|(k, v)| format!("{k}={v}")).collect();
    (!missing.is_empty()).then(|| ForeignPod { name: pod.name_any(), uid: pod.uid(), missing })
}

/// A pod to delete so the StatefulSet can replace it at its current revision.
#[derive(Clone, Debug, PartialEq)]
pub struct StalePod {
    pub name: String,
    pub uid: Option<String>,
    pub revision: String,
    pub wanted: String,
}

/// The pod's revision when it differs from `update_revision` and the pod will not come up by
/// itself (a stuck container) and is not already going away.
fn stale_pod(pod: &Pod, update_revision: Option<&str>) -> Option<StalePod> {
    let wanted = update_revision.filter(|r| !r.is_empty())?;
    let revision = pod.labels().get("controller-revision-hash")?;
    if revision == wanted || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some(StalePod { name: pod.name_any(), uid: pod.uid(), revision: revision.clone(), wanted: wanted.to_string() })
}

/// Degraded from the pod `<name>-0` and the CR's claims (`now` in Unix seconds).
pub async fn observe(
    reads: Reads<'_>,
    namespace: &str,
    name: &str,
    now: i64,
    claim_grace: Duration,
    update_revision: Option<&str>,
    selector: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Observed, kube::Error> {
    // Its metadata and status: the pod's spec is not read, so not kept.
    let pod: Option<Pod> = reads.get_as(namespace, &format!("{name}-0"), crate::cache::Need::Status).await?;
    let foreign = pod.as_ref().zip(selector).and_then(|(pod, selector)| foreign_pod(pod, selector));
    if let Some(pod) = &pod
        && let Some(found) = stuck_container(pod)
    {
        let stuck_on_old_revision = stale_pod(pod, update_revision);
        return Ok(Observed { degraded: found, recheck_after: None, stuck_on_old_revision, foreign_pod: foreign });
    }
    let claims: Vec<PersistentVolumeClaim> = reads.list(namespace, &crate::names::instance_labels(name)).await?;
    Ok(Observed { foreign_pod: foreign, ..pending_claims(&claims, now, claim_grace) })
}

/// Degraded from the claims alone: Pending beyond `grace` is reported; Pending within it is
/// looked at again when the grace runs out.
fn pending_claims(claims: &[PersistentVolumeClaim], now: i64, grace: Duration) -> Observed {
    let grace_seconds = grace.as_secs() as i64;
    let mut overdue = Vec::new();
    let mut recheck_after: Option<Duration> = None;
    for claim in claims {
        if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending") {
            continue;
        }
        let Some(created) = claim.creation_timestamp() else { continue };
        let age = now - created.0.as_second();
        if age >= grace_seconds {
            overdue.push(claim.name_any());
        } else {
            let left = Duration::from_secs((grace_seconds - age) as u64);
            recheck_after = Some(recheck_after.map_or(left, |r| r.min(left)));
        }
    }
    if !overdue.is_empty() {
        let degraded = Decided::new(
            DEGRADED,
            true,
            "VolumeClaimPending",
            format!(
                "PersistentVolumeClaims Pending for over {grace_seconds}s: {}; check the StorageClass and its provisioner",
                overdue.join(", ")
            ),
        );
        return Observed { degraded, recheck_after: None, stuck_on_old_revision: None, foreign_pod: None };
    }
    let degraded = Decided::new(DEGRADED, false, "AsExpected", "No crash loop, image or volume problem observed");
    Observed { degraded, recheck_after, stuck_on_old_revision: None, foreign_pod: None }
}

/// When the pod is Ready and not going away: its uid and when it turned Ready, which changes
/// whenever it comes up again (a restart, a roll, a re-created pod). `None`: not Ready.
pub fn ready_since(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ready = pod.status.as_ref()?.conditions.iter().flatten().find(|c| c.type_ == "Ready" && c.status == "True")?;
    let since = ready.last_transition_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    Some(format!("{}/{since}", pod.uid().unwrap_or_default()))
}

fn stuck_container(pod: &Pod) -> Option<Decided> {
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in containers {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if let Some((_, ours)) = STUCK.iter().find(|(theirs, _)| *theirs == reason) {
            let detail = waiting.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            let image =
                if *ours == "ImagePullFailed" { format!(" (image {})", container.image) } else { String::new() };
            return Some(Decided::new(
                DEGRADED,
                true,
                ours,
                format!(
                    "Pod {}: container {} is {reason}{detail}{image} (restarts: {}){}",
                    pod.name_any(),
                    container.name,
                    container.restart_count,
                    last_words(container)
                ),
            ));
        }
    }
    None
}

/// How much of a container's last termination message a condition quotes (its end).
const LAST_WORDS: usize = 1024;

/// `. Last exit (code 1): <the end of its termination message>` when the container ran and
/// exited before; empty otherwise. With `terminationMessagePolicy: FallbackToLogsOnError` the
/// message is the end of its log.
fn last_words(container: &k8s_openapi::api::core::v1::ContainerStatus) -> String {
    let Some(ended) = container.last_state.as_ref().and_then(|s| s.terminated.as_ref()) else {
        return String::new();
    };
    let said = ended.message.as_deref().map(str::trim).unwrap_or_default();
    let said = match said.char_indices().rev().nth(LAST_WORDS - 1) {
        Some((cut, _)) => format!("…{}", &said[cut..]),
        None => said.to_string(),
    };
    let reason = ended.reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default();
    if said.is_empty() {
        format!(". Last exit: code {}{reason}", ended.exit_code)
    } else {
        format!(". Last exit: code {}{reason}: {said}", ended.exit_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stuck_pod_on_an_old_revision_is_stale_and_only_then() {
        let pod = |revision: &str, deleting: bool| -> Pod {
            let mut meta = json!({"name": "demo-0", "uid": "u1", "labels": {"controller-revision-hash": revision}});
            if deleting {
                meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            serde_json::from_value(json!({"metadata": meta})).unwrap()
        };
        let stale = stale_pod(&pod("demo-bad", false), Some("demo-good")).expect("stale");
        assert_eq!((stale.revision.as_str(), stale.wanted.as_str()), ("demo-bad", "demo-good"));
        assert!(stale_pod(&pod("demo-good", false), Some("demo-good")).is_none(), "current revision");
        assert!(stale_pod(&pod("demo-bad", true), Some("demo-good")).is_none(), "already going");
        assert!(stale_pod(&pod("demo-bad", false), None).is_none(), "no revision known");
    }

    #[test]
    fn a_pod_without_the_selector_labels_is_foreign() {
        let selector: std::collections::BTreeMap<String, String> =
            [("app.kubernetes.io/instance", "files"), ("app.kubernetes.io/name", "dittofs")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into();
        let pod = |labels: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "files-0", "uid": "u1", "labels": labels}})).unwrap()
        };
        let earlier = foreign_pod(&pod(json!({"app": "dittofs-server", "instance": "files"})), &selector).unwrap();
        assert_eq!(earlier.missing, ["app.kubernetes.io/instance=files", "app.kubernetes.io/name=dittofs"]);
        let ours =
            pod(json!({"app.kubernetes.io/instance": "files", "app.kubernetes.io/name": "dittofs", "extra": "x"}));
        assert!(foreign_pod(&ours, &selector).is_none());
    }

    #[test]
    fn crash_loop_quotes_the_end_of_the_last_words_and_image_failures_name_the_image() {
        let long = format!("{}Error: failed to load configuration: bad key", "x".repeat(5000));
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "demo-0"},
            "status": {"containerStatuses": [{"name": "dittofs", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": long}}}]}
        }))
        .unwrap();
        let d = stuck_container(&pod).unwrap();
        assert!(d.message.contains("Last exit: code 1, Error: …x"), "{}", d.message);
        assert!(d.message.ends_with("failed to load configuration: bad key"), "{}", d.message);
        assert!(d.message.len() < 1300, "cut to about 1 KiB: {}", d.message.len());

        let never: Pod = serde_json::from_value(json!({
            "metadata": {"name": "demo-0"},
            "status": {"containerStatuses": [{"name": "dittofs", "image": "marmos91c/dittofs:v9", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "Container image \"marmos91c/dittofs:v9\" is not present with pull policy of Never"}}}]}
        }))
        .unwrap();
        let d = stuck_container(&never).unwrap();
        assert_eq!(d.reason, "ImagePullFailed");
        assert!(d.message.contains("(image marmos91c/dittofs:v9)"), "{}", d.message);
    }

    #[test]
    fn crash_loop_is_named() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "demo-0"},
            "status": {"containerStatuses": [{"name": "dittofs", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}
        }))
        .unwrap();
        let d = stuck_container(&pod).unwrap();
        assert_eq!(d.reason, "PodCrashLooping");
        assert!(d.message.contains("dittofs") && d.message.contains("restarts: 4"), "{}", d.message);
    }

    fn claim(name: &str, created: &str, phase: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn a_pending_claim_counts_once_its_grace_is_over() {
        let created = "2026-01-01T00:00:00Z";
        let t0 = created.parse::<k8s_openapi::jiff::Timestamp>().unwrap().as_second();
        let grace = Duration::from_secs(120);
        let claims = [claim("data-demo-0", created, "Pending"), claim("cache-demo-0", created, "Bound")];

        let early = pending_claims(&claims, t0 + 20, grace);
        assert!(!early.degraded.status);
        assert_eq!(early.recheck_after, Some(Duration::from_secs(100)), "look again when the grace runs out");

        let late = pending_claims(&claims, t0 + 120, grace);
        assert_eq!(late.degraded.reason, "VolumeClaimPending");
        assert!(late.degraded.message.contains("data-demo-0") && !late.degraded.message.contains("cache-demo-0"));
        assert_eq!(late.recheck_after, None);

        let bound = pending_claims(&[claim("data-demo-0", created, "Bound")], t0 + 500, grace);
        assert_eq!((bound.degraded.status, bound.recheck_after), (false, None));
    }

    #[test]
    fn a_pod_is_ready_from_its_condition_and_each_time_it_turns_ready_differs() {
        let pod = |ready: &str, since: &str, deleting: bool| -> Pod {
            let mut meta = json!({"name": "demo-0", "uid": "u1"});
            if deleting {
                meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            serde_json::from_value(json!({"metadata": meta, "status": {"conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": ready, "lastTransitionTime": since}]}}))
            .unwrap()
        };
        let first = ready_since(&pod("True", "2026-01-01T00:00:00Z", false)).expect("ready");
        assert_eq!(first, "u1/2026-01-01T00:00:00Z");
        assert_ne!(ready_since(&pod("True", "2026-01-01T00:01:00Z", false)), Some(first));
        assert_eq!(ready_since(&pod("False", "2026-01-01T00:00:00Z", false)), None);
        assert_eq!(ready_since(&pod("True", "2026-01-01T00:00:00Z", true)), None, "going away");
        let no_status: Pod = serde_json::from_value(json!({"metadata": {"name": "demo-0"}})).unwrap();
        assert_eq!(ready_since(&no_status), None);
    }

    #[test]
    fn a_starting_container_is_not_degraded() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "demo-0"},
            "status": {"containerStatuses": [{"name": "dittofs", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }))
        .unwrap();
        assert!(stuck_container(&pod).is_none());
    }
}
