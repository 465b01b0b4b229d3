//! The pure middle of a pass: from what was gathered and the apply mode to what happens (hold
//! with these conditions, apply only the database, or apply everything), and from a plan to the
//! `InSync` condition. No I/O: unit tests call every branch without an apiserver.

use std::time::Duration;

use kube::ResourceExt;

use crate::apply::{Plan, Rejected};
use crate::conditions::{CONFIG_READY, DATABASE_READY, Decided, IN_SYNC, TEMPLATES_READY};
use crate::crd::DittoServer;
use crate::discover::{DiscoverError, Discovered};
use crate::gather::{DatabaseGate, Gathered};
use crate::names::{IMMUTABLE_CHANGE_ANNOTATION, PAUSE_ANNOTATION, PAUSED, RECREATE};
use crate::overrides::Effective;
use crate::percona::{self, NotReady};
use crate::render::{RenderError, Rendered};

/// Waiting on something outside our control (a Secret that does not exist yet, the database).
pub const WAIT: Duration = Duration::from_secs(30);

/// Whether a pass may write, replacing the `paused` and `--dry-run` booleans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// The DittoServer carries `dittofs.dittofs.com/reconcile: paused`.
    Paused,
    /// The operator runs with `--dry-run`.
    DryRun,
    /// `diff` and `render`: what a pass in [`Mode::Apply`] would do, decided without writing or
    /// generating anything (generated credentials not found show as placeholders).
    Preview,
}

impl Mode {
    /// The annotation on the DittoServer wins over the operator's flag (it is the more specific).
    pub fn of(server: &DittoServer, dry_run: bool) -> Self {
        if server.annotations().get(PAUSE_ANNOTATION).map(String::as_str) == Some(PAUSED) {
            Self::Paused
        } else if dry_run {
            Self::DryRun
        } else {
            Self::Apply
        }
    }

    pub fn writes(self) -> bool {
        self == Self::Apply
    }

    /// Whether the cluster the operator creates is applied on its own while it is not ready
    /// (a preview shows what the apply would do).
    fn applies_database_first(self) -> bool {
        matches!(self, Self::Apply | Self::Preview)
    }

    /// Why nothing is written, for the InSync message.
    fn why_held(self) -> String {
        match self {
            Self::Paused => format!("{PAUSE_ANNOTATION}: {PAUSED}"),
            Self::Preview => "this is a preview".into(),
            _ => "the operator runs with --dry-run".into(),
        }
    }
}

/// When to look again after a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Only an edit (watched) can fix it: a bad spec or template.
    Change,
    /// Something outside our control may fix it by itself: look again after [`WAIT`].
    Wait,
}

/// Nothing (more) is applied: these conditions, a Warning Event with `reason` and `message`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    pub cause: Cause,
    pub decided: Vec<Decided>,
    pub reason: std::borrow::Cow<'static, str>,
    pub message: String,
    pub next: Next,
}

/// What holds a pass back, for the commands that report it in their own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The template overrides cannot be used.
    Templates,
    /// A referenced Secret or key is missing.
    Secret,
    /// The admin Secret the operator generated is gone after DittoFS has run.
    AdminSecretLost,
    /// The database is not ready.
    Database,
    /// The templates do not render.
    Render,
    /// The cluster cannot take the objects (a CRD missing, someone else's object in the way).
    Cluster,
}

/// What a pass does; `effective` is the templates and values to render with.
#[derive(Debug)]
pub enum Decision<'a> {
    Hold(Hold),
    /// The cluster the operator creates is not ready: apply only it, then hold with
    /// [`database_hold`].
    DatabaseOnly {
        effective: &'a Effective,
        discovered: Discovered,
        templates_ready: Decided,
        not_ready: NotReady,
    },
    /// Render and apply everything.
    Apply {
        effective: &'a Effective,
        discovered: Discovered,
        templates_ready: Decided,
    },
}

