//! The operator's configuration, from its command line, fixed for the life of the process.

use std::path::PathBuf;

use crate::render::TemplateSource;
use crate::values::{Values, ValuesBuilder};

/// Default name of the operator-wide template-override ConfigMap.
pub const DEFAULT_TEMPLATES_CONFIGMAP: &str = "dittofs-operator-templates";

/// Operator-level values: files over the embedded defaults, then single keys.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ValuesArgs {
    /// Values file layered over the embedded defaults (repeatable).
    #[arg(long = "values")]
    pub values: Vec<PathBuf>,
    /// A single value, `key.path=value` (repeatable; wins over files).
    #[arg(long = "set")]
    pub set: Vec<String>,
}

impl ValuesArgs {
    pub fn builder(&self) -> anyhow::Result<ValuesBuilder> {
        let mut builder = ValuesBuilder::new();
        // An operator in a pod admits its own namespace to each server's API port
        // (values `networkPolicy.operator.namespace`; a file or --set still wins).
        if let Some(namespace) = std::env::var("POD_NAMESPACE").ok().filter(|ns| !ns.is_empty()) {
            builder = builder.set(&format!("networkPolicy.operator.namespace={namespace}"))?;
        }
        for path in &self.values {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            builder = builder.layer_yaml(&path.display().to_string(), &text)?;
        }
        for assignment in &self.set {
            builder = builder.set(assignment)?;
        }
        Ok(builder)
    }

    pub fn build(&self) -> anyhow::Result<Values> {
        Ok(self.builder()?.build()?)
    }
}

/// Where template overrides come from, for the commands that read the cluster.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TemplateArgs {
    /// Operator-wide template overrides, NAMESPACE/NAME (default: dittofs-operator-templates in
    /// the operator's namespace). Absent = the embedded templates.
    #[arg(long = "templates-configmap")]
    pub templates_configmap: Option<String>,
    /// Honour `spec.templates.configMapRef` of DittoServers (overrides in their own namespace).
    #[arg(long)]
    pub allow_namespace_templates: bool,
}

/// What `run`, `diff` and `report` render and read with: values, template overrides, the DittoFS API.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ReadArgs {
    #[command(flatten)]
    pub values: ValuesArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
    #[command(flatten)]
    pub dittofs_api: DittoApiArgs,
}

/// Where each DittoServer's REST API is, for the runtime step (shares, stores, adapters).
pub const DEFAULT_DITTOFS_API: &str = "http://{name}-api.{namespace}.svc:{port}";

/// How the operator reaches each server's DittoFS API.
#[derive(clap::Args, Clone, Debug)]
pub struct DittoApiArgs {
    /// URL template of each DittoServer's REST API: `{name}`, `{namespace}` and `{port}` (the
    /// API port) are filled in. The default is the `<name>-api` Service, for an operator in the
    /// cluster; from outside (tests, a laptop with a port-forward) use e.g.
    /// `http://127.0.0.1:{port}`. `off` manages Kubernetes objects only: no share is set up.
    #[arg(long = "dittofs-api", default_value = DEFAULT_DITTOFS_API)]
    pub dittofs_api: String,
}

impl Default for DittoApiArgs {
    fn default() -> Self {
        Self { dittofs_api: DEFAULT_DITTOFS_API.into() }
    }
}

impl DittoApiArgs {
    pub fn template(&self) -> Option<String> {
        (self.dittofs_api != "off").then(|| self.dittofs_api.clone())
    }
}

/// `--concurrency`: what scripts/bench.sh measured best on 2 cores (docs/performance.md).
pub const DEFAULT_CONCURRENCY: u16 = 16;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// Watch only these namespaces: repeated, or separated by commas (default: all namespaces).
    #[arg(long = "namespace", short = 'n', value_name = "NS", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Values, template overrides and the DittoFS API, as `diff` and `report` read them.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Reconciles that may run at once (of different DittoServers; one DittoServer's passes never
    /// overlap). Each waits mostly on the API server, so more than the cores help.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: u16,
    /// Observe only: compute and report diffs (CR status, logs) but write no managed object.
    #[arg(long)]
    pub dry_run: bool,
    /// Run the controller only while holding a Lease, so replicas never write concurrently.
    #[arg(long)]
    pub leader_elect: bool,
    #[arg(long, default_value = "dittofs-operator")]
    pub lease_name: String,
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// A PersistentVolumeClaim Pending longer than this makes the DittoServer Degraded
    /// (`VolumeClaimPending`); binding may legitimately wait for the pod's scheduling.
    #[arg(long, default_value_t = 120)]
    pub claim_pending_grace_seconds: u64,
    /// How long one request to a DittoFS API may take, its answer's body included. Store
    /// creation probes the backend (an S3 bucket), so allow it time; a server that stops
    /// answering mid-way is given up after this and retried on the runtime backoff.
    #[arg(long, default_value_t = 30)]
    pub dittofs_api_timeout_seconds: u64,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_address: String,
    /// The log lines' format: `json` (one object per line, for log pipelines) or `text`.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// The watched namespaces; empty = all of them.
    pub namespaces: Vec<String>,
    /// Defaults ← `--values` ← `--set`; override ConfigMaps layer over this per reconcile.
    pub values_builder: ValuesBuilder,
    pub values: Values,
    pub templates: TemplateSource,
    /// (namespace, name) of the operator-wide override ConfigMap.
    pub templates_configmap: (String, String),
    pub allow_namespace_templates: bool,
    pub concurrency: u16,
    pub dry_run: bool,
    /// Pending claims younger than this are not reported as Degraded yet.
    pub claim_pending_grace: std::time::Duration,
    /// URL template of each server's REST API (`--dittofs-api`); `None` = no runtime step.
    pub dittofs_api: Option<String>,
    /// The deadline of one DittoFS API request, body included (`--dittofs-api-timeout-seconds`).
    pub dittofs_api_timeout: std::time::Duration,
    /// Runtime-step tasks (DittoFS API work) running at once; the rest wait their turn.
    pub dittofs_api_tasks: usize,
}

