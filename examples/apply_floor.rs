//! The floor `scripts/bench.sh` compares the operator with: a bare client server-side-applying
//! what the operator applies for COUNT DittoServers (rendered by the same code, before the clock
//! starts), each server's objects in the operator's order (ConfigMap → Secrets → Services →
//! StatefulSet), CONCURRENCY servers at a time. Nothing else: no reads, no dry runs, no status,
//! no Events, no finalizer.
//!
//!     apply_floor NAMESPACE COUNT CONCURRENCY CR_FILE
//!
//! Prints the seconds the applies took. Uses $KUBECONFIG.

use std::time::Instant;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, namespace, count, concurrency, file] = args.as_slice() else {
        anyhow::bail!("usage: apply_floor NAMESPACE COUNT CONCURRENCY CR_FILE");
    };
    let (count, concurrency): (usize, usize) = (count.parse()?, concurrency.parse()?);
    let template = std::fs::read_to_string(file)?;
    let mut servers = Vec::new();
    for i in 0..count {
        let text = template
            .replace("name: demo", &format!("name: floor-{i:04}"))
            .replace("namespace: default", &format!("namespace: {namespace}"));
        let rendered = dittofs_operator::cmd::render::render_offline(file, &text, Default::default(), &[])?;
        let objects: Vec<(kube::api::ApiResource, String, serde_json::Value)> =
            rendered.objects.iter().map(|o| (o.managed_kind().resource(), o.name().to_string(), o.to_json())).collect();
        servers.push(objects);
    }
    let client = Client::try_default().await?;
    let params = PatchParams::apply("apply-floor").force();
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(servers)
        .map(|objects| {
            let client = client.clone();
            let params = params.clone();
            async move {
                for (resource, name, body) in objects {
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
                    api.patch(&name, &params, &Patch::Apply(&body)).await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let took = started.elapsed().as_secs_f64();
    for result in results {
        result?;
    }
    println!("{took:.3}");
    Ok(())
}