/// Decides a pass from what was gathered.
pub fn decide<'a>(server: &DittoServer, gathered: &'a Gathered, mode: Mode) -> Decision<'a> {
    let effective = match &gathered.overrides {
        Ok(effective) => effective,
        Err(blocked) => {
            return Decision::Hold(Hold {
                cause: Cause::Templates,
                decided: vec![Decided::new(TEMPLATES_READY, false, blocked.reason, blocked.message.clone())],
                reason: blocked.reason.into(),
                message: blocked.message.clone(),
                next: Next::Change,
            });
        }
    };
    let templates_ready = Decided::new(
        TEMPLATES_READY,
        true,
        if effective.origins.is_empty() { "Embedded" } else { "OverridesApplied" },
        effective.describe(),
    );
    let discovered = match gathered.discover(server, &effective.values, mode.writes()) {
        Ok(discovered) => discovered,
        Err(DiscoverError::Missing { field, message }) => {
            let database = field.starts_with("spec.database");
            let reason = if database { "DatabaseSecretMissing" } else { "SecretMissing" };
            let message = format!("{field}: {message}");
            let mut decided = vec![templates_ready, Decided::new(CONFIG_READY, false, reason, message.clone())];
            if database {
                decided.push(Decided::new(DATABASE_READY, false, reason, message.clone()));
            }
            return Decision::Hold(Hold {
                cause: Cause::Secret,
                decided,
                reason: reason.into(),
                message,
                next: Next::Wait,
            });
        }
    };
    if let Some(message) = admin_secret_lost(server, gathered, &discovered) {
        let decided = vec![templates_ready, Decided::new(CONFIG_READY, false, "SecretMissing", message.clone())];
        let reason = "SecretMissing".into();
        return Decision::Hold(Hold { cause: Cause::AdminSecretLost, decided, reason, message, next: Next::Wait });
    }
    match gathered.database_gate() {
        DatabaseGate::Open => Decision::Apply { effective, discovered, templates_ready },
        DatabaseGate::DatabaseOnly(not_ready) if mode.applies_database_first() => {
            Decision::DatabaseOnly { effective, discovered, templates_ready, not_ready: not_ready.clone() }
        }
        DatabaseGate::DatabaseOnly(not_ready) | DatabaseGate::Closed(not_ready) => {
            Decision::Hold(database_hold(templates_ready, not_ready, None))
        }
    }
}

/// The admin Secret the operator generated is gone after DittoFS has started: a new password
/// would not work (DittoFS sets the admin password on first boot only and ignores it after), so
/// say what to do instead of generating one. A lost JWT key is generated again on purpose: it
/// only signs tokens, so a new one signs clients out and rolls the pod once, and loses nothing.
pub fn admin_secret_lost(server: &DittoServer, gathered: &Gathered, discovered: &Discovered) -> Option<String> {
    if !gathered.has_run || discovered.generated.admin_password.is_none() {
        return None;
    }
    let secret = crate::names::Names::for_cr(&server.name_any()).admin_secret;
    Some(format!(
        "Secret {secret} is missing although this DittoServer has run before, so it is not generated again: DittoFS keeps the admin password it first started with and ignores a new one. Re-create the Secret with keys password (that password) and username (admin), or set spec.identity.admin.passwordSecretRef; nothing is applied until then"
    ))
}

/// The database is not ready: never roll the server to a config that cannot start. `blocked`:
/// the operator-created cluster itself could not be applied, which is then the news.
pub fn database_hold(templates_ready: Decided, not_ready: &NotReady, blocked: Option<Decided>) -> Hold {
    let mut decided = vec![Decided::new(DATABASE_READY, false, not_ready.reason, not_ready.message.clone())];
    let (reason, message) = match blocked {
        Some(problem) => {
            let said = (problem.reason.clone(), problem.message.clone());
            if problem.type_ != TEMPLATES_READY {
                decided.push(templates_ready);
            }
            decided.push(problem);
            said
        }
        None => {
            decided.push(templates_ready);
            (not_ready.reason.into(), not_ready.message.clone())
        }
    };
    Hold { cause: Cause::Database, decided, reason, message, next: Next::Wait }
}

/// The condition a failed render sets: `ConfigReady` for a spec error, else `TemplatesReady` (a
/// shipped or overridden template failed; nothing is applied, objects stay as they are).
pub fn render_failure(error: &RenderError) -> Decided {
    if error.is_spec_error() {
        Decided::new(CONFIG_READY, false, "InvalidSpec", error.to_string())
    } else {
        Decided::new(TEMPLATES_READY, false, "TemplateInvalid", error.to_string())
    }
}

/// Rendering failed: a template failure replaces TemplatesReady, a spec error leaves it True.
/// Neither fixes itself: wait for an edit.
pub fn render_failed(templates_ready: Decided, error: &RenderError) -> Hold {
    let failure = render_failure(error);
    let (reason, message) = (failure.reason.clone(), failure.message.clone());
    let decided = if failure.type_ == CONFIG_READY { vec![templates_ready, failure] } else { vec![failure] };
    Hold { cause: Cause::Render, decided, reason, message, next: Next::Change }
}

