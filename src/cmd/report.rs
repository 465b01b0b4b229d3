//! `dittofs-operator report NAME`: one tarball with what a support request needs about one
//! DittoServer: the CR, its objects, Events, the pods' and the operator's recent logs, the state
//! DittoFS's API reports, and what `diff` would change. Read only.
//!
//! No Secret value leaves the cluster: Secrets are written with their keys and sizes only, and
//! every file is scrubbed of every value of every Secret the report could read in the
//! namespace (as read, base64-encoded, and line by line), wherever it turns up: a log line, an
//! annotation, a ConfigMap. Values of [`NOT_SECRET_KEYS`] and values shorter than
//! [`SHORTEST_SCRUBBED`] are masked in the Secrets only.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, LogParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cmd::diff::{self, DiffArgs, OutputFormat};
use crate::crd::DittoServer;

/// Secret values shorter than this are masked inside Secrets only: replacing a short string
/// everywhere (a port, `admin`) would garble the report without hiding anything worth hiding.
pub const SHORTEST_SCRUBBED: usize = 6;

const MASK: &str = "<masked>";

/// Keys whose values are not secret and turn up legitimately everywhere (a user name, a host,
/// a public certificate): masked inside Secrets, not scrubbed from the other files.
pub const NOT_SECRET_KEYS: &[&str] =
    &["username", "user", "host", "port", "database", "dbname", "endpoint", "ca.crt", "tls.crt"];

#[derive(clap::Args, Clone, Debug)]
pub struct ReportArgs {
    /// Name of the DittoServer.
    pub name: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The tarball to write (default: dittofs-report-NAMESPACE-NAME-TIME.tar.gz here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Namespace of the operator's pods, whose logs are included.
    #[arg(long, default_value = "dittofs-system")]
    pub operator_namespace: String,
    /// Log lines per container (the last ones).
    #[arg(long, default_value_t = 1000)]
    pub tail: i64,
    #[command(flatten)]
    pub read: crate::settings::ReadArgs,
}

/// The report's files, in the order they are written.
#[derive(Default)]
struct Files {
    files: Vec<(String, String)>,
    /// What could not be read, and why (`notes.txt`).
    notes: Vec<String>,
}

impl Files {
    fn add(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.push((path.into(), text.into()));
    }

    fn note(&mut self, what: impl std::fmt::Display, error: impl std::fmt::Display) {
        self.notes.push(format!("{what}: {error}"));
    }
}

/// Writes the report; returns its path.
pub async fn report(args: ReportArgs) -> Result<PathBuf> {
    let client = diff::client(args.kubeconfig.as_ref()).await?;
    let namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
    let name = args.name.clone();
    let server = Api::<DittoServer>::namespaced(client.clone(), &namespace)
        .get(&name)
        .await
        .with_context(|| format!("DittoServer {namespace}/{name}"))?;
    let mut files = Files::default();
    files.add("dittoserver.yaml", yaml(&server));

    let secrets = objects(&client, &namespace, &name, &mut files).await;
    events(&client, &namespace, &name, &mut files).await;
    pod_logs(&client, &namespace, &name, args.tail, &mut files).await;
    operator_logs(&client, &args.operator_namespace, args.tail, &mut files).await;
    diff_and_runtime(&client, &args, &namespace, &mut files).await;

    let scrub = Scrubber::new(&secrets);
    let mut notes = files.notes.join("\n");
    notes.push('\n');
    files.add("notes.txt", notes);
    let output = args.output.clone().unwrap_or_else(|| {
        let time = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        PathBuf::from(format!("dittofs-report-{namespace}-{name}-{time}.tar.gz"))
    });
    write_tarball(&output, &format!("dittofs-report-{namespace}-{name}"), &files.files, &scrub)?;
    Ok(output)
}

fn yaml<T: Serialize + Resource + Clone>(object: &T) -> String {
    let mut object = object.clone();
    object.meta_mut().managed_fields = None;
    serde_saphyr::to_string(&object).unwrap_or_else(|e| format!("# not serializable: {e}\n"))
}

/// Lists one kind by the server's instance label into `objects/<kind>-<name>.yaml`.
async fn add_kind<K>(client: &Client, namespace: &str, selector: &str, files: &mut Files)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let kind = K::kind(&()).to_lowercase();
    match Api::<K>::namespaced(client.clone(), namespace).list(&ListParams::default().labels(selector)).await {
        Ok(list) => {
            for object in list.items {
                files.add(format!("objects/{kind}-{}.yaml", object.name_any()), yaml(&object));
            }
        }
        Err(error) => files.note(format!("listing {kind}s ({selector})"), error),
    }
}

