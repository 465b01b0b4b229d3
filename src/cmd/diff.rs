//! `dittofs-operator diff`: what the operator would change in the live cluster, rendered
//! exactly as the controller renders (cluster Secrets, operator values), shown like
//! `kubectl diff`. Never writes.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde::Serialize;

use crate::apply;
use crate::cmd::render;
use crate::crd::DittoServer;
use crate::decide::{self, Cause, Decision, Mode};
use crate::diff::{Action, ObjectDiff};
use crate::gather::Gathered;
use crate::render::Renderer;
use crate::settings::Settings;

#[derive(clap::Args, Clone, Debug)]
pub struct DiffArgs {
    /// Name of a DittoServer in the cluster (or use -f).
    pub name: Option<String>,
    /// A DittoServer file to compare with the cluster, as `kubectl diff -f`.
    #[arg(short = 'f', long = "filename", conflicts_with = "name")]
    pub file: Option<PathBuf>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// `text` (unified diffs) or `json` (object references and changed paths).
    #[arg(long, short = 'o', default_value = "text")]
    pub output: OutputFormat,
    #[command(flatten)]
    pub read: crate::settings::ReadArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Serialize)]
struct JsonChange<'a> {
    object: &'a str,
    action: Action,
    paths: &'a [String],
}

/// What `diff` found: object changes, then the DittoFS runtime changes (adapters, stores,
/// shares, users) when its API was reached, and what the server holds beyond the spec.
pub struct Preview {
    pub objects: Vec<ObjectDiff>,
    pub runtime: Vec<String>,
    /// Users and groups in DittoFS that the spec does not list, left alone: not a change.
    pub kept: Vec<String>,
    /// What DittoFS reported (adapters, stores, shares, users, groups), as the planner read it;
    /// `None` when its API was not reached. For `report`.
    pub live: Option<String>,
}