/// A template renders a kind whose CRD this cluster lacks: apply nothing. Installing the CRD is
/// not a change of anything watched, so look again after a while.
pub fn kind_not_installed(reference: &str, crd: &str) -> Hold {
    let message = format!("{reference} is rendered but its CRD {crd} is not installed");
    Hold {
        cause: Cause::Cluster,
        decided: vec![Decided::new(TEMPLATES_READY, false, "KindNotInstalled", message.clone())],
        reason: "KindNotInstalled".into(),
        message,
        next: Next::Wait,
    }
}

/// Someone else's object has a name we render: touch nothing, look again later.
pub fn not_owned(templates_ready: Decided, conflict: String) -> Hold {
    Hold {
        cause: Cause::Cluster,
        decided: vec![templates_ready, Decided::new(IN_SYNC, false, "ObjectNotOwned", conflict.clone())],
        reason: "ObjectNotOwned".into(),
        message: conflict,
        next: Next::Wait,
    }
}

/// `ConfigReady=True`: what was rendered, and which legacy fields have no effect.
pub fn config_ready(server: &DittoServer, rendered: &Rendered) -> Decided {
    Decided::new(CONFIG_READY, true, "Rendered", config_message(server, rendered))
}

/// Says what was rendered, and which legacy fields have no effect (never silently ignored).
fn config_message(server: &DittoServer, rendered: &Rendered) -> String {
    let mut ignored = Vec::new();
    let spec = &server.spec;
    if let Some(cache) = &spec.cache {
        if cache.path.is_some() {
            ignored.push("spec.cache.path");
        }
        if cache.size.is_some() {
            ignored.push("spec.cache.size");
        }
    }
    if let Some(identity) = &spec.identity {
        if identity.identity_type.is_some() {
            ignored.push("spec.identity.type");
        }
        if identity.admin.as_ref().is_some_and(|a| a.username.is_some()) {
            ignored.push("spec.identity.admin.username");
        }
        if identity.jwt.as_ref().is_some_and(|j| j.issuer.is_some()) {
            ignored.push("spec.identity.jwt.issuer (DittoFS's issuer is fixed)");
        }
        let optional_set = |r: Option<&crate::crd::SecretRef>| r.is_some_and(|r| r.optional.is_some());
        if optional_set(identity.jwt.as_ref().and_then(|j| j.secret_ref.as_ref())) {
            ignored.push("spec.identity.jwt.secretRef.optional (the key is required)");
        }
        if optional_set(identity.admin.as_ref().and_then(|a| a.password_secret_ref.as_ref())) {
            ignored.push("spec.identity.admin.passwordSecretRef.optional (always optional)");
        }
    }
    if let Some(db) = &spec.database
        && db.postgres_secret_ref.as_ref().is_some_and(|r| r.key.is_some() || r.optional.is_some())
    {
        ignored.push("spec.database.postgresSecretRef.key/optional (fixed keys are read)");
    }
    if spec.adapter_discovery.is_some() {
        ignored.push("spec.adapterDiscovery (the operator reads the adapters on every pass)");
    }
    let mut read_as_before = Vec::new();
    if spec.image.as_deref() == Some(crate::names::EARLIER_DEFAULT_IMAGE) {
        read_as_before.push(format!(
            "spec.image {} is the earlier CRD's default, so the pinned release runs (docker.io/{} asks for latest)",
            crate::names::EARLIER_DEFAULT_IMAGE,
            crate::names::EARLIER_DEFAULT_IMAGE
        ));
    }
    if let Some(identity) = &spec.identity {
        if identity.ldap.as_ref().is_some_and(|l| l.enabled.is_none()) {
            read_as_before.push("spec.identity.ldap is off: enabled defaults to false".to_string());
        }
        if let Some(k) = &identity.kerberos {
            if k.enabled.is_none() {
                read_as_before.push("spec.identity.kerberos is off: enabled defaults to false".to_string());
            } else if k.enabled == Some(true) && k.machine_account.as_ref().is_some_and(|m| m.enabled.is_none()) {
                read_as_before
                    .push("spec.identity.kerberos.machineAccount is off: enabled defaults to false".to_string());
            }
        }
    }
    let short = &rendered.checksum[..12];
    // Generated credentials render only until they exist: counting them would change the
    // message (and cost a status write) the pass after they are created.
    let objects = rendered.listing.iter().filter(|(kind, _)| !kind.create_only()).count();
    let mut message = format!("Rendered {objects} objects; config checksum {short}");
    if !ignored.is_empty() {
        message.push_str(&format!(". Ignored (no effect on DittoFS v0.29): {}", ignored.join(", ")));
    }
    if !read_as_before.is_empty() {
        message.push_str(&format!(". Read as the earlier operator did: {}", read_as_before.join("; ")));
    }
    message
}

