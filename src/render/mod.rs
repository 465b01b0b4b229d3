//! values + templates + discovered data → typed objects. Pure: no cluster access.
//!
//! Two passes: the DittoFS config file is rendered first; its checksum (with the referenced
//! Secrets' data) feeds the pod template of the StatefulSet in the second pass.

mod checksum;
mod context;
pub mod desired;
mod filters;
mod memo;
mod objects;
mod reach;
mod source;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

pub use checksum::{checksum, short_digest};
pub use context::{Computed, ContextError, CrInfo, FileServiceSettings, Outline, RenderContext};
pub use desired::{DesiredRuntime, StoreKind};
pub use memo::{RenderMemo, Rendering};
pub use source::{CONFIG_TEMPLATE, RUNTIME_TEMPLATE, TemplateSource};

use crate::crd::DittoServer;
use crate::discover::Discovered;
use crate::kinds::{Kind, ManagedObject};
use crate::names::{CHECKSUM_ANNOTATION, LIFECYCLE_ANNOTATION, LIFECYCLE_CREATE_ONLY};
use crate::values::Values;

/// Bounds the work one template may do, so an override with an endless loop fails instead of hanging.
pub const FUEL_LIMIT: u64 = 2_000_000;
/// The most one template (or one filter call) may produce: far above any manifest (the API server
/// stores at most about 1.5 MiB per object), far below what could exhaust the operator's memory.
pub const MAX_TEMPLATE_OUTPUT: usize = 1024 * 1024;
/// The work of one render of a whole template set (every template of one DittoServer), so that
/// many small templates cannot multiply [`FUEL_LIMIT`]: the shipped set uses about a tenth.
pub const SET_FUEL_LIMIT: u64 = 3 * FUEL_LIMIT;
/// What one render of a whole set may produce, all templates together.
pub const MAX_SET_OUTPUT: usize = 4 * MAX_TEMPLATE_OUTPUT;
/// Nesting of macros, includes and blocks: the shipped templates need a few levels; a template
/// recursing into itself to grow a value fails early.
const RECURSION_LIMIT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("template {template}, line {line}: {message}")]
    Template { template: String, line: usize, message: String },
    #[error("template {template}, rendered line {line}: {message}")]
    Object { template: String, line: usize, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("template {template}: {message}")]
    Forbidden { template: String, message: String },
}

impl RenderError {
    /// The CR field at fault when the error comes from the spec (for conditions).
    pub fn is_spec_error(&self) -> bool {
        matches!(self, Self::Context(_))
    }
}

/// The outcome of rendering one DittoServer.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Sorted in apply order (ConfigMap → Secrets → Services → StatefulSet), then by name.
    /// Empty in a kept render reused over settled objects (see [`RenderMemo`]): `listing` names them.
    pub objects: Vec<ManagedObject>,
    /// Kind and name of every rendered object, in the same order; kept when the objects are not.
    pub listing: Vec<(Kind, String)>,
    /// The DittoFS config file (also in the ConfigMap); empty in a kept render.
    pub config_yaml: String,
    pub checksum: String,
    /// Adapters, stores and shares for the REST API; `None` while only the database renders.
    pub runtime: Option<Arc<crate::render::DesiredRuntime>>,
    /// The DittoServer rendered, and what the render worked out from it (names, ports, the
    /// database): what later steps need of the context. Not the values, spec and discovered
    /// data it came from: a kept render holds only what it must.
    pub cr: CrInfo,
    /// What the steps after the apply read of the computed context.
    pub outline: Outline,
}

impl Rendered {
    /// This render without its objects and config text: what a render memo keeps.
    pub fn without_objects(&self) -> Self {
        Self {
            objects: Vec::new(),
            listing: self.listing.clone(),
            config_yaml: String::new(),
            checksum: self.checksum.clone(),
            runtime: self.runtime.clone(),
            cr: self.cr.clone(),
            outline: self.outline.clone(),
        }
    }

