//! Renders kept per DittoServer: a pass whose inputs are the ones of the last render of that
//! DittoServer reuses its result. The inputs are everything a render reads: the CR's name,
//! namespace and generation (its spec changes bump the generation), the template set, the
//! values and the discovered data (Secrets' data included, so a rotation renders anew).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;

use super::{RenderError, Rendered, Renderer, TemplateSource};
use crate::crd::DittoServer;
use crate::discover::Discovered;
use crate::kinds::{Kind, ManagedObject};
use crate::values::Values;

/// Only fingerprints of the inputs are kept, not copies, and the objects as compact JSON (a
/// fifth of their typed size): memory grows with the DittoServers.
struct Kept {
    generation: Option<i64>,
    templates: u64,
    inputs: u64,
    /// The render without its objects.
    rest: Rendered,
    objects: Vec<(Kind, Box<[u8]>)>,
}

impl Kept {
    fn new(generation: Option<i64>, templates: u64, inputs: u64, mut rendered: Rendered) -> Self {
        let objects = std::mem::take(&mut rendered.objects)
            .iter()
            .map(|o| (o.managed_kind(), o.to_vec().into_boxed_slice()))
            .collect();
        Self { generation, templates, inputs, rest: rendered, objects }
    }

    fn rendered(&self) -> Rendered {
        let objects = self
            .objects
            .iter()
            .map(|(kind, json)| ManagedObject::from_slice(*kind, json).expect("a kept object reads back"))
            .collect();
        Rendered { objects, ..self.rest.clone() }
    }
}

/// A fingerprint of the values and the discovered data (Secrets' data, the checksum key and the
/// pinned PostgreSQL included: they are not serialized).
fn fingerprint(values: &Values, discovered: &Discovered) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(values).expect("values serialize").hash(&mut hasher);
    serde_json::to_vec(discovered).expect("discovered data serializes").hash(&mut hasher);
    serde_json::to_vec(&discovered.pinned_postgres).expect("pinned version serializes").hash(&mut hasher);
    discovered.secret_data.hash(&mut hasher);
    discovered.checksum_key.hash(&mut hasher);
    hasher.finish()
}

#[derive(Default)]
pub struct RenderMemo {
    kept: Mutex<HashMap<(String, String), Arc<Kept>>>,
    /// Renders done (not reused), for tests.
    renders: std::sync::atomic::AtomicU64,
}

impl RenderMemo {
    /// The render of `cr` from these inputs: the kept one when they are unchanged.
    pub fn render(
        &self,
        source: &TemplateSource,
        cr: &DittoServer,
        values: &Values,
        discovered: &Discovered,
    ) -> Result<Arc<Rendered>, RenderError> {
        let key = (cr.namespace().unwrap_or_default(), cr.name_any());
        let templates = source.fingerprint();
        let inputs = fingerprint(values, discovered);
        let kept = self.kept.lock().expect("memo lock").get(&key).cloned();
        if let Some(kept) = kept
            && kept.generation == cr.metadata.generation
            && kept.templates == templates
            && kept.inputs == inputs
        {
            return Ok(Arc::new(kept.rendered()));
        }
        let rendered = Renderer::new(source).render(cr, values, discovered)?;
        self.renders.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kept = Kept::new(cr.metadata.generation, templates, inputs, rendered);
        let rendered = Arc::new(kept.rendered());
        self.kept.lock().expect("memo lock").insert(key, Arc::new(kept));
        Ok(rendered)
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
        let discovered = crate::discover::resolve(&server.spec, "demo", &values, &Default::default(), false).unwrap();
        (server, values, discovered)
    }

    const CR: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo, namespace: ns, generation: 1}\nspec:\n  storage: {metadataSize: 1Gi}\n";

    #[test]
    fn unchanged_inputs_reuse_the_render_and_any_change_renders_anew() {
        let memo = RenderMemo::default();
        let renders = || memo.renders.load(std::sync::atomic::Ordering::Relaxed);
        let source = TemplateSource::embedded();
        let (server, values, discovered) = inputs(CR);
        let first = memo.render(&source, &server, &values, &discovered).unwrap();
        let again = memo.render(&source, &server, &values, &discovered).unwrap();
        assert_eq!(renders(), 1, "same inputs, same render");
        // What is kept reads back as exactly what was rendered.
        let fresh = Renderer::new(&source).render(&server, &values, &discovered).unwrap();
        assert_eq!(again.objects, fresh.objects);
        assert_eq!(first.objects, fresh.objects);
        assert_eq!((&again.checksum, &again.config_yaml), (&fresh.checksum, &fresh.config_yaml));

        let mut edited = server.clone();
        edited.metadata.generation = Some(2);
        edited.spec.replicas = Some(0);
        memo.render(&source, &edited, &values, &discovered).unwrap();
        assert_eq!(renders(), 2, "a spec change renders anew");

        let mut rotated = discovered.clone();
        rotated.secret_data.insert("s".into(), [("k".into(), b"new".to_vec())].into());
        memo.render(&source, &edited, &values, &rotated).unwrap();
        assert_eq!(renders(), 3, "a Secret's data renders anew");

        let overridden = TemplateSource::with_overrides([("extra.yaml.j2".into(), String::new())].into());
        memo.render(&overridden, &edited, &values, &rotated).unwrap();
        assert_eq!(renders(), 4, "another template set renders anew");
        memo.render(&overridden, &edited, &values, &rotated).unwrap();
        assert_eq!(renders(), 4);
    }
}
