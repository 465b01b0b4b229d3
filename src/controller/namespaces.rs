//! One watch event stream out of one watch per namespace (`--namespace a,b`), shaped as a watch
//! of all of them would be. A reflector store takes an `InitDone` as "the list is complete" and
//! drops whatever that list did not show: one namespace's re-list (after a watch error or a 410)
//! must not reach it as such, or the store would lose every other namespace's objects.
//!
//! So the stream opens with one list of every namespace (held back until each namespace's first
//! list is complete: the controller and `/readyz` wait for it), and later re-lists of one
//! namespace arrive as what changed: an `Apply` per object listed, a `Delete` per object the
//! re-list no longer shows.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{Error, Event};

/// Merges `watches` (one per namespace). `store` is the reflector fed by the result: a re-list
/// that no longer shows an object deletes it as the store has it.
pub(super) fn merge<K, S>(watches: Vec<S>, store: Store<K>) -> impl Stream<Item = Result<Event<K>, Error>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    S: Stream<Item = Result<Event<K>, Error>> + Send + 'static,
{
    let mut relists = Relists::new(watches.len(), move |key: &ObjectRef<K>| store.get(key).map(|o| (*o).clone()));
    let tagged = watches.into_iter().enumerate().map(|(namespace, watch)| watch.map(move |e| (namespace, e)).boxed());
    futures::stream::select_all(tagged)
        .map(move |(namespace, event)| match event {
            Ok(event) => relists.step(namespace, event).into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => vec![Err(error)],
        })
        .flat_map(futures::stream::iter)
}

/// The first lists, held back until every namespace has listed.
struct FirstLists<K: Resource> {
    /// Per namespace: its objects so far (its first list, then the changes after it).
    objects: Vec<HashMap<ObjectRef<K>, K>>,
    /// Per namespace: its list is complete (an `InitDone` since its last `Init`).
    complete: Vec<bool>,
}

/// What the merged stream has shown of each namespace, and its re-lists in progress.
struct Relists<K: Resource, F> {
    /// `Some` until every namespace's first list is complete.
    first: Option<FirstLists<K>>,
    /// Per namespace, once live: the objects the merged stream has shown.
    shown: Vec<HashSet<ObjectRef<K>>>,
    /// Per namespace, once live: what a re-list in progress has listed so far.
    relisting: Vec<Option<HashSet<ObjectRef<K>>>>,
    /// An object as the store holds it, for the `Delete` of one a re-list no longer shows.
    stored: F,
}