    /// Multi-document YAML, as `dittofs-operator render` prints it.
    /// The runtime state follows as a comment, so the output stays applyable with kubectl.
    pub fn to_yaml(&self) -> String {
        let mut out: String = self.objects.iter().map(|o| format!("---\n{}", o.to_yaml())).collect();
        if let Some(runtime) = &self.runtime {
            out.push_str("# DittoFS runtime state, set up through its REST API (not a Kubernetes object):\n");
            let yaml = serde_saphyr::to_string(&**runtime).unwrap_or_default();
            for line in yaml.lines() {
                out.push_str(&format!("#   {line}\n"));
            }
        }
        out
    }
}

pub struct Renderer<'a> {
    source: &'a TemplateSource,
    /// Fuel and output bytes this render has used so far, every template together.
    spent: std::cell::Cell<(u64, usize)>,
}

impl<'a> Renderer<'a> {
    pub fn new(source: &'a TemplateSource) -> Self {
        Self { source, spent: std::cell::Cell::new((0, 0)) }
    }

    pub fn render(&self, cr: &DittoServer, values: &Values, discovered: &Discovered) -> Result<Rendered, RenderError> {
        self.spent.set((0, 0));
        let mut context = RenderContext::build(cr, values, discovered)?;
        let env = self.environment();

        // The operator-created database does not exist yet: render only what creates it.
        let database_pending = context.computed.database.db_type == crate::crd::DatabaseType::Postgres
            && context.computed.database.postgres.is_none();
        if database_pending {
            let mut objects = Vec::new();
            let values = template_context(&context);
            for name in self.source.object_templates() {
                let text = self.render_template(&env, &name, &values)?;
                for mut object in objects::parse_documents(&name, &text)? {
                    if object.kind() == "PerconaPGCluster" {
                        contain(&name, &mut object, &context.cr)?;
                        objects.push(object);
                    }
                }
            }
            return Ok(Rendered {
                listing: listing(&objects),
                objects,
                config_yaml: String::new(),
                checksum: String::new(),
                runtime: None,
                cr: context.cr,
                outline: Outline::of(&context.computed),
            });
        }
        // Converted once per pass, not once per template: the conversion costs as much as a template.
        let first_pass = template_context(&context);
        let config_yaml = self.render_template(&env, CONFIG_TEMPLATE, &first_pass)?;
        let parsed: Result<serde_json::Value, _> = serde_saphyr::from_str(&config_yaml);
        if !matches!(parsed, Ok(serde_json::Value::Object(_))) {
            return Err(RenderError::Object {
                template: CONFIG_TEMPLATE.into(),
                line: 1,
                message: "the DittoFS config must be a YAML mapping".into(),
            });
        }
        let runtime = self.render_runtime(&env, &first_pass)?;
        let sum = checksum(&config_yaml, &context.computed, discovered);
        context.computed.config_yaml = config_yaml.clone();
        context.computed.checksum = sum.clone();
        context.computed.pod_annotations.insert(CHECKSUM_ANNOTATION.into(), sum.clone());

        let mut objects = Vec::new();
        let second_pass = template_context(&context);
        for name in self.source.object_templates() {
            let text = self.render_template(&env, &name, &second_pass)?;
            for mut object in objects::parse_documents(&name, &text)? {
                contain(&name, &mut object, &context.cr)?;
                protect_data(&name, &mut object)?;
                objects.push(object);
            }
        }
        // Pruning deletes what is no longer rendered: a template set without the workload or its
        // config would delete them.
        for core in context.computed.names.core_objects() {
            if !objects.iter().any(|o| o.reference() == core) {
                return Err(RenderError::Forbidden {
                    template: "(all templates)".into(),
                    message: format!(
                        "{core} is not rendered; a DittoServer's StatefulSet and config ConfigMap cannot be removed by a template"
                    ),
                });
            }
        }
        objects.sort_by(|a, b| (a.apply_rank(), a.kind(), a.name()).cmp(&(b.apply_rank(), b.kind(), b.name())));
        for pair in objects.windows(2) {
            if pair[0].reference() == pair[1].reference() {
                return Err(RenderError::Conflict(format!("{} is rendered twice", pair[0].reference())));
            }
        }
        let RenderContext { cr, computed, .. } = context;
        Ok(Rendered {
            listing: listing(&objects),
            objects,
            config_yaml,
            checksum: sum,
            runtime: Some(Arc::new(runtime)),
            cr,
            outline: Outline::of(&computed),
        })
    }