/// Prints the diff; returns whether anything differs.
pub async fn diff(args: DiffArgs) -> Result<bool> {
    let client = client(args.kubeconfig.as_ref()).await?;
    let Preview { objects, runtime, kept, .. } = preview(&client, &args).await?;
    match args.output {
        OutputFormat::Text => {
            for change in &objects {
                print!("{}", change.text);
            }
            if !runtime.is_empty() {
                println!("# DittoFS (REST API):");
                for line in &runtime {
                    println!("~ {line}");
                }
            }
            if !kept.is_empty() {
                println!("# DittoFS, kept (not in the spec, not changed):");
                for line in &kept {
                    println!("= {line}");
                }
            }
        }
        OutputFormat::Json => {
            let mut items: Vec<serde_json::Value> = serde_json::from_str(&to_json(&objects))?;
            items.extend(runtime.iter().map(|line| serde_json::json!({"runtime": line})));
            items.extend(kept.iter().map(|line| serde_json::json!({"kept": line})));
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
    }
    Ok(!objects.is_empty() || !runtime.is_empty())
}

/// `--output json`: object references, actions and changed paths.
pub fn to_json(changes: &[ObjectDiff]) -> String {
    let items: Vec<JsonChange> =
        changes.iter().map(|c| JsonChange { object: &c.reference, action: c.action, paths: &c.paths }).collect();
    serde_json::to_string_pretty(&items).expect("plain data serializes")
}

/// What the operator would change, in apply order (prunes last).
pub async fn changes(client: &Client, args: &DiffArgs) -> Result<Vec<ObjectDiff>> {
    Ok(preview(client, args).await?.objects)
}

/// Object changes and DittoFS runtime changes.
pub async fn preview(client: &Client, args: &DiffArgs) -> Result<Preview> {
    let client = client.clone();
    let settings = Settings::read_only(&args.read.values, &args.read.templates)?;
    let (server, namespace) = match (&args.file, &args.name) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let mut server = render::parse(&file.display().to_string(), &text)?.server;
            let namespace = args.namespace.clone().or_else(|| server.namespace()).unwrap_or_else(|| "default".into());
            server.metadata.namespace = Some(namespace.clone());
            // Owner and prune decisions follow the CR as stored, when it exists.
            let live = Api::<DittoServer>::namespaced(client.clone(), &namespace).get_opt(&server.name_any()).await?;
            if let Some(live) = live {
                server.metadata.uid = live.metadata.uid;
            }
            (server, namespace)
        }
        (None, Some(name)) => {
            let namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
            let server = Api::<DittoServer>::namespaced(client.clone(), &namespace)
                .get(name)
                .await
                .with_context(|| format!("DittoServer {namespace}/{name}"))?;
            (server, namespace)
        }
        (None, None) => anyhow::bail!("give a DittoServer name or -f FILE"),
    };
    let name = server.name_any();
    // The operator's key, so checksums come out as the operator computes them; without it (not
    // created yet, or not readable) the pod template's checksum shows as a change.
    let checksum_key = match crate::gather::read_checksum_key(&client, &namespace).await {
        Ok(Some(key)) => key,
        Ok(None) | Err(_) => {
            eprintln!(
                "note: the operator's checksum key (Secret {namespace}/{}) cannot be read: the pod template's checksum may show as changed",
                crate::gather::CHECKSUM_KEY_SECRET
            );
            Vec::new()
        }
    };
    let gathered =
        Gathered::from_cluster(crate::cache::Reads::direct(&client), &settings, &server, checksum_key).await?;
    // Decided as the reconcile decides: a lost admin Secret is not generated again; while the
    // database is not ready, only an operator-created cluster is applied. Existing generated
    // credentials are read; missing ones show as created (values masked).
    let nothing = || Preview { objects: Vec::new(), runtime: Vec::new(), kept: Vec::new(), live: None };
    let (effective, discovered, database_only) = match decide::decide(&server, &gathered, Mode::Preview) {
        Decision::Apply { effective, discovered, .. } => (effective, discovered, false),
        Decision::DatabaseOnly { effective, discovered, not_ready, .. } => {
            eprintln!(
                "note: database not ready ({}): {}; only the PerconaPGCluster would be applied",
                not_ready.reason, not_ready.message
            );
            (effective, discovered, true)
        }
        Decision::Hold(hold) => match hold.cause {
            Cause::Templates => anyhow::bail!("template overrides ({}): {}", hold.reason, hold.message),
            Cause::Database => {
                eprintln!("note: database not ready ({}): {}; nothing would be applied", hold.reason, hold.message);
                return Ok(nothing());
            }
            Cause::AdminSecretLost => {
                eprintln!("note: {}", hold.message);
                return Ok(nothing());
            }
            _ => anyhow::bail!("{}", hold.message),
        },
    };
    let rendered = Renderer::new(&effective.templates).render(&server, &effective.values, &discovered)?;
    let owner = server.meta().uid.as_ref().and_then(|_| server.controller_owner_ref(&()));
    let plan = apply::plan(
        crate::cache::Reads::direct(&client),
        &namespace,
        &name,
        owner.as_ref(),
        &rendered.objects,
        !database_only,
    )
    .await?;
    let objects = plan.changes().into_iter().cloned().collect();
    let RuntimeRead { changes: runtime, kept, live } = match args.read.dittofs_api.template() {
        Some(template) if !database_only => {
            let repoint = crate::dittofs::plan::repoint_allowed(server.annotations());
            runtime_changes(&client, &template, &rendered, &gathered.secrets, gathered.checksum_key.clone(), repoint)
                .await
        }
        _ => RuntimeRead::default(),
    };
    Ok(Preview { objects, runtime, kept, live })
}

#[derive(Default)]
struct RuntimeRead {
    changes: Vec<String>,
    kept: Vec<String>,
    live: Option<String>,
}

/// The runtime plan against the live server, read only (as the operator's account, or the
/// bootstrap admin before that account exists). Unreachable: a note, no lines.
async fn runtime_changes(
    client: &Client,
    template: &str,
    rendered: &crate::render::Rendered,
    gathered: &crate::discover::SecretsByName,
    key: Vec<u8>,
    repoint_allowed: bool,
) -> RuntimeRead {
    use crate::dittofs::{api, session};
    let Some(desired) = &rendered.runtime else { return RuntimeRead::default() };
    let c = &rendered.outline;
    if c.replicas == 0 {
        return RuntimeRead::default();
    }
    let secrets = session::Secrets::new(client, &rendered.cr.namespace, gathered);
    let read = async {
        let mut api = session::api_for(&api::HttpClient::default(), template, rendered, &secrets).await?;
        session::ready(&api).await?;
        let (live, _) =
            session::login_and_read(&secrets, &mut api, rendered, desired, session::AccountSetup::ReadOnly).await?;
        let inputs = session::PlanInputs {
            rendered,
            desired,
            live: &live,
            digest_key: &key,
            remembered: &Default::default(),
            repoint_allowed,
        };
        let planned = session::plan_against(&secrets, &api, inputs).await?.plan;
        let mut lines = planned.descriptions();
        lines.extend(planned.refused.iter().map(|r| format!("refused: {r}")));
        Ok::<_, session::Problem>(RuntimeRead { changes: lines, kept: planned.kept, live: Some(format!("{live:#?}")) })
    };
    match read.await {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("note: DittoFS runtime not compared ({}): {}", problem.reason, problem.message);
            RuntimeRead::default()
        }
    }
}

pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}