/// `DatabaseReady=True` once rendered against PostgreSQL (SQLite needs no condition).
pub fn database_ready(server: &DittoServer, rendered: &Rendered) -> Option<Decided> {
    let pg = rendered.outline.postgres.as_ref()?;
    let (reason, source) = match percona::target(&server.spec, &server.name_any()) {
        Some(t) => ("PerconaReady", format!("PerconaPGCluster {} is ready", t.cluster)),
        None => ("SecretResolved", "external PostgreSQL".to_string()),
    };
    let message = format!("{source}: {}:{} database {} (sslmode {})", pg.host, pg.port, pg.database, pg.sslmode);
    Some(Decided::new(DATABASE_READY, true, reason, message))
}

/// What to do with a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    /// Nothing differs.
    UpToDate,
    /// Something differs but the mode writes nothing.
    HoldBack,
    Write,
}

pub fn writes(plan: &Plan, mode: Mode) -> Writes {
    if plan.in_sync() {
        Writes::UpToDate
    } else if mode.writes() {
        Writes::Write
    } else {
        Writes::HoldBack
    }
}

/// Whether the DittoServer lets the operator re-create its StatefulSet for an immutable change.
pub fn recreates_on_immutable_change(server: &DittoServer) -> bool {
    server.annotations().get(IMMUTABLE_CHANGE_ANNOTATION).map(String::as_str) == Some(RECREATE)
}

/// The StatefulSet to re-create now: refused for an immutable change, and the DittoServer opted in.
pub fn stateful_set_to_recreate<'a>(server: &DittoServer, plan: &'a Plan, mode: Mode) -> Option<&'a Rejected> {
    let rejected = plan.rejected.iter().find(|r| r.is_immutable_stateful_set())?;
    (mode.writes() && recreates_on_immutable_change(server)).then_some(rejected)
}

/// `InSync=False ApplyRejected`: what the API server refused, its message, and how to recover.
/// `InSync=False ApplyRejected` naming every refused object and what was left because of it.
pub fn rejected_condition(server: &DittoServer, rejected: &[Rejected], held: &[String]) -> Option<Decided> {
    let mut parts = Vec::new();
    for rejected in rejected {
        let mut text = format!("{} was refused by the API server: {}", rejected.reference, rejected.message);
        if rejected.is_immutable_stateful_set() {
            text.push_str(&format!(
                ". The change touches fields a StatefulSet cannot change in place. Revert it, or annotate the DittoServer {IMMUTABLE_CHANGE_ANNOTATION}={RECREATE}: the operator then deletes the StatefulSet with --cascade=orphan (its pod and every claim stay) and creates it anew"
            ));
            if recreates_on_immutable_change(server) {
                text.push_str(" (annotated: it does so on the next pass that may write)");
            }
        }
        parts.push(text);
    }
    if parts.is_empty() {
        return None;
    }
    let mut message = parts.join("; ");
    if !held.is_empty() {
        message.push_str(&format!(". Left as they are until then: {}", held.join(", ")));
    }
    Some(Decided::new(IN_SYNC, false, "ApplyRejected", message))
}

/// `InSync` after the plan was acted on. `held_back`: an object deliberately left out (the
/// StatefulSet while its StorageClass is missing). A refused object wins: it is the news.
pub fn in_sync(server: &DittoServer, writes: Writes, plan: &Plan, mode: Mode, held_back: Option<&str>) -> Decided {
    const MATCHES: &str = "Every managed object matches the rendered templates";
    if let Some(rejected) = rejected_condition(server, &plan.rejected, &plan.held) {
        return rejected;
    }
    match (writes, held_back) {
        (Writes::HoldBack, _) => Decided::new(
            IN_SYNC,
            false,
            if mode == Mode::Paused { "Paused" } else { "DryRun" },
            format!("Not applied because {}. Pending: {}", mode.why_held(), pending_summary(plan)),
        ),
        (_, Some(why)) => Decided::new(IN_SYNC, false, "HeldBack", why),
        // `Applied` stays until something else happens: flipping it to `InSync` on the next pass
        // would cost every change a second status write.
        (Writes::UpToDate, None) if last_in_sync_reason(server) == Some("Applied") => {
            Decided::new(IN_SYNC, true, "Applied", MATCHES)
        }
        (Writes::UpToDate, None) => Decided::new(IN_SYNC, true, "InSync", MATCHES),
        (Writes::Write, None) => Decided::new(IN_SYNC, true, "Applied", MATCHES),
    }
}