    /// The runtime template, parsed strictly and checked for dangling references.
    fn render_runtime(
        &self,
        env: &Environment<'_>,
        context: &minijinja::Value,
    ) -> Result<crate::render::DesiredRuntime, RenderError> {
        let text = self.render_template(env, RUNTIME_TEMPLATE, context)?;
        let runtime: crate::render::DesiredRuntime = serde_saphyr::from_str(&text).map_err(|e| {
            let message = e.to_string();
            let line = message
                .split("line ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            RenderError::Object { template: RUNTIME_TEMPLATE.into(), line, message }
        })?;
        runtime.check().map_err(|message| RenderError::Object {
            template: RUNTIME_TEMPLATE.into(),
            line: 0,
            message,
        })?;
        Ok(runtime)
    }

    /// The environment of this template set, built once: building one and compiling its
    /// templates is most of a render's cost, and every DittoServer of a set shares them.
    fn environment(&self) -> Arc<Environment<'static>> {
        static ENVIRONMENTS: Mutex<BTreeMap<u64, Arc<Environment<'static>>>> = Mutex::new(BTreeMap::new());
        let key = self.source.fingerprint();
        let mut environments = ENVIRONMENTS.lock().expect("environments lock");
        if let Some(env) = environments.get(&key) {
            return env.clone();
        }
        // Template sets come and go with override ConfigMaps: keep a bounded number.
        if environments.len() >= 64 {
            environments.clear();
        }
        let env = Arc::new(self.build_environment());
        environments.insert(key, env.clone());
        env
    }

    fn build_environment(&self) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("default delimiters"),
        );
        env.set_fuel(Some(FUEL_LIMIT));
        env.set_recursion_limit(RECURSION_LIMIT);
        // A mutable namespace lets a loop grow a string without bound; the templates need none.
        env.remove_global("namespace");
        let source = self.source.clone();
        env.set_loader(move |name| Ok(source.get(name)));
        filters::register(&mut env);
        env
    }

    fn render_template(
        &self,
        env: &Environment<'_>,
        name: &str,
        context: &minijinja::Value,
    ) -> Result<String, RenderError> {
        let template = env.get_template(name).map_err(|e| template_error(name, &e))?;
        let mut output = BoundedOutput(Vec::new());
        let captured = template.render_captured_to(context, &mut output).map_err(|e| template_error(name, &e))?;
        let fuel = captured.state().fuel_levels().map_or(0, |(consumed, _)| consumed);
        let (set_fuel, set_bytes) = self.spent.get();
        let spent = (set_fuel + fuel, set_bytes + output.0.len());
        self.spent.set(spent);
        if spent.0 > SET_FUEL_LIMIT || spent.1 > MAX_SET_OUTPUT {
            return Err(RenderError::Template {
                template: name.to_string(),
                line: 0,
                message: format!(
                    "the template set is over its budget for one render ({} of {SET_FUEL_LIMIT} fuel, {} of {MAX_SET_OUTPUT} bytes, every template together)",
                    spent.0, spent.1
                ),
            });
        }
        String::from_utf8(output.0).map_err(|e| RenderError::Template {
            template: name.to_string(),
            line: 0,
            message: format!("output is not UTF-8: {e}"),
        })
    }
}

/// The context as the templates see it.
fn listing(objects: &[ManagedObject]) -> Vec<(Kind, String)> {
    objects.iter().map(|o| (o.managed_kind(), o.name().to_string())).collect()
}

fn template_context(context: &RenderContext) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(context))
}

/// A template's output, refused past [`MAX_TEMPLATE_OUTPUT`].
struct BoundedOutput(Vec<u8>);

