//! Publishes Events (events.k8s.io/v1) on DittoServers, folding repeats into a series as
//! kube's `Recorder` does, but keeping per series only what a repeat needs: the Event's name
//! and its count, under a digest of what makes Events the same. kube's recorder keeps each
//! Event whole (with its key, a copy of the reference) for six minutes, and scans them all on
//! every publish: megabytes and a scan of every series per Event at 1,000 DittoServers.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Client, ResourceExt};
use serde_json::json;

/// How long a repeat still joins the series of an earlier Event (kube's recorder: six minutes).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// How often the series past their time are dropped.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_mins(1);

/// An Event already published: what a repeat patches.
struct Series {
    name: Box<str>,
    count: i32,
    last: Timestamp,
}

pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    by_key: HashMap<u64, Series>,
    swept: Option<Timestamp>,
}

impl Ledger {
    /// Drops series whose last Event is older than the TTL, at most once a [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Timestamp) {
        if self.swept.is_some_and(|at| at + SWEEP_EVERY > now) {
            return;
        }
        self.by_key.retain(|_, s| s.last + SERIES_TTL > now);
        self.by_key.shrink_to_fit();
        self.swept = Some(now);
    }
}

/// What makes two Events one series: type, reason, action and the object they regard.
fn series_key(event: &Event, regarding: &ObjectReference) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    matches!(event.type_, EventType::Warning).hash(&mut hasher);
    (&event.reason, &event.action).hash(&mut hasher);
    (&regarding.namespace, &regarding.name, &regarding.uid, &regarding.kind).hash(&mut hasher);
    hasher.finish()
}

impl Recorder {
    pub fn new(client: Client, controller: String, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| controller.clone());
        Self { client, controller, instance, series: Mutex::default() }
    }

    /// Creates the Event, or, when the same one was published within the TTL, counts it in
    /// that Event's series (a merge patch of `series` alone).
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = series_key(event, regarding);
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = {
            let mut ledger = self.series.lock().expect("series lock");
            ledger.sweep(now);
            ledger.by_key.get(&key).filter(|s| s.last + SERIES_TTL > now).map(|s| (s.name.clone(), s.count + 1))
        };
        if let Some((name, count)) = repeat {
            let series = EventSeries { count, last_observed_time: MicroTime(now) };
            let patch = json!({ "series": series });
            match events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.note(key, name, count, now);
                    return Ok(());
                }
                // Deleted meanwhile (someone cleaned up Events): a new one starts the series again.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.controller), now.as_nanosecond());
        let created = events.create(&PostParams::default(), &self.event(event, regarding, &name, now)).await?;
        self.note(key, created.name_any().into(), 1, now);
        Ok(())
    }

    fn note(&self, key: u64, name: Box<str>, count: i32, now: Timestamp) {
        self.series.lock().expect("series lock").by_key.insert(key, Series { name, count, last: now });
    }

    fn event(&self, event: &Event, regarding: &ObjectReference, name: &str, now: Timestamp) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Default::default()
        }
    }

    /// Series kept now (for tests).
    pub fn series_kept(&self) -> usize {
        self.series.lock().expect("series lock").by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(last: Timestamp) -> Series {
        Series { name: "e".into(), count: 1, last }
    }

    #[test]
    fn series_past_their_time_are_dropped_once_a_minute_at_most() {
        let start = Timestamp::now();
        let mut ledger = Ledger::default();
        ledger.by_key.insert(1, series(start));
        ledger.by_key.insert(2, series(start + SignedDuration::from_mins(3)));
        ledger.sweep(start);
        assert_eq!(ledger.by_key.len(), 2);
        // Past the first one's TTL, but within a minute of the last sweep: kept.
        let later = start + SERIES_TTL + SignedDuration::from_secs(1);
        ledger.swept = Some(later - SignedDuration::from_secs(30));
        ledger.sweep(later);
        assert_eq!(ledger.by_key.len(), 2);
        ledger.swept = Some(start);
        ledger.sweep(later);
        assert_eq!(ledger.by_key.keys().collect::<Vec<_>>(), vec![&2]);
    }

    #[test]
    fn the_same_event_on_the_same_object_is_one_series() {
        let reference =
            |uid: &str| ObjectReference { name: Some("demo".into()), uid: Some(uid.into()), ..Default::default() };
        let event = |reason: &str| Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some("n".into()),
            action: "Reconcile-1".into(),
            secondary: None,
        };
        assert_eq!(series_key(&event("Created"), &reference("a")), series_key(&event("Created"), &reference("a")));
        assert_ne!(series_key(&event("Created"), &reference("a")), series_key(&event("Updated"), &reference("a")));
        assert_ne!(series_key(&event("Created"), &reference("a")), series_key(&event("Created"), &reference("b")));
    }
}