impl<K, F> Relists<K, F>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
    F: FnMut(&ObjectRef<K>) -> Option<K>,
{
    fn new(namespaces: usize, stored: F) -> Self {
        let first = FirstLists {
            objects: (0..namespaces).map(|_| HashMap::new()).collect(),
            complete: vec![false; namespaces],
        };
        Self {
            first: Some(first),
            shown: (0..namespaces).map(|_| HashSet::new()).collect(),
            relisting: (0..namespaces).map(|_| None).collect(),
            stored,
        }
    }

    /// The merged events for `event` of namespace `ns`.
    fn step(&mut self, ns: usize, event: Event<K>) -> Vec<Event<K>> {
        if let Some(first) = &mut self.first {
            // Kept back (a namespace that is done may already see changes).
            let objects = &mut first.objects[ns];
            match event {
                Event::Init => {
                    objects.clear();
                    first.complete[ns] = false; // listing (again): not complete until its InitDone
                }
                Event::InitApply(object) | Event::Apply(object) => {
                    objects.insert(ObjectRef::from_obj(&object), object);
                }
                Event::Delete(object) => {
                    objects.remove(&ObjectRef::from_obj(&object));
                }
                Event::InitDone => first.complete[ns] = true,
            }
            return self.first_list_if_complete();
        }
        match event {
            Event::Init => {
                self.relisting[ns] = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                let key = ObjectRef::from_obj(&object);
                self.relisting[ns].get_or_insert_default().insert(key.clone());
                self.shown[ns].insert(key);
                vec![Event::Apply(object)]
            }
            Event::InitDone => {
                let listed = self.relisting[ns].take().unwrap_or_default();
                let gone: Vec<ObjectRef<K>> = self.shown[ns].difference(&listed).cloned().collect();
                self.shown[ns] = listed;
                gone.iter().filter_map(|key| (self.stored)(key)).map(Event::Delete).collect()
            }
            Event::Apply(object) => {
                self.shown[ns].insert(ObjectRef::from_obj(&object));
                vec![Event::Apply(object)]
            }
            Event::Delete(object) => {
                self.shown[ns].remove(&ObjectRef::from_obj(&object));
                vec![Event::Delete(object)]
            }
        }
    }

    /// Once every namespace has listed: their objects as one list, and the merge goes live.
    fn first_list_if_complete(&mut self) -> Vec<Event<K>> {
        if !self.first.as_ref().is_some_and(|first| first.complete.iter().all(|&done| done)) {
            return Vec::new();
        }
        let first = self.first.take().expect("checked above");
        let mut events = vec![Event::Init];
        for (ns, objects) in first.objects.into_iter().enumerate() {
            for (key, object) in objects {
                self.shown[ns].insert(key);
                events.push(Event::InitApply(object));
            }
        }
        events.push(Event::InitDone);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(ns.into());
        cm.metadata.name = Some(name.into());
        cm
    }

    /// The store's content, as `ns/name`, sorted.
    fn content(store: &Store<ConfigMap>) -> Vec<String> {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o.metadata.namespace.as_deref().unwrap_or_default(),
                    o.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_re_list_of_one_namespace_keeps_the_other_namespaces_objects_in_the_store() {
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let store = reader.clone();
        let mut relists = Relists::new(2, move |key: &ObjectRef<ConfigMap>| store.get(key).map(|o| (*o).clone()));
        let mut feed = |ns: usize, event: Event<ConfigMap>| {
            let merged = relists.step(ns, event);
            for event in &merged {
                writer.apply_watcher_event(event);
            }
            merged
        };
        // The first lists: nothing reaches the store (nor readiness) until both are complete.
        assert!(feed(0, Event::Init).is_empty());
        assert!(feed(0, Event::InitApply(cm("a", "one"))).is_empty());
        assert!(feed(0, Event::InitDone).is_empty());
        assert!(feed(0, Event::Apply(cm("a", "two"))).is_empty(), "a change in a namespace already listed waits too");
        assert!(feed(1, Event::Init).is_empty());
        assert!(feed(1, Event::InitApply(cm("b", "one"))).is_empty());
        let first = feed(1, Event::InitDone);
        assert!(
            matches!(first.first(), Some(Event::Init)) && matches!(first.last(), Some(Event::InitDone)),
            "{first:?}"
        );
        assert_eq!(content(&reader), ["a/one", "a/two", "b/one"]);
        // Namespace a re-lists without a/two: a/two goes, b's objects stay.
        assert!(feed(0, Event::Init).is_empty());
        let applied = feed(0, Event::InitApply(cm("a", "one")));
        assert!(matches!(applied.as_slice(), [Event::Apply(_)]), "{applied:?}");
        let done = feed(0, Event::InitDone);
        assert!(
            matches!(done.as_slice(), [Event::Delete(gone)] if gone.metadata.name.as_deref() == Some("two")),
            "{done:?}"
        );
        assert_eq!(content(&reader), ["a/one", "b/one"]);
        // Live changes pass through as they are.
        feed(1, Event::Apply(cm("b", "two")));
        feed(1, Event::Delete(cm("b", "one")));
        assert_eq!(content(&reader), ["a/one", "b/two"]);
        // A re-list that shows nothing of b empties b only.
        feed(1, Event::Init);
        feed(1, Event::InitDone);
        assert_eq!(content(&reader), ["a/one"]);
    }

    #[test]
    fn a_namespace_that_lists_again_before_the_others_finish_is_counted_once() {
        let mut relists = Relists::new(2, |_: &ObjectRef<ConfigMap>| None);
        relists.step(0, Event::Init);
        relists.step(0, Event::InitApply(cm("a", "old")));
        relists.step(0, Event::InitDone);
        // Its watch failed and listed again: what the first list showed and this one does not is not shown.
        relists.step(0, Event::Init);
        relists.step(0, Event::InitApply(cm("a", "new")));
        relists.step(1, Event::Init);
        assert!(relists.step(1, Event::InitDone).is_empty(), "a is listing again: not complete");
        let first = relists.step(0, Event::InitDone);
        let listed: Vec<_> = first
            .iter()
            .filter_map(|e| match e {
                Event::InitApply(o) => o.metadata.name.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(listed, ["new"]);
    }
}
