//! Renders kept per DittoServer: a pass whose inputs are the ones of the last render of that
//! DittoServer, and whose objects the cache shows as that render's plan applied them, reuses it
//! without rendering or reading any object back. The inputs are everything a render reads: the
//! CR's name, namespace and generation (its spec changes bump the generation), the template
//! set, the values and the discovered data (Secrets' data included, so a rotation renders anew;
//! the credentials a render generates only by which ones, see [`Generated`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;

use super::{RenderError, Rendered, Renderer, TemplateSource};
use crate::apply::AppliedSet;
use crate::crd::DittoServer;
use crate::discover::Discovered;
use crate::values::Values;

/// Only fingerprints of the inputs are kept, not copies, and no objects: a pass that needs them
/// (something changed in the cluster) renders again. Memory grows with the DittoServers.
struct Kept {
    generation: Option<i64>,
    templates: u64,
    inputs: u64,
    /// Which credentials this render generated (their Secrets did not exist yet).
    generated: Generated,
    /// The render without its objects, nor its runtime state: that is kept as compact JSON
    /// (a fifth of its parsed size) and read back when the render is reused.
    rest: Arc<Rendered>,
    runtime: Option<Box<[u8]>>,
    /// How the plan of this render applied its objects, once it did.
    applied: Mutex<Option<Arc<AppliedSet>>>,
}

/// One pass's render.
pub struct Rendering {
    /// Without objects when `settled` is set.
    pub rendered: Arc<Rendered>,
    /// Set when the inputs are the last render's and the cluster holds every object as its plan
    /// applied them: plan from this ([`crate::apply::settled_plan`]), there is nothing to write.
    pub settled: Option<Arc<AppliedSet>>,
    kept: Arc<Kept>,
}

impl Rendering {
    /// Notes how this render's objects were applied (or found already in place), so later
    /// passes over the same inputs need neither a render nor the objects.
    pub fn note_applied(&self, set: AppliedSet) {
        *self.kept.applied.lock().expect("memo lock") = Some(Arc::new(set));
    }
}

/// A fingerprint of the values and the discovered data (Secrets' data, the checksum key and the
/// pinned PostgreSQL included: they are not serialized). Not of the generated credentials: a
/// render that generated them creates their Secrets, and the pass after finds them instead, with
/// the same data (in `secret_data`); see [`Generated`] for how a kept render is matched.
fn fingerprint(values: &Values, discovered: &Discovered) -> u64 {
    // Destructured so that a new field of `Discovered` must be placed here or there.
    let Discovered { postgres, pinned_postgres, generated: _, secret_data, checksum_key } = discovered;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(values).expect("values serialize").hash(&mut hasher);
    serde_json::to_vec(postgres).expect("the connection serializes").hash(&mut hasher);
    serde_json::to_vec(pinned_postgres).expect("pinned version serializes").hash(&mut hasher);
    secret_data.hash(&mut hasher);
    checksum_key.hash(&mut hasher);
    hasher.finish()
}

/// Which generated credentials a render had: each is generated only while its Secret is missing.
/// A kept render serves a pass that generates no more than it did. Those it generated, it also
/// rendered as create-only Secrets, so a pass that generates one again (its Secret gone) finds
/// that object missing from the cache and renders anew. One it did not generate must render anew.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Generated([bool; 4]);

impl Generated {
    fn of(discovered: &Discovered) -> Self {
        let g = &discovered.generated;
        Self([g.jwt_secret.is_some(), g.admin_password.is_some(), g.operator_password.is_some(), g.api_tls.is_some()])
    }

    /// Whether a render that generated `self` can serve a pass that generates `now`.
    fn covers(self, now: Self) -> bool {
        self.0.iter().zip(now.0).all(|(kept, now)| *kept || !now)
    }
}

#[derive(Default)]
pub struct RenderMemo {
    kept: Mutex<HashMap<(String, String), Arc<Kept>>>,
    /// Renders done (not reused), for tests.
    renders: std::sync::atomic::AtomicU64,
}