/// The reason of the DittoServer's InSync condition, when it is True.
fn last_in_sync_reason(server: &DittoServer) -> Option<&str> {
    let conditions = server.status.as_ref()?.conditions.iter();
    conditions.filter(|c| c.type_ == IN_SYNC && c.status == "True").map(|c| c.reason.as_str()).next()
}

/// Runtime changes held by the mode join the InSync message (and make it False when the
/// objects alone were in sync): `diff` habits for what lives in DittoFS, not in Kubernetes.
pub fn with_runtime_pending(decided: &mut [Decided], mode: Mode, pending: &[String]) {
    let Some(in_sync) = decided.iter_mut().find(|d| d.type_ == IN_SYNC) else { return };
    let list = pending.join("; ");
    if in_sync.status {
        *in_sync = Decided::new(
            IN_SYNC,
            false,
            if mode == Mode::Paused { "Paused" } else { "DryRun" },
            format!("Not applied because {}. Pending in DittoFS: {list}", mode.why_held()),
        );
    } else {
        in_sync.message.push_str(&format!(". Pending in DittoFS: {list}"));
    }
}

/// `Kind/name (update: spec.x, spec.y)` for each pending change, for the InSync message.
fn pending_summary(plan: &Plan) -> String {
    plan.changes()
        .iter()
        .map(|d| {
            let action = format!("{:?}", d.action).to_lowercase();
            if d.paths.is_empty() {
                format!("{} ({action})", d.reference)
            } else {
                format!("{} ({action}: {})", d.reference, d.paths.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gather::Gathered;
    use crate::overrides::{Blocked, layer};
    use crate::settings::Settings;

    const SERVER: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: files, namespace: storage}\nspec:\n  storage: {metadataSize: 1Gi}\n";
    const OWNED_PERCONA: &str = "  percona: {enabled: true}\n";
    const EXISTING_PERCONA: &str = "  database: {percona: {clusterName: pg}}\n";
    const PG_SECRET: &str = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: pg}\nstringData: {host: db, port: '5432', database: d, user: u, password: p}\n";

    /// A pass's input from one YAML file, as `render` reads it: the DittoServer, plus Secrets
    /// and PerconaPGClusters standing in for the cluster's.
    fn from_yaml(yaml: &str) -> (DittoServer, Gathered) {
        let input = crate::cmd::render::parse("fixture.yaml", yaml).expect("fixture parses");
        let effective = layer(&Settings::default(), &[]).unwrap();
        let gathered = Gathered::from_file(&input.server, &input.secrets, &input.percona, effective);
        (input.server, gathered)
    }

    fn percona_cluster(name: &str, state: &str) -> String {
        format!(
            "---\napiVersion: pgv2.percona.com/v2\nkind: PerconaPGCluster\nmetadata: {{name: {name}, generation: 1}}\nspec: {{users: [{{name: dittofs}}]}}\nstatus: {{state: {state}, observedGeneration: 1}}\n"
        )
    }

    fn hold(decision: Decision) -> Hold {
        match decision {
            Decision::Hold(hold) => hold,
            other => panic!("expected a hold, got {other:?}"),
        }
    }

    fn condition<'a>(hold: &'a Hold, type_: &str) -> &'a Decided {
        hold.decided.iter().find(|d| d.type_ == type_).unwrap_or_else(|| panic!("no {type_} in {hold:?}"))
    }

    #[test]
    fn mode_follows_the_annotation_then_the_flag() {
        let (server, _) = from_yaml(SERVER);
        assert_eq!(Mode::of(&server, false), Mode::Apply);
        assert_eq!(Mode::of(&server, true), Mode::DryRun);
        let paused = SERVER.replace(
            "namespace: storage}",
            "namespace: storage, annotations: {dittofs.dittofs.com/reconcile: paused}}",
        );
        let (server, _) = from_yaml(&paused);
        assert_eq!(Mode::of(&server, true), Mode::Paused);
        assert!(!Mode::Paused.writes() && !Mode::DryRun.writes() && Mode::Apply.writes());
    }

    #[test]
    fn what_an_earlier_cr_meant_is_said_in_config_ready() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/go-operator-v0.29-meanings/input.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let server = crate::cmd::render::parse("input.yaml", &text).unwrap().server;
        let rendered =
            crate::cmd::render::render_offline("input.yaml", &text, crate::values::ValuesBuilder::new(), &[]).unwrap();
        let message = config_message(&server, &rendered);
        let said = message.split(". Read as the earlier operator did: ").nth(1).unwrap_or_default();
        assert_eq!(
            said,
            "spec.image marmos91c/dittofs:latest is the earlier CRD's default, so the pinned release runs \
             (docker.io/marmos91c/dittofs:latest asks for latest); spec.identity.ldap is off: enabled defaults to false; \
             spec.identity.kerberos.machineAccount is off: enabled defaults to false",
            "{message}"
        );
        let (minimal, _) = from_yaml(SERVER);
        assert!(!config_message(&minimal, &rendered).contains("earlier operator"));
    }

    #[test]
    fn a_minimal_server_is_applied_with_fresh_credentials_only_when_writing() {
        let (server, gathered) = from_yaml(SERVER);
        let Decision::Apply { discovered, templates_ready, .. } = decide(&server, &gathered, Mode::Apply) else {
            panic!("expected apply")
        };
        assert_eq!(templates_ready.reason, "Embedded");
        assert_ne!(discovered.generated.jwt_secret.as_deref(), Some(crate::names::OFFLINE_GENERATED));
        let Decision::Apply { discovered, .. } = decide(&server, &gathered, Mode::Paused) else { panic!() };
        assert_eq!(discovered.generated.jwt_secret.as_deref(), Some(crate::names::OFFLINE_GENERATED));
    }

    #[test]
    fn a_generated_admin_password_lost_after_a_run_is_not_generated_again() {
        let (server, mut gathered) = from_yaml(SERVER);
        gathered.has_run = true;
        let held = hold(decide(&server, &gathered, Mode::Apply));
        assert_eq!((&*held.reason, held.next), ("SecretMissing", Next::Wait));
        assert!(held.message.starts_with("Secret files-admin-bootstrap-credentials is missing"), "{}", held.message);
        assert!(!condition(&held, CONFIG_READY).status);
        // A user-referenced admin Secret is the user's to keep; a lost JWT key is generated again.
        let yaml = format!("{SERVER}  identity: {{admin: {{passwordSecretRef: {{name: mine}}}}}}\n");
        let (server, mut gathered) = from_yaml(&yaml);
        gathered.has_run = true;
        assert!(matches!(decide(&server, &gathered, Mode::Apply), Decision::Apply { .. }));
        // Never run: generated as usual.
        let (server, gathered) = from_yaml(SERVER);
        assert!(matches!(decide(&server, &gathered, Mode::Apply), Decision::Apply { .. }));
    }

    #[test]
    fn blocked_overrides_hold_until_an_edit() {
        let (server, mut gathered) = from_yaml(SERVER);
        gathered.overrides =
            Err(Blocked { reason: "ConfigMapNotFound", message: "spec.templates.configMapRef: gone".into() });
        let hold = hold(decide(&server, &gathered, Mode::Apply));
        assert_eq!((&*hold.reason, hold.next), ("ConfigMapNotFound", Next::Change));
        assert!(!condition(&hold, TEMPLATES_READY).status);
    }

    #[test]
    fn a_missing_secret_holds_and_looks_again() {
        let yaml = format!("{SERVER}  identity: {{jwt: {{secretRef: {{name: my-jwt}}}}}}\n");
        let (server, gathered) = from_yaml(&yaml);
        let hold = hold(decide(&server, &gathered, Mode::Apply));
        assert_eq!((&*hold.reason, hold.next), ("SecretMissing", Next::Wait));
        assert!(hold.message.starts_with("spec.identity.jwt.secretRef"), "{}", hold.message);
        assert!(condition(&hold, TEMPLATES_READY).status);
        assert!(!condition(&hold, CONFIG_READY).status);
        assert!(hold.decided.iter().all(|d| d.type_ != DATABASE_READY));
    }

    #[test]
    fn a_missing_database_secret_also_says_database_not_ready() {
        let yaml = format!("{SERVER}  database: {{postgresSecretRef: {{name: pg}}}}\n");
        let (server, gathered) = from_yaml(&yaml);
        let hold = hold(decide(&server, &gathered, Mode::Apply));
        assert_eq!(hold.reason, "DatabaseSecretMissing");
        assert_eq!(condition(&hold, DATABASE_READY).reason, "DatabaseSecretMissing");
        // With the Secret, it applies against PostgreSQL.
        let (server, gathered) = gathered_with_pg_secret();
        assert!(
            matches!(decide(&server, &gathered, Mode::Apply), Decision::Apply { discovered, .. } if discovered.postgres.is_some())
        );
    }

    fn gathered_with_pg_secret() -> (DittoServer, Gathered) {
        from_yaml(&format!("{SERVER}  database: {{postgresSecretRef: {{name: pg}}}}\n{PG_SECRET}"))
    }

    #[test]
    fn an_operator_created_database_not_ready_is_applied_alone_and_only_when_writing() {
        let (server, gathered) = from_yaml(&format!("{SERVER}{OWNED_PERCONA}"));
        let Decision::DatabaseOnly { not_ready, templates_ready, .. } = decide(&server, &gathered, Mode::Apply) else {
            panic!("expected database only")
        };
        assert_eq!(not_ready.reason, "PerconaClusterNotFound");
        let after = database_hold(templates_ready, &not_ready, None);
        assert_eq!((&*after.reason, after.next), ("PerconaClusterNotFound", Next::Wait));
        for mode in [Mode::Paused, Mode::DryRun] {
            let hold = hold(decide(&server, &gathered, mode));
            assert_eq!(condition(&hold, DATABASE_READY).reason, "PerconaClusterNotFound");
        }
    }

    #[test]
    fn an_existing_operator_created_cluster_keeps_its_postgres_major_version() {
        let cluster = "---\napiVersion: pgv2.percona.com/v2\nkind: PerconaPGCluster\nmetadata: {name: files-postgres}\nspec: {postgresVersion: 16, image: 'percona/percona-distribution-postgresql:16.4-1'}\n";
        let (server, gathered) = from_yaml(&format!("{SERVER}{OWNED_PERCONA}{cluster}"));
        let Decision::DatabaseOnly { effective, discovered, .. } = decide(&server, &gathered, Mode::Apply) else {
            panic!("expected database only")
        };
        let rendered =
            crate::render::Renderer::new(&effective.templates).render(&server, &effective.values, &discovered).unwrap();
        let cluster = rendered.objects.iter().find(|o| o.kind() == "PerconaPGCluster").unwrap().to_json();
        assert_eq!(cluster["spec"]["postgresVersion"], 16, "not moved to the default 18");
        assert_eq!(cluster["spec"]["image"], "percona/percona-distribution-postgresql:16.4-1");
        // A new cluster gets the values' version.
        let (server, gathered) = from_yaml(&format!("{SERVER}{OWNED_PERCONA}"));
        let Decision::DatabaseOnly { discovered, .. } = decide(&server, &gathered, Mode::Apply) else { panic!() };
        assert!(discovered.pinned_postgres.is_none());
    }

    #[test]
    fn a_blocked_database_apply_is_the_news() {
        let not_ready = NotReady { reason: "PerconaNotReady", message: "initializing".into() };
        let templates_ready = Decided::new(TEMPLATES_READY, true, "Embedded", "x");
        let broken = Decided::new(TEMPLATES_READY, false, "TemplateInvalid", "line 3");
        let hold = database_hold(templates_ready.clone(), &not_ready, Some(broken));
        assert_eq!(hold.reason, "TemplateInvalid");
        assert_eq!(hold.decided.iter().filter(|d| d.type_ == TEMPLATES_READY).count(), 1, "replaced, not doubled");
        let foreign = Decided::new(IN_SYNC, false, "ObjectNotOwned", "PerconaPGCluster/x");
        let hold = database_hold(templates_ready, &not_ready, Some(foreign));
        assert_eq!(hold.reason, "ObjectNotOwned");
        assert!(condition(&hold, TEMPLATES_READY).status);
    }

    #[test]
    fn an_existing_cluster_holds_until_ready_then_applies() {
        let yaml = format!("{SERVER}{EXISTING_PERCONA}{}", percona_cluster("pg", "initializing"));
        let (server, gathered) = from_yaml(&yaml);
        let hold = hold(decide(&server, &gathered, Mode::Apply));
        assert_eq!((&*hold.reason, hold.next), ("PerconaNotReady", Next::Wait));
        let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: pg-pguser-dittofs}\nstringData: {host: pg-primary, port: '5432', dbname: d, user: dittofs, password: p}\n";
        let yaml = format!("{SERVER}{EXISTING_PERCONA}{}{secret}", percona_cluster("pg", "ready"));
        let (server, gathered) = from_yaml(&yaml);
        let Decision::Apply { discovered, .. } = decide(&server, &gathered, Mode::Apply) else {
            panic!("expected apply")
        };
        assert_eq!(discovered.postgres.expect("connection").sslmode, "require");
    }

    #[test]
    fn the_percona_crd_missing_holds_even_an_operator_created_cluster() {
        let (server, mut gathered) = from_yaml(&format!("{SERVER}{OWNED_PERCONA}"));
        let found = gathered.percona.as_mut().unwrap();
        found.found = Err(NotReady { reason: "PerconaNotInstalled", message: "install it".into() });
        let hold = hold(decide(&server, &gathered, Mode::Apply));
        assert_eq!(hold.reason, "PerconaNotInstalled");
    }

    #[test]
    fn render_failures_name_the_condition_at_fault() {
        let templates_ready = Decided::new(TEMPLATES_READY, true, "Embedded", "x");
        let template = RenderError::Template { template: "t.j2".into(), line: 2, message: "bad".into() };
        let hold = render_failed(templates_ready.clone(), &template);
        assert_eq!((&*hold.reason, hold.next, hold.decided.len()), ("TemplateInvalid", Next::Change, 1));
        let spec =
            RenderError::Context(crate::render::ContextError::Invalid { field: "spec.x".into(), message: "no".into() });
        let hold = render_failed(templates_ready, &spec);
        assert_eq!(hold.reason, "InvalidSpec");
        assert!(condition(&hold, TEMPLATES_READY).status);
        let missing = kind_not_installed("ServiceMonitor/a", "crd");
        assert_eq!(
            (&*missing.reason, missing.next),
            ("KindNotInstalled", Next::Wait),
            "retried: a CRD install is not watched"
        );
        assert_eq!(not_owned(Decided::new(TEMPLATES_READY, true, "Embedded", ""), "x".into()).next, Next::Wait);
    }

    #[test]
    fn in_sync_says_what_happened_to_the_plan() {
        let (server, _) = from_yaml(SERVER);
        let plan = Plan::default();
        assert_eq!(writes(&plan, Mode::Paused), Writes::UpToDate);
        assert_eq!(in_sync(&server, Writes::UpToDate, &plan, Mode::Apply, None).reason, "InSync");
        assert_eq!(in_sync(&server, Writes::Write, &plan, Mode::Apply, None).reason, "Applied");
        assert_eq!(in_sync(&server, Writes::Write, &plan, Mode::Apply, Some("class missing")).reason, "HeldBack");
        let paused = in_sync(&server, Writes::HoldBack, &plan, Mode::Paused, Some("class missing"));
        assert_eq!(paused.reason, "Paused");
        assert!(paused.message.contains("dittofs.dittofs.com/reconcile: paused"), "{}", paused.message);
        assert_eq!(in_sync(&server, Writes::HoldBack, &plan, Mode::DryRun, None).reason, "DryRun");
    }

    #[test]
    fn a_refused_object_is_the_news_and_an_immutable_change_says_how_to_recover() {
        let (server, _) = from_yaml(SERVER);
        let immutable = Rejected {
            kind: crate::kinds::Kind::StatefulSet,
            reference: "StatefulSet/files".into(),
            message: "StatefulSet.apps \"files\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas' are forbidden".into(),
        };
        let plan = Plan { rejected: vec![immutable], ..Plan::default() };
        assert!(!plan.in_sync());
        assert_eq!(writes(&plan, Mode::Apply), Writes::Write);
        let condition = in_sync(&server, Writes::HoldBack, &plan, Mode::Paused, None);
        assert_eq!((&*condition.reason, condition.status), ("ApplyRejected", false));
        assert!(
            condition.message.contains("StatefulSet/files was refused by the API server: StatefulSet.apps"),
            "{}",
            condition.message
        );
        assert!(
            condition.message.contains("dittofs.dittofs.com/on-immutable-change=recreate"),
            "{}",
            condition.message
        );
        assert!(stateful_set_to_recreate(&server, &plan, Mode::Apply).is_none(), "only when opted in");

        let annotated = SERVER.replace(
            "namespace: storage}",
            "namespace: storage, annotations: {dittofs.dittofs.com/on-immutable-change: recreate}}",
        );
        let (server, _) = from_yaml(&annotated);
        assert!(stateful_set_to_recreate(&server, &plan, Mode::Apply).is_some());
        assert!(stateful_set_to_recreate(&server, &plan, Mode::DryRun).is_none(), "never while holding back");

        let invalid = Rejected {
            kind: crate::kinds::Kind::ConfigMap,
            reference: "ConfigMap/files-config".into(),
            message: "invalid".into(),
        };
        let plan = Plan { rejected: vec![invalid], held: vec!["StatefulSet/files".into()], ..Plan::default() };
        assert!(stateful_set_to_recreate(&server, &plan, Mode::Apply).is_none());
        let condition = in_sync(&server, Writes::Write, &plan, Mode::Apply, None);
        assert!(!condition.message.contains("on-immutable-change"), "{}", condition.message);
        assert!(condition.message.ends_with("Left as they are until then: StatefulSet/files"), "{}", condition.message);
    }
}