impl std::io::Write for BoundedOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_TEMPLATE_OUTPUT {
            return Err(std::io::Error::other(format!("output is over the limit of {MAX_TEMPLATE_OUTPUT} bytes")));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps every object inside the DittoServer's reach: its namespace, and a name it owns
/// (`<name>` or `<name>-…`). Applies to shipped and overridden templates alike.
fn contain(template: &str, object: &mut ManagedObject, cr: &CrInfo) -> Result<(), RenderError> {
    let forbidden = |message: String| RenderError::Forbidden { template: template.to_string(), message };
    let reference = object.reference();
    let meta = object.meta_mut();
    match meta.namespace.clone() {
        None => meta.namespace = Some(cr.namespace.clone()),
        Some(ns) if ns == cr.namespace => {}
        Some(ns) => {
            return Err(forbidden(format!(
                "{reference} is in namespace {ns:?}; objects must be in the DittoServer's namespace {:?}",
                cr.namespace
            )));
        }
    }
    let name = object.name();
    if name != cr.name && !name.starts_with(&format!("{}-", cr.name)) {
        return Err(forbidden(format!(
            "{} is not named after the DittoServer: names must be {:?} or start with \"{}-\"",
            object.reference(),
            cr.name,
            cr.name
        )));
    }
    // `a` may not make `a-b-admin-bootstrap-credentials` before a DittoServer `a-b` exists: that
    // one would then start with a password chosen by `a`'s templates.
    for suffix in crate::names::Names::suffixes() {
        if let Some(other) = name.strip_suffix(suffix).filter(|prefix| *prefix != cr.name) {
            return Err(forbidden(format!(
                "{} is the name the DittoServer {other:?} would give its own object; a DittoServer may not make objects in another's names",
                object.reference()
            )));
        }
    }
    Ok(())
}

/// What no template may change, because data depends on it: claims are retained when the
/// StatefulSet is deleted or scaled down, and Secrets are created once and never updated or
/// pruned (a new admin password would not work, a new JWT key would roll the pod).
fn protect_data(template: &str, object: &mut ManagedObject) -> Result<(), RenderError> {
    let reference = object.reference();
    match object {
        ManagedObject::StatefulSet(sts) => {
            let spec = sts.spec.get_or_insert_default();
            let policy = spec.persistent_volume_claim_retention_policy.get_or_insert_default();
            for (field, value) in [("whenDeleted", &mut policy.when_deleted), ("whenScaled", &mut policy.when_scaled)] {
                match value.as_deref() {
                    None => *value = Some("Retain".into()),
                    Some("Retain") => {}
                    Some(other) => {
                        return Err(RenderError::Forbidden {
                            template: template.to_string(),
                            message: format!(
                                "{reference}: spec.persistentVolumeClaimRetentionPolicy.{field} is {other:?}; it must be \"Retain\": the operator never deletes claims"
                            ),
                        });
                    }
                }
            }
        }
        // Every Secret is created once and left alone (the kinds table: `create_only`). Only
        // Opaque: a template must not mint a service-account token or a dockerconfig.
        ManagedObject::Secret(secret) => {
            if let Some(other) = secret.type_.as_deref().filter(|t| *t != "Opaque") {
                return Err(RenderError::Forbidden {
                    template: template.to_string(),
                    message: format!("{reference}: type {other:?}; a rendered Secret may only be Opaque"),
                });
            }
            secret
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(LIFECYCLE_ANNOTATION.into(), LIFECYCLE_CREATE_ONLY.into());
        }
        _ => {}
    }
    Ok(())
}

fn template_error(name: &str, error: &minijinja::Error) -> RenderError {
    let mut message = error.kind().to_string();
    if let Some(detail) = error.detail() {
        message = format!("{message}: {detail}");
    }
    if let Some(source) = std::error::Error::source(error) {
        message = format!("{message}: {source}");
    }
    RenderError::Template {
        template: error.name().unwrap_or(name).to_string(),
        line: error.line().unwrap_or(0),
        message,
    }
}

#[cfg(test)]
mod tests_support {
    use std::collections::BTreeMap;

    use super::*;
    use crate::values::ValuesBuilder;

    const CR: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo, namespace: ns}\nspec:\n  storage: {metadataSize: 1Gi}\n";