impl RenderMemo {
    /// The render of `cr` from these inputs: the kept one, without objects, when they are
    /// unchanged and `settled` accepts how its objects were applied; else a render.
    pub fn render(
        &self,
        source: &TemplateSource,
        cr: &DittoServer,
        values: &Values,
        discovered: &Discovered,
        settled: impl FnOnce(&AppliedSet) -> bool,
    ) -> Result<Rendering, RenderError> {
        let key = (cr.namespace_or_default(), cr.name_any());
        let templates = source.fingerprint();
        let inputs = fingerprint(values, discovered);
        let generated = Generated::of(discovered);
        let kept = self.kept.lock().expect("memo lock").get(&key).cloned();
        if let Some(kept) = kept
            && kept.generation == cr.metadata.generation
            && kept.templates == templates
            && kept.inputs == inputs
            && kept.generated.covers(generated)
        {
            let applied = kept.applied.lock().expect("memo lock").clone();
            if let Some(set) = applied
                && settled(&set)
            {
                let rendered = match &kept.runtime {
                    Some(json) => {
                        let runtime = serde_json::from_slice(json).expect("kept runtime state reads back");
                        Arc::new(Rendered { runtime: Some(Arc::new(runtime)), ..Rendered::clone(&kept.rest) })
                    }
                    None => kept.rest.clone(),
                };
                return Ok(Rendering { rendered, settled: Some(set), kept });
            }
        }
        let rendered = Renderer::new(source).render(cr, values, discovered)?;
        self.renders.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rest = Arc::new(Rendered { runtime: None, ..rendered.without_objects() });
        let runtime = rendered
            .runtime
            .as_ref()
            .map(|r| serde_json::to_vec(&**r).expect("runtime state serializes").into_boxed_slice());
        let kept = Arc::new(Kept {
            generation: cr.metadata.generation,
            templates,
            inputs,
            generated,
            rest,
            runtime,
            applied: Mutex::default(),
        });
        self.kept.lock().expect("memo lock").insert(key, kept.clone());
        Ok(Rendering { rendered: Arc::new(rendered), settled: None, kept })
    }

    /// [`RenderMemo::render`] on the blocking pool, at most `permits` at a time: a template
    /// override may spend its whole fuel budget (seconds), which on the async workers would stall
    /// every watch, reconcile and probe meanwhile.
    pub async fn render_off_the_workers(
        self: &Arc<Self>,
        permits: &tokio::sync::Semaphore,
        source: TemplateSource,
        cr: DittoServer,
        values: Values,
        discovered: Discovered,
        settled: impl FnOnce(&AppliedSet) -> bool + Send + 'static,
    ) -> Result<Rendering, RenderError> {
        let _permit = permits.acquire().await.expect("the render semaphore is never closed");
        let memo = self.clone();
        tokio::task::spawn_blocking(move || memo.render(&source, &cr, &values, &discovered, settled))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
    }