/// API tasks running at once. They mostly wait on sockets; the bound keeps a cluster of silent
/// APIs from holding an unbounded number of connections.
pub const DITTOFS_API_TASKS: usize = 64;

impl Settings {
    pub fn from_args(args: &RunArgs) -> anyhow::Result<Self> {
        let mut settings = Self::read_only(&args.read.values, &args.read.templates)?;
        settings.namespaces = watched_namespaces(&args.namespaces)?;
        settings.concurrency = args.concurrency;
        settings.dry_run = args.dry_run;
        settings.claim_pending_grace = std::time::Duration::from_secs(args.claim_pending_grace_seconds);
        settings.dittofs_api = args.read.dittofs_api.template();
        anyhow::ensure!(args.dittofs_api_timeout_seconds > 0, "--dittofs-api-timeout-seconds must be at least 1");
        settings.dittofs_api_timeout = std::time::Duration::from_secs(args.dittofs_api_timeout_seconds);
        Ok(settings)
    }

    /// Settings for the commands that read the cluster but never write (`diff`).
    pub fn read_only(values: &ValuesArgs, templates: &TemplateArgs) -> anyhow::Result<Self> {
        let builder = values.builder()?;
        let templates_configmap = match &templates.templates_configmap {
            Some(reference) => {
                let (ns, name) = reference
                    .split_once('/')
                    .ok_or_else(|| anyhow::anyhow!("--templates-configmap {reference}: expected NAMESPACE/NAME"))?;
                (ns.to_string(), name.to_string())
            }
            None => (operator_namespace(), DEFAULT_TEMPLATES_CONFIGMAP.to_string()),
        };
        Ok(Self {
            values: builder.build()?,
            values_builder: builder,
            templates_configmap,
            allow_namespace_templates: templates.allow_namespace_templates,
            ..Self::default()
        })
    }

    /// Test clusters: watch `namespace` only and look for the operator-wide overrides there too.
    /// No DittoFS runs behind their pods, so the runtime step is off unless a test turns it on.
    pub fn for_tests(namespace: Option<String>) -> Self {
        let defaults = Self::default();
        Self {
            templates_configmap: (
                namespace.clone().unwrap_or(defaults.templates_configmap.0.clone()),
                DEFAULT_TEMPLATES_CONFIGMAP.into(),
            ),
            namespaces: namespace.into_iter().collect(),
            dittofs_api: None,
            ..defaults
        }
    }
}

/// The embedded values and templates, every namespace, overrides in `dittofs-system`, writing:
/// what `render` uses offline and what the command line starts from.
impl Default for Settings {
    fn default() -> Self {
        let builder = ValuesBuilder::new();
        Self {
            namespaces: Vec::new(),
            values: builder.build().expect("embedded defaults"),
            values_builder: builder,
            templates: TemplateSource::embedded(),
            templates_configmap: ("dittofs-system".into(), DEFAULT_TEMPLATES_CONFIGMAP.into()),
            allow_namespace_templates: false,
            concurrency: DEFAULT_CONCURRENCY,
            dry_run: false,
            claim_pending_grace: crate::health::DEFAULT_CLAIM_PENDING_GRACE,
            dittofs_api: Some(DEFAULT_DITTOFS_API.into()),
            dittofs_api_timeout: crate::dittofs::api::REQUEST_TIMEOUT,
            dittofs_api_tasks: DITTOFS_API_TASKS,
        }
    }
}

/// `--namespace` as given, each once and in order; an empty name is refused (it would read
/// as "every namespace").
fn watched_namespaces(given: &[String]) -> anyhow::Result<Vec<String>> {
    let mut namespaces: Vec<String> = Vec::new();
    for namespace in given.iter().map(|ns| ns.trim()) {
        anyhow::ensure!(
            !namespace.is_empty(),
            "--namespace: an empty namespace name (omit the flag to watch all namespaces)"
        );
        if !namespaces.iter().any(|known| known == namespace) {
            namespaces.push(namespace.to_string());
        }
    }
    Ok(namespaces)
}

/// The namespace the operator runs in: `POD_NAMESPACE`, the service account's, or dittofs-system.
pub fn operator_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok())
        .map(|ns| ns.trim().to_string())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "dittofs-system".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }

    fn watched(args: &[&str]) -> anyhow::Result<Vec<String>> {
        let run = Run::try_parse_from(std::iter::once("run").chain(args.iter().copied()))?;
        Ok(Settings::from_args(&run.args)?.namespaces)
    }

    #[test]
    fn namespace_takes_a_list_repeated_or_comma_separated_each_once() {
        assert!(watched(&[]).unwrap().is_empty(), "no flag: every namespace");
        assert_eq!(watched(&["--namespace", "team-a"]).unwrap(), ["team-a"]);
        assert_eq!(
            watched(&["--namespace=team-a,team-b", "-n", "team-c", "-n", "team-a"]).unwrap(),
            ["team-a", "team-b", "team-c"]
        );
        let empty = watched(&["--namespace", "team-a,"]).unwrap_err().to_string();
        assert!(empty.contains("--namespace: an empty namespace name"), "{empty}");
    }
}