/// The server's objects (by its instance label), Secrets with their values masked; returns
/// every Secret of the namespace it could read, for the scrub.
async fn objects(client: &Client, namespace: &str, name: &str, files: &mut Files) -> Vec<Secret> {
    let selector = format!("app.kubernetes.io/instance={name}");
    add_kind::<StatefulSet>(client, namespace, &selector, files).await;
    add_kind::<Pod>(client, namespace, &selector, files).await;
    add_kind::<Service>(client, namespace, &selector, files).await;
    add_kind::<ConfigMap>(client, namespace, &selector, files).await;
    add_kind::<NetworkPolicy>(client, namespace, &selector, files).await;
    add_kind::<PersistentVolumeClaim>(client, namespace, &selector, files).await;
    add_kind::<PodDisruptionBudget>(client, namespace, &selector, files).await;
    let all = match Api::<Secret>::namespaced(client.clone(), namespace).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(error) => {
            files.note("listing Secrets (values cannot be scrubbed from logs without them)", error);
            Vec::new()
        }
    };
    let prefix = format!("{name}-");
    for secret in all.iter().filter(|s| {
        s.labels().get("app.kubernetes.io/instance").map(String::as_str) == Some(name)
            || s.name_any().starts_with(&prefix)
    }) {
        files.add(format!("objects/secret-{}.yaml", secret.name_any()), yaml(&masked(secret)));
    }
    all
}

/// A Secret with each value replaced by its size.
fn masked(secret: &Secret) -> Secret {
    let mut secret = secret.clone();
    let sizes = |data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>| {
        data.iter()
            .map(|(k, v)| (k.clone(), format!("{MASK} {} bytes", v.0.len())))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mut strings = secret.data.as_ref().map(sizes).unwrap_or_default();
    if let Some(plain) = &secret.string_data {
        strings.extend(plain.iter().map(|(k, v)| (k.clone(), format!("{MASK} {} bytes", v.len()))));
    }
    secret.data = None;
    secret.string_data = (!strings.is_empty()).then_some(strings);
    if let Some(annotations) = secret.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    secret
}

/// Events about the server and its objects (named NAME or NAME-…), oldest first.
async fn events(client: &Client, namespace: &str, name: &str, files: &mut Files) {
    let prefix = format!("{name}-");
    match Api::<Event>::namespaced(client.clone(), namespace).list(&ListParams::default()).await {
        Ok(list) => {
            let mut lines: Vec<(String, String)> = list
                .items
                .iter()
                .filter(|e| {
                    let about = e.involved_object.name.as_deref().unwrap_or_default();
                    about == name || about.starts_with(&prefix)
                })
                .map(|e| {
                    let time = e
                        .last_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                        .unwrap_or_default();
                    let line = format!(
                        "{time} {} {} {}/{}: {} (x{})",
                        e.type_.as_deref().unwrap_or("-"),
                        e.reason.as_deref().unwrap_or("-"),
                        e.involved_object.kind.as_deref().unwrap_or("-"),
                        e.involved_object.name.as_deref().unwrap_or("-"),
                        e.message.as_deref().unwrap_or_default().trim(),
                        e.count.unwrap_or(1),
                    );
                    (time, line)
                })
                .collect();
            lines.sort();
            let text: String = lines.into_iter().map(|(_, line)| line + "\n").collect();
            files.add("events.txt", text);
        }
        Err(error) => files.note("listing Events", error),
    }
}

/// The last lines of every container of the server's pods, and of the run before a restart.
async fn pod_logs(client: &Client, namespace: &str, name: &str, tail: i64, files: &mut Files) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let selector = format!("app.kubernetes.io/instance={name}");
    let list = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(error) => return files.note("listing the server's pods", error),
    };
    for pod in list {
        container_logs(&pods, &pod, tail, "logs", files).await;
    }
}

async fn operator_logs(client: &Client, namespace: &str, tail: i64, files: &mut Files) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default().labels("app.kubernetes.io/name=dittofs-operator")).await {
        Ok(list) if list.items.is_empty() => files.note(
            format!("the operator's logs ({namespace})"),
            "no pod labelled app.kubernetes.io/name=dittofs-operator; --operator-namespace says where",
        ),
        Ok(list) => {
            for pod in list.items {
                container_logs(&pods, &pod, tail, "logs/operator", files).await;
            }
        }
        Err(error) => files.note(format!("listing the operator's pods in {namespace}"), error),
    }
}

