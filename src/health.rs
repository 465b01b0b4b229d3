//! Degraded: what the cluster says about the DittoFS pod and its storage that the StatefulSet's
//! counters do not (a crash loop, an image that cannot be pulled, a claim that never binds, a
//! StorageClass that does not exist).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::render::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY};
use crate::status::{DEGRADED, Decided};

/// A claim Pending longer than this is reported (binding may wait for the pod's scheduling).
pub const CLAIM_PENDING_GRACE_SECONDS: i64 = 120;

/// Container waiting reasons that mean the pod will not come up by itself.
const STUCK: &[(&str, &str)] = &[
    ("CrashLoopBackOff", "PodCrashLooping"),
    ("ImagePullBackOff", "ImagePullFailed"),
    ("ErrImagePull", "ImagePullFailed"),
    ("InvalidImageName", "ImagePullFailed"),
    ("CreateContainerConfigError", "ContainerConfigError"),
    ("CreateContainerError", "ContainerConfigError"),
];

/// Whether the named StorageClass exists (None = the CR names none).
pub async fn storage_class_missing(client: &Client, name: Option<&str>) -> Result<Option<String>, kube::Error> {
    let Some(name) = name else { return Ok(None) };
    let found = Api::<StorageClass>::all(client.clone()).get_metadata_opt(name).await?;
    Ok(found.is_none().then(|| name.to_string()))
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

/// Degraded from the pod `<name>-0` and the CR's claims.
pub async fn observe(client: &Client, namespace: &str, name: &str, now: i64) -> Result<Decided, kube::Error> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace).get_opt(&format!("{name}-0")).await?;
    if let Some(found) = pod.as_ref().and_then(stuck_container) {
        return Ok(found);
    }
    let selector = format!("{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}");
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let pending: Vec<String> = claims
        .items
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
        .filter(|c| c.creation_timestamp().is_some_and(|t| now - t.0.as_second() > CLAIM_PENDING_GRACE_SECONDS))
        .map(|c| c.name_any())
        .collect();
    if !pending.is_empty() {
        return Ok(Decided::new(
            DEGRADED,
            true,
            "VolumeClaimPending",
            format!(
                "PersistentVolumeClaims Pending for over {CLAIM_PENDING_GRACE_SECONDS}s: {}; check the StorageClass and its provisioner",
                pending.join(", ")
            ),
        ));
    }
    Ok(Decided::new(DEGRADED, false, "AsExpected", "No crash loop, image or volume problem observed"))
}

fn stuck_container(pod: &Pod) -> Option<Decided> {
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in containers {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if let Some((_, ours)) = STUCK.iter().find(|(theirs, _)| *theirs == reason) {
            let detail = waiting.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            return Some(Decided::new(
                DEGRADED,
                true,
                ours,
                format!(
                    "Pod {}: container {} is {reason}{detail} (restarts: {})",
                    pod.name_any(),
                    container.name,
                    container.restart_count
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
