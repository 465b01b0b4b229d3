//! Who may reach a DittoServer's shares: the NetworkPolicies' peers, and the one-line summary
//! `status.endpoints.clients` (the `Clients` column of `kubectl get`) reports.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;

use super::FileServiceSettings;
use crate::crd::{DittoServerSpec, ServiceType};
use crate::values::{OperatorPods, Values};

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySettings {
    pub enabled: bool,
    /// Admitted to the NFS and SMB ports; empty admits nobody.
    pub file_clients: Vec<NetworkPolicyPeer>,
    /// Admitted to the API port besides the operator's pods.
    pub api_clients: Vec<NetworkPolicyPeer>,
    pub operator: OperatorPods,
}

/// The NetworkPolicies' settings. Unset `fileClients` follows the Service: the pods of the
/// namespace behind a ClusterIP; anyone behind a LoadBalancer or NodePort, which the user asked
/// for (the load balancer's source ranges filter then).
pub fn network_policy(spec: &DittoServerSpec, values: &Values, file: &FileServiceSettings) -> NetworkPolicySettings {
    let np = spec.network_policy.as_deref().cloned().unwrap_or_default();
    let file_clients = np.file_clients.unwrap_or_else(|| match file.service_type {
        ServiceType::ClusterIP => {
            vec![NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..Default::default() }]
        }
        ServiceType::LoadBalancer | ServiceType::NodePort => vec![
            NetworkPolicyPeer { namespace_selector: Some(LabelSelector::default()), ..Default::default() },
            ip_block("0.0.0.0/0"),
            ip_block("::/0"),
        ],
    });
    NetworkPolicySettings {
        enabled: np.enabled.unwrap_or(values.network_policy.enabled),
        file_clients,
        api_clients: np.api_clients.unwrap_or_default(),
        operator: values.network_policy.operator.clone(),
    }
}

fn ip_block(cidr: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: cidr.into(), except: None }), ..Default::default() }
}

/// Who can reach the file ports, in a few words: what the Service exposes, narrowed by the
/// NetworkPolicy when one is rendered.
pub fn clients(file: &FileServiceSettings, np: &NetworkPolicySettings, namespace: &str) -> String {
    let exposure = match file.service_type {
        ServiceType::ClusterIP => None,
        ServiceType::NodePort => Some("any address that reaches a node (NodePort)".to_string()),
        ServiceType::LoadBalancer if file.load_balancer_source_ranges.is_empty() => {
            Some("any address (LoadBalancer without loadBalancerSourceRanges)".to_string())
        }
        ServiceType::LoadBalancer => Some(format!("LoadBalancer from {}", file.load_balancer_source_ranges.join(", "))),
    };
    let admitted = match (np.enabled, file.service_type) {
        (false, ServiceType::ClusterIP) => Some("any pod in the cluster (no NetworkPolicy)".to_string()),
        (false, _) => None,
        (true, _) if np.file_clients.is_empty() => Some("nobody (fileClients is empty)".to_string()),
        (true, _) => Some(peers(&np.file_clients, namespace)),
    };
    match (exposure, admitted) {
        (Some(e), None) => e,
        (None, Some(a)) => a,
        // Behind a load balancer the default peers admit everyone: the exposure says it all.
        (Some(e), Some(_)) if is_everyone(&np.file_clients) => e,
        (Some(e), Some(a)) => format!("{e}; NetworkPolicy: {a}"),
        (None, None) => unreachable!("a ClusterIP always has an admitted part"),
    }
}

fn is_everyone(peers: &[NetworkPolicyPeer]) -> bool {
    peers.iter().any(|p| p.ip_block.as_ref().is_some_and(|b| b.cidr == "0.0.0.0/0" && b.except.is_none()))
}

fn peers(peers: &[NetworkPolicyPeer], namespace: &str) -> String {
    peers.iter().map(|p| peer(p, namespace)).collect::<Vec<_>>().join("; ")
}

fn peer(peer: &NetworkPolicyPeer, namespace: &str) -> String {
    if let Some(block) = &peer.ip_block {
        return match block.except.as_deref() {
            Some(except) if !except.is_empty() => format!("{} except {}", block.cidr, except.join(", ")),
            _ => block.cidr.clone(),
        };
    }
    let namespaces = match &peer.namespace_selector {
        None => format!("namespace {namespace}"),
        Some(s) if selects_all(s) => "all namespaces".to_string(),
        Some(s) => format!("namespaces {}", selector(s)),
    };
    match &peer.pod_selector {
        Some(s) if !selects_all(s) => format!("pods {} in {namespaces}", selector(s)),
        _ => format!("pods in {namespaces}"),
    }
}

fn selects_all(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(BTreeMap::is_empty) && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

fn selector(s: &LabelSelector) -> String {
    let labels = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}"));
    let expressions = s.match_expressions.iter().flatten().map(|e| {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        match values.is_empty() {
            true => format!("{} {}", e.key, e.operator),
            false => format!("{} {} ({values})", e.key, e.operator),
        }
    });
    labels.chain(expressions).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NetworkPolicySpec;

    fn file(service_type: ServiceType, ranges: &[&str]) -> FileServiceSettings {
        FileServiceSettings {
            service_type,
            annotations: BTreeMap::new(),
            nfs_port: 2049,
            smb_port: 445,
            portmapper_port: 111,
            load_balancer_class: None,
            load_balancer_source_ranges: ranges.iter().map(|r| r.to_string()).collect(),
            external_traffic_policy: None,
        }
    }

    fn reach(spec_np: Option<NetworkPolicySpec>, file: &FileServiceSettings) -> String {
        let spec = DittoServerSpec { network_policy: spec_np.map(Box::new), ..Default::default() };
        let values = crate::values::ValuesBuilder::new().build().unwrap();
        clients(file, &network_policy(&spec, &values, file), "storage")
    }

    #[test]
    fn the_default_is_the_pods_of_the_namespace() {
        assert_eq!(reach(None, &file(ServiceType::ClusterIP, &[])), "pods in namespace storage");
    }

    #[test]
    fn a_load_balancer_says_whether_its_source_ranges_filter() {
        assert_eq!(
            reach(None, &file(ServiceType::LoadBalancer, &[])),
            "any address (LoadBalancer without loadBalancerSourceRanges)"
        );
        assert_eq!(reach(None, &file(ServiceType::LoadBalancer, &["10.0.0.0/8"])), "LoadBalancer from 10.0.0.0/8");
    }

    #[test]
    fn named_peers_are_spelt_out_and_an_empty_list_admits_nobody() {
        let team = serde_json::json!([
            {"namespaceSelector": {"matchLabels": {"team": "media"}}},
            {"podSelector": {"matchLabels": {"app": "render"}}},
            {"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]}}
        ]);
        let np = NetworkPolicySpec { file_clients: Some(serde_json::from_value(team).unwrap()), ..Default::default() };
        assert_eq!(
            reach(Some(np), &file(ServiceType::ClusterIP, &[])),
            "pods in namespaces team=media; pods app=render in namespace storage; 10.1.0.0/16 except 10.1.2.0/24"
        );
        let none = NetworkPolicySpec { file_clients: Some(vec![]), ..Default::default() };
        assert_eq!(reach(Some(none), &file(ServiceType::ClusterIP, &[])), "nobody (fileClients is empty)");
    }

    #[test]
    fn without_a_policy_a_cluster_ip_admits_every_pod() {
        let off = NetworkPolicySpec { enabled: Some(false), ..Default::default() };
        assert_eq!(reach(Some(off), &file(ServiceType::ClusterIP, &[])), "any pod in the cluster (no NetworkPolicy)");
    }
}