    /// Renders the CR `demo` with the embedded templates and these overrides.
    pub fn render_source(overrides: &[(&str, String)]) -> Result<Rendered, RenderError> {
        let server: DittoServer = serde_saphyr::from_str(CR).unwrap();
        let values = ValuesBuilder::new().build().unwrap();
        let discovered =
            crate::discover::resolve(&server.spec, "demo", "default", &values, &Default::default(), false).unwrap();
        let map: BTreeMap<String, String> = overrides.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let source = TemplateSource::with_overrides(map);
        Renderer::new(&source).render(&server, &values, &discovered)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::render_source as render_with;
    use super::*;

    fn shipped(name: &str) -> String {
        TemplateSource::embedded().get(name).unwrap()
    }

    #[test]
    fn the_checksum_is_keyed() {
        let server: DittoServer = serde_saphyr::from_str(
            "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo, namespace: ns}\nspec:\n  storage: {metadataSize: 1Gi}\n",
        )
        .unwrap();
        let values = crate::values::ValuesBuilder::new().build().unwrap();
        let source = TemplateSource::embedded();
        let with_key = |key: &[u8]| {
            let mut discovered =
                crate::discover::resolve(&server.spec, "demo", "default", &values, &Default::default(), false).unwrap();
            discovered.checksum_key = key.to_vec();
            Renderer::new(&source).render(&server, &values, &discovered).unwrap().checksum
        };
        assert_eq!(with_key(b"one"), with_key(b"one"), "stable for one key");
        assert_ne!(with_key(b"one"), with_key(b"two"), "without the key, no guess can be checked");
    }

    #[test]
    fn backups_without_a_credentials_secret_use_the_pods_own_identity() {
        let server: DittoServer = serde_saphyr::from_str(
            "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: demo, namespace: ns}\nspec:\n  storage: {metadataSize: 1Gi}\n  percona:\n    enabled: true\n    backup: {enabled: true, bucket: b1b, endpoint: 'https://s3.example.com/'}\n",
        )
        .unwrap();
        let values = crate::values::ValuesBuilder::new().build().unwrap();
        let discovered =
            crate::discover::resolve(&server.spec, "demo", "default", &values, &Default::default(), true).unwrap();
        let rendered = Renderer::new(&TemplateSource::embedded()).render(&server, &values, &discovered).unwrap();
        let cluster = rendered.objects.iter().find(|o| o.kind() == "PerconaPGCluster").expect("cluster");
        let cluster = cluster.to_json();
        let pgbackrest = &cluster["spec"]["backups"]["pgbackrest"];
        assert_eq!(pgbackrest["global"]["repo1-s3-key-type"], "auto");
        assert!(pgbackrest.get("configuration").is_none(), "{pgbackrest}");
        assert_eq!(pgbackrest["repos"][0]["s3"]["endpoint"], "s3.example.com", "scheme and slash dropped");
        assert_eq!(pgbackrest["repos"][0]["s3"]["region"], "eu-west-1");
        assert_eq!(pgbackrest["global"]["repo1-retention-full"], "7");
    }

    #[test]
    fn claims_are_retained_whatever_a_template_says() {
        let deleting = shipped("statefulset.yaml.j2").replace("whenScaled: \"Retain\"", "whenScaled: \"Delete\"");
        let err = render_with(&[("statefulset.yaml.j2", deleting)]).unwrap_err().to_string();
        assert!(err.contains("statefulset.yaml.j2"), "{err}");
        assert!(err.contains("persistentVolumeClaimRetentionPolicy.whenScaled is \"Delete\""), "{err}");
        // Left out: filled in as Retain.
        let silent = shipped("statefulset.yaml.j2").replace(
            "  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: \"Retain\"\n    whenScaled: \"Retain\"\n",
            "",
        );
        assert!(!silent.contains("persistentVolumeClaimRetentionPolicy"));
        let rendered = render_with(&[("statefulset.yaml.j2", silent)]).unwrap();
        let sts = rendered.objects.iter().find_map(|o| match o {
            ManagedObject::StatefulSet(s) => Some(s.clone()),
            _ => None,
        });
        let policy = sts.unwrap().spec.unwrap().persistent_volume_claim_retention_policy.unwrap();
        assert_eq!((policy.when_deleted.as_deref(), policy.when_scaled.as_deref()), (Some("Retain"), Some("Retain")));
    }

    #[test]
    fn a_template_set_without_the_workload_or_its_config_is_refused() {
        let err = render_with(&[("statefulset.yaml.j2", String::new())]).unwrap_err().to_string();
        assert!(err.contains("StatefulSet/demo is not rendered"), "{err}");
        let err = render_with(&[("configmap.yaml.j2", String::new())]).unwrap_err().to_string();
        assert!(err.contains("ConfigMap/demo-config is not rendered"), "{err}");
    }

    #[test]
    fn generated_credentials_stay_create_only_whatever_a_template_says() {
        let plain = shipped("secret-jwt.yaml.j2").replace(", {\"dittofs.dittofs.com/lifecycle\": \"create-only\"}", "");
        assert!(!plain.contains("create-only"), "the override drops the annotation");
        let rendered = render_with(&[("secret-jwt.yaml.j2", plain)]).unwrap();
        let jwt = rendered.objects.iter().find(|o| o.reference() == "Secret/demo-jwt-secret").unwrap();
        assert_eq!(jwt.meta().annotations.as_ref().unwrap()[LIFECYCLE_ANNOTATION], LIFECYCLE_CREATE_ONLY);
    }
}

/// Templates that would make the operator allocate without end fail with a message instead.
#[cfg(test)]
mod bounds {
    use super::tests_support::render_source;