async fn container_logs(pods: &Api<Pod>, pod: &Pod, tail: i64, dir: &str, files: &mut Files) {
    let name = pod.name_any();
    let spec = pod.spec.clone().unwrap_or_default();
    let statuses = pod.status.clone().unwrap_or_default();
    let restarted = |container: &str| {
        statuses
            .container_statuses
            .iter()
            .chain(statuses.init_container_statuses.iter())
            .flatten()
            .any(|s| s.name == container && s.restart_count > 0)
    };
    let containers = spec.init_containers.iter().flatten().chain(spec.containers.iter()).map(|c| c.name.clone());
    for container in containers.collect::<Vec<_>>() {
        for previous in [false, true] {
            if previous && !restarted(&container) {
                continue;
            }
            let params = LogParams {
                container: Some(container.clone()),
                tail_lines: Some(tail),
                previous,
                ..Default::default()
            };
            let suffix = if previous { ".previous" } else { "" };
            match pods.logs(&name, &params).await {
                Ok(text) => files.add(format!("{dir}/{name}-{container}{suffix}.log"), text),
                Err(error) => files.note(format!("log of {name}/{container}{suffix}"), error),
            }
        }
    }
}

/// `diff`'s output (objects, then DittoFS calls) and the state DittoFS's API reported.
async fn diff_and_runtime(client: &Client, args: &ReportArgs, namespace: &str, files: &mut Files) {
    let diff_args = DiffArgs {
        name: Some(args.name.clone()),
        file: None,
        namespace: Some(namespace.to_string()),
        kubeconfig: args.kubeconfig.clone(),
        output: OutputFormat::Text,
        read: args.read.clone(),
    };
    match diff::preview(client, &diff_args).await {
        Ok(preview) => {
            let mut text: String = preview.objects.iter().map(|o| o.text.as_str()).collect();
            if !preview.runtime.is_empty() {
                text.push_str("# DittoFS (REST API):\n");
                text.extend(preview.runtime.iter().map(|line| format!("~ {line}\n")));
            }
            if text.is_empty() {
                text.push_str("# no difference: the operator would change nothing\n");
            }
            files.add("diff.txt", text);
            match preview.live {
                Some(live) => files.add("runtime.txt", live + "\n"),
                None => files.note(
                    "DittoFS's API",
                    "not reached (see the note on stderr; from outside the cluster, port-forward <name>-api and pass --dittofs-api 'http://127.0.0.1:{port}')",
                ),
            }
        }
        Err(error) => files.note("diff", format!("{error:#}")),
    }
}

/// Replaces Secret values wherever they appear.
pub struct Scrubber {
    needles: Vec<String>,
}

impl Scrubber {
    pub fn new(secrets: &[Secret]) -> Self {
        let mut needles = BTreeSet::new();
        for secret in secrets {
            let secret_key = |key: &String| !NOT_SECRET_KEYS.contains(&key.as_str());
            let values = secret.data.iter().flatten().filter(|(k, _)| secret_key(k)).map(|(_, v)| v.0.clone());
            let plain =
                secret.string_data.iter().flatten().filter(|(k, _)| secret_key(k)).map(|(_, v)| v.clone().into_bytes());
            for value in values.chain(plain) {
                if value.len() < SHORTEST_SCRUBBED {
                    continue;
                }
                needles.insert(base64::engine::general_purpose::STANDARD.encode(&value));
                if let Ok(text) = String::from_utf8(value) {
                    // A multi-line value (a key, a certificate) also turns up line by line.
                    needles
                        .extend(text.lines().map(str::trim).filter(|l| l.len() >= SHORTEST_SCRUBBED).map(String::from));
                    needles.insert(text);
                }
            }
        }
        // Longest first, so a value containing another is replaced whole.
        let mut needles: Vec<String> = needles.into_iter().collect();
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Self { needles }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), MASK);
            }
        }
        text
    }
}

fn write_tarball(path: &PathBuf, root: &str, files: &[(String, String)], scrub: &Scrubber) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for (name, text) in files {
        let data = scrub.scrub(text);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, format!("{root}/{name}"), data.as_bytes())
            .with_context(|| format!("writing {name}"))?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn secret(values: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                values.iter().map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec()))).collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn scrubs_values_raw_base64_and_line_by_line_and_leaves_short_ones() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----\n";
        let scrub = Scrubber::new(&[secret(&[("password", "hunter2-long"), ("port", "5432"), ("tls.key", key)])]);
        let encoded = base64::engine::general_purpose::STANDARD.encode("hunter2-long");
        let text = format!("login hunter2-long ok; env {encoded}; port 5432; line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
        let out = scrub.scrub(&text);
        assert_eq!(out, "login <masked> ok; env <masked>; port 5432; line <masked>");
    }

    #[test]
    fn masked_secrets_keep_keys_and_sizes_only() {
        let mut s = secret(&[("password", "hunter2-long")]);
        s.string_data = Some(BTreeMap::from([("extra".to_string(), "abc".to_string())]));
        let out = serde_json::to_string(&masked(&s)).unwrap();
        assert!(!out.contains("hunter2") && !out.contains("abc\""), "{out}");
        assert!(out.contains("<masked> 12 bytes") && out.contains("<masked> 3 bytes"), "{out}");
    }
}