    /// Forgets a deleted DittoServer.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.kept.lock().expect("memo lock").remove(&(namespace.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(yaml: &str) -> (DittoServer, Values, Discovered) {
        let server: DittoServer = serde_saphyr::from_str(yaml).unwrap();
        let values = crate::values::ValuesBuilder::new().build().unwrap();
        let discovered =
            crate::discover::resolve(&server.spec, "demo", "default", &values, &Default::default(), false).unwrap();
        (server, values, discovered)
    }

    const CR: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo, namespace: ns, generation: 1}\nspec:\n  storage: {metadataSize: 1Gi}\n";

    fn applied(rendering: &Rendering) -> AppliedSet {
        let objects = rendering.rendered.listing.iter().map(|(kind, name)| (*kind, name.clone(), 7)).collect();
        AppliedSet { owner_uid: "uid".into(), objects }
    }

    /// A render that spends most of its fuel leaves the async runtime free: on a runtime of one
    /// thread, a task keeps ticking while it runs.
    #[tokio::test(flavor = "current_thread")]
    async fn a_long_render_leaves_the_runtime_free() {
        let (server, values, discovered) = inputs(CR);
        let busy = "{% for i in range(90000) %}{% endfor %}{% for i in range(90000) %}{% endfor %}\n".to_string();
        let overrides: std::collections::BTreeMap<String, String> =
            (0..10).map(|i| (format!("busy-{i}.yaml.j2"), busy.clone())).collect();
        let source = TemplateSource::with_overrides(overrides);
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let memo = Arc::new(RenderMemo::default());
        let permits = tokio::sync::Semaphore::new(1);
        let started = std::time::Instant::now();
        memo.render_off_the_workers(&permits, source, server, values, discovered, |_| true).await.unwrap();
        let took = started.elapsed();
        ticker.abort();
        let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
        // At least a tenth of the ticks a free runtime makes in that time (it makes one per 5 ms).
        let expected = took.as_millis() as u64 / 5;
        assert!(took.as_millis() >= 50, "the render was too quick to tell ({took:?})");
        assert!(ticks * 10 >= expected, "{ticks} ticks during a render of {took:?}");
    }

    #[test]
    fn unchanged_inputs_over_settled_objects_reuse_the_render_and_any_change_renders_anew() {
        let memo = RenderMemo::default();
        let renders = || memo.renders.load(std::sync::atomic::Ordering::Relaxed);
        let source = TemplateSource::embedded();
        let (server, values, discovered) = inputs(CR);
        let fresh = Renderer::new(&source).render(&server, &values, &discovered).unwrap();
        let first = memo.render(&source, &server, &values, &discovered, |_| true).unwrap();
        assert!(first.settled.is_none());
        assert_eq!(first.rendered.objects, fresh.objects);
        assert_eq!(renders(), 1);

        // Same inputs, but not applied yet: its objects are needed, so it renders again.
        let again = memo.render(&source, &server, &values, &discovered, |_| true).unwrap();
        assert_eq!((renders(), again.rendered.objects.len()), (2, fresh.objects.len()));
        let set = applied(&again);
        again.note_applied(set.clone());
        // Applied, but the cache says something changed since: rendered again.
        let changed = memo
            .render(&source, &server, &values, &discovered, |seen| {
                assert_eq!(seen, &set);
                false
            })
            .unwrap();
        assert!(changed.settled.is_none());
        assert_eq!(renders(), 3);
        changed.note_applied(set.clone());

        // Applied and settled: reused without rendering, without objects.
        let reused = memo.render(&source, &server, &values, &discovered, |_| true).unwrap();
        assert_eq!(renders(), 3, "same inputs over settled objects: no render");
        assert_eq!(reused.settled.as_deref(), Some(&set));
        assert!(reused.rendered.objects.is_empty());
        assert_eq!(reused.rendered.listing, fresh.listing);
        assert_eq!(reused.rendered.checksum, fresh.checksum);
        assert_eq!((&reused.rendered.cr.name, &reused.rendered.runtime), (&fresh.cr.name, &fresh.runtime));

        let mut edited = server.clone();
        edited.metadata.generation = Some(2);
        edited.spec.replicas = Some(0);
        memo.render(&source, &edited, &values, &discovered, |_| true).unwrap().note_applied(set.clone());
        assert_eq!(renders(), 4, "a spec change renders anew");

        let mut rotated = discovered.clone();
        rotated.secret_data.insert("s".into(), [("k".into(), b"new".to_vec())].into());
        memo.render(&source, &edited, &values, &rotated, |_| true).unwrap().note_applied(set.clone());
        assert_eq!(renders(), 5, "a Secret's data renders anew");

        let overridden = TemplateSource::with_overrides([("extra.yaml.j2".into(), String::new())].into());
        memo.render(&overridden, &edited, &values, &rotated, |_| true).unwrap().note_applied(set.clone());
        assert_eq!(renders(), 6, "another template set renders anew");
        memo.render(&overridden, &edited, &values, &rotated, |_| true).unwrap();
        assert_eq!(renders(), 6);
    }
    #[test]
    fn credentials_generated_by_the_kept_render_and_since_created_render_nothing_new() {
        let memo = RenderMemo::default();
        let renders = || memo.renders.load(std::sync::atomic::Ordering::Relaxed);
        let source = TemplateSource::embedded();
        let server: DittoServer = serde_saphyr::from_str(CR).unwrap();
        let values = crate::values::ValuesBuilder::new().build().unwrap();
        // The first pass: no Secret exists, every credential is generated.
        let creating =
            crate::discover::resolve(&server.spec, "demo", "default", &values, &Default::default(), true).unwrap();
        assert_eq!(Generated::of(&creating), Generated([true; 4]));
        let first = memo.render(&source, &server, &values, &creating, |_| true).unwrap();
        let set = applied(&first);
        first.note_applied(set.clone());
        // The next pass finds the Secrets it created, holding the same data.
        let created = Discovered { generated: Default::default(), ..creating.clone() };
        let next = memo.render(&source, &server, &values, &created, |seen| seen == &set).unwrap();
        assert_eq!((renders(), next.settled.as_deref()), (1, Some(&set)), "the Secrets it created: no render");

        // A Secret gone again is generated again: the kept render may serve only if the cache
        // shows its objects (its Secret among them), which is for the cache to say.
        let mut regenerating = created.clone();
        regenerating.generated.operator_password = Some("fresh".into());
        let again = memo.render(&source, &server, &values, &regenerating, |_| false).unwrap();
        assert!(again.settled.is_none());
        assert_eq!(renders(), 2);
        // That render generated only the operator's password: a pass that must generate
        // another credential renders anew, whatever the cache says.
        again.note_applied(set.clone());
        let mut more = regenerating.clone();
        more.generated.jwt_secret = Some("fresh".into());
        assert!(memo.render(&source, &server, &values, &more, |_| true).unwrap().settled.is_none());
        assert_eq!(renders(), 3);
    }
}