    fn fails(template: &str, expect: &str) {
        let text = format!("{template}\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: demo-extra}}\n");
        let err = render_source(&[("extra.yaml.j2", text)]).unwrap_err().to_string();
        assert!(err.contains("extra.yaml.j2") && err.contains(expect), "{err}");
    }

    #[test]
    fn huge_indentation_is_refused() {
        fails("{{ 'x\\ny' | indent(10000000000) }}", "width 10000000000 is over the limit of 64");
        fails("{{ 'x' | nindent(65) }}", "over the limit of 64");
    }

    #[test]
    fn output_past_the_limit_is_refused() {
        fails("{% for i in range(20000) %}{{ 'x' * 100 }}{% endfor %}", "over the limit");
    }

    /// Many templates each within its own fuel cannot add up past the set's budget.
    #[test]
    fn many_templates_share_one_budget() {
        let busy = "{% for i in range(90000) %}{% endfor %}{% for i in range(90000) %}{% endfor %}\n".to_string();
        let many: Vec<(String, String)> = (0..20).map(|i| (format!("busy-{i:02}.yaml.j2"), busy.clone())).collect();
        let refs: Vec<(&str, String)> = many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let err = render_source(&refs).unwrap_err().to_string();
        assert!(err.contains("over its budget for one render"), "{err}");
        // One such template alone renders.
        render_source(&refs[..1]).unwrap();
    }

    #[test]
    fn no_object_in_the_names_of_another_dittoserver() {
        let squat = "apiVersion: v1\nkind: Secret\nmetadata: {name: demo-b-admin-bootstrap-credentials}\nstringData: {password: chosen}\n";
        let err = render_source(&[("squat.yaml.j2", squat.to_string())]).unwrap_err().to_string();
        assert!(err.contains("the name the DittoServer \"demo-b\" would give its own object"), "{err}");
        let own = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo-extra}\n";
        render_source(&[("extra.yaml.j2", own.to_string())]).unwrap();
    }

    #[test]
    fn a_rendered_secret_may_only_be_opaque() {
        let token = "apiVersion: v1\nkind: Secret\nmetadata: {name: demo-token, annotations: {kubernetes.io/service-account.name: default}}\ntype: kubernetes.io/service-account-token\n";
        let err = render_source(&[("token.yaml.j2", token.to_string())]).unwrap_err().to_string();
        assert!(err.contains("token.yaml.j2") && err.contains("a rendered Secret may only be Opaque"), "{err}");
        let opaque = "apiVersion: v1\nkind: Secret\nmetadata: {name: demo-extra}\ntype: Opaque\nstringData: {a: b}\n";
        render_source(&[("extra.yaml.j2", opaque.to_string())]).unwrap();
    }

    #[test]
    fn doubling_through_recursion_or_a_namespace_is_refused() {
        fails(
            "{% macro grow(s, n) %}{% if n %}{{ grow(s ~ s, n - 1) }}{% else %}{{ s | length }}{% endif %}{% endmacro %}{{ grow('x', 60) }}",
            "recursion",
        );
        fails("{% set ns = namespace(s='x') %}", "namespace");
    }
}
