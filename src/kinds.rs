//! The one table of kinds the operator manages: each kind's type, API resource, apply rank,
//! whether its CRD may be absent, whether pruning looks at it and whether it is watched through
//! its owner reference. Everything that names a kind (parsing, apply, prune, watches, the RBAC
//! check) derives from [`Kind`], so a kind missing from the table is a compile error.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How the controller learns that an object of a kind changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// A metadata-only watch of the managed objects, mapped through the controller owner reference.
    ByOwner,
    /// Watched on its own terms elsewhere (Secrets by reference, PerconaPGClusters by name), or not
    /// at all (a kind whose CRD may be absent).
    Elsewhere,
}

/// Declares the managed kinds: (variant, Rust type, apiVersion, plural, apply rank, CRD when
/// optional, pruned, watch). The variant is the kind's name.
macro_rules! managed_kinds {
    ($(($variant:ident, $ty:ty, $api_version:literal, $plural:literal, rank $rank:literal, crd $crd:expr, prune $prune:literal, $watch:ident)),+ $(,)?) => {
        /// A kind the operator manages.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant,)+
        }

        impl Kind {
            /// Every managed kind, in table order.
            pub const ALL: &[Kind] = &[$(Kind::$variant),+];

            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant),)+ }
            }

            pub const fn api_version(self) -> &'static str {
                match self { $(Self::$variant => $api_version,)+ }
            }

            pub const fn plural(self) -> &'static str {
                match self { $(Self::$variant => $plural,)+ }
            }

            /// Apply order: the database first, configuration before what consumes it, the workload last.
            pub const fn apply_rank(self) -> u8 {
                match self { $(Self::$variant => $rank,)+ }
            }

            /// The CustomResourceDefinition that defines the kind, when it may be absent from a cluster.
            pub const fn optional_crd(self) -> Option<&'static str> {
                match self { $(Self::$variant => $crd,)+ }
            }

            /// Whether pruning deletes objects of this kind that are no longer rendered.
            pub const fn prunable(self) -> bool {
                match self { $(Self::$variant => $prune,)+ }
            }

            pub const fn watch(self) -> Watch {
                match self { $(Self::$variant => Watch::$watch,)+ }
            }

            pub fn of(api_version: &str, kind: &str) -> Option<Self> {
                match (api_version, kind) {
                    $(($api_version, stringify!($variant)) => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        /// One object the operator manages, in a type the API server's schema matches.
        #[derive(Clone, Debug, PartialEq)]
        pub enum ManagedObject {
            $($variant(Box<$ty>),)+
        }

        impl ManagedObject {
            pub fn managed_kind(&self) -> Kind {
                match self { $(Self::$variant(_) => Kind::$variant,)+ }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self { $(Self::$variant(o) => &o.metadata,)+ }
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Self::$variant(o) => &mut o.metadata,)+ }
            }

            pub fn to_json(&self) -> Value {
                match self { $(Self::$variant(o) => serde_json::to_value(o),)+ }.expect("typed objects serialize")
            }

            pub fn to_yaml(&self) -> String {
                match self { $(Self::$variant(o) => serde_saphyr::to_string(o),)+ }.expect("typed objects serialize to YAML")
            }

            /// Parses a document of `kind` into its type; unknown fields and wrong types are errors.
            pub fn parse(kind: Kind, value: &Value) -> Result<Self, String> {
                match kind { $(Kind::$variant => typed::<$ty>(value).map(|o| Self::$variant(Box::new(o))),)+ }
            }
        }
    };
}

managed_kinds! {
    (ConfigMap, ConfigMap, "v1", "configmaps", rank 1, crd None, prune true, ByOwner),
    // Created once, never updated or pruned (credentials: see `create_only`).
    (Secret, Secret, "v1", "secrets", rank 2, crd None, prune false, Elsewhere),
    (Service, Service, "v1", "services", rank 3, crd None, prune true, ByOwner),
    (NetworkPolicy, NetworkPolicy, "networking.k8s.io/v1", "networkpolicies", rank 3, crd None, prune true, ByOwner),
    (PodDisruptionBudget, PodDisruptionBudget, "policy/v1", "poddisruptionbudgets", rank 3, crd None, prune true, ByOwner),
    (StatefulSet, StatefulSet, "apps/v1", "statefulsets", rank 4, crd None, prune true, ByOwner),
    // The database comes first and is never pruned: its fate is decided on deletion only. No
    // Rust type exists for it: a generic object.
    (PerconaPGCluster, DynamicObject, "pgv2.percona.com/v2", "perconapgclusters", rank 0,
        crd Some("perconapgclusters.pgv2.percona.com"), prune false, Elsewhere),
    // Prometheus Operator; applied only where its CRD is installed.
    (ServiceMonitor, DynamicObject, "monitoring.coreos.com/v1", "servicemonitors", rank 3,
        crd Some("servicemonitors.monitoring.coreos.com"), prune true, Elsewhere),
}

impl Kind {
    /// Objects of this kind are created once and then left alone: never updated, never pruned.
    /// Secrets: a credential DittoFS has started with must not change under it, and the operator
    /// needs no right to rewrite or delete any Secret.
    pub const fn create_only(self) -> bool {
        matches!(self, Kind::Secret)
    }

    /// The API group ("" for the core group).
    pub fn group(self) -> &'static str {
        self.api_version().rsplit_once('/').map_or("", |(group, _)| group)
    }

    pub fn resource(self) -> ApiResource {
        let version = self.api_version().rsplit_once('/').map_or(self.api_version(), |(_, v)| v);
        ApiResource {
            group: self.group().into(),
            version: version.into(),
            api_version: self.api_version().into(),
            kind: self.name().into(),
            plural: self.plural().into(),
        }
    }
}

impl ManagedObject {
    pub fn kind(&self) -> &'static str {
        self.managed_kind().name()
    }

    pub fn api_version(&self) -> &'static str {
        self.managed_kind().api_version()
    }

    pub fn apply_rank(&self) -> u8 {
        self.managed_kind().apply_rank()
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// `Kind/name`, as kubectl prints it.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }
}

/// Parses into `K`, then rejects any field that `K` does not know (k8s-openapi ignores them).
fn typed<K: DeserializeOwned + Serialize>(value: &Value) -> Result<K, String> {
    let object: K =
        serde_path_to_error::deserialize(value).map_err(|e| format!("field {}: {}", e.path(), e.inner()))?;
    let round_trip = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    if let Some(path) = first_unknown_field(value, &round_trip, String::new()) {
        return Err(format!("field {path}: unknown field"));
    }
    Ok(object)
}

/// The first field of `original` that its typed round trip `known` lost: a field the type does not know.
/// (The path is put together only for the field found: renders call this for every object.)
pub(crate) fn first_unknown_field(original: &Value, known: &Value, path: String) -> Option<String> {
    let mut reversed = Vec::new();
    if !unknown_field(original, known, &mut reversed) {
        return None;
    }
    let mut path = path;
    for segment in reversed.into_iter().rev() {
        match segment {
            Segment::Key(key) if path.is_empty() => path.push_str(key),
            Segment::Key(key) => path.push_str(&format!(".{key}")),
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    Some(path)
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Whether `original` has a field `known` lost; its path, innermost first, in `path`.
fn unknown_field<'a>(original: &'a Value, known: &Value, path: &mut Vec<Segment<'a>>) -> bool {
    let found = match (original, known) {
        (Value::Object(o), Value::Object(k)) => o.iter().find_map(|(key, value)| match k.get(key) {
            None if value.is_null() => None,
            None => Some(Segment::Key(key)),
            Some(known) => unknown_field(value, known, path).then_some(Segment::Key(key)),
        }),
        (Value::Array(o), Value::Array(k)) => {
            o.iter().zip(k).enumerate().find_map(|(i, (o, k))| unknown_field(o, k, path).then_some(Segment::Index(i)))
        }
        _ => None,
    };
    match found {
        Some(segment) => {
            path.push(segment);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    /// An unknown field is named by its whole path, through maps and lists.
    #[test]
    fn unknown_fields_are_named_by_their_path() {
        let sts = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "demo"},
            "spec": {"selector": {}, "serviceName": "demo", "template": {"spec": {"containers": [
                {"name": "a", "image": "x"}, {"name": "b", "imagee": "x"}
            ]}}}
        });
        let error = ManagedObject::parse(Kind::StatefulSet, &sts).unwrap_err();
        assert_eq!(error, "field spec.template.spec.containers[1].imagee: unknown field");
        let top = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "datta": {}});
        assert_eq!(ManagedObject::parse(Kind::ConfigMap, &top).unwrap_err(), "field datta: unknown field");
        let fine =
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": null});
        assert!(ManagedObject::parse(Kind::ConfigMap, &fine).is_ok());
    }

    /// The table agrees with the typed resources k8s-openapi knows.
    #[test]
    fn resources_match_the_typed_kinds() {
        assert_eq!(Kind::ConfigMap.resource(), ApiResource::erase::<ConfigMap>(&()));
        assert_eq!(Kind::Secret.resource(), ApiResource::erase::<Secret>(&()));
        assert_eq!(Kind::Service.resource(), ApiResource::erase::<Service>(&()));
        assert_eq!(Kind::StatefulSet.resource(), ApiResource::erase::<StatefulSet>(&()));
        assert_eq!(Kind::NetworkPolicy.resource(), ApiResource::erase::<NetworkPolicy>(&()));
        assert_eq!(Kind::PodDisruptionBudget.resource(), ApiResource::erase::<PodDisruptionBudget>(&()));
        assert_eq!(Kind::PerconaPGCluster.group(), "pgv2.percona.com");
        assert_eq!(Kind::ServiceMonitor.resource().version, "v1");
        for kind in Kind::ALL {
            assert_eq!(Kind::of(kind.api_version(), kind.name()), Some(*kind));
        }
        assert_eq!(StatefulSet::plural(&()), Kind::StatefulSet.plural());
    }

    /// Every kind the operator manages is granted by deploy/rbac.yaml with the verbs its use
    /// needs: read and server-side apply always, list and watch where watched or pruned, delete
    /// where pruned. The RBAC file cannot fall behind the table.
    #[test]
    fn rbac_grants_what_the_table_needs() {
        let text = include_str!("../deploy/rbac.yaml");
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("rbac.yaml parses");
        let role = docs.iter().find(|d| d["kind"] == "ClusterRole").expect("a ClusterRole");
        let rules = role["rules"].as_array().expect("rules");
        let granted = |group: &str, resource: &str, verb: &str| {
            rules.iter().any(|r| {
                let has = |field: &str, want: &str| {
                    r[field].as_array().is_some_and(|items| items.iter().any(|i| i == want || i == "*"))
                };
                has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
            })
        };
        for kind in Kind::ALL {
            let mut verbs = vec!["get", "create"];
            if !kind.create_only() {
                verbs.push("patch");
            }
            if kind.prunable() || kind.watch() == Watch::ByOwner {
                verbs.extend(["list", "watch"]);
            }
            if kind.prunable() {
                verbs.push("delete");
            }
            for verb in verbs {
                assert!(granted(kind.group(), kind.plural(), verb), "deploy/rbac.yaml: {verb} on {}", kind.name());
            }
            if kind.create_only() {
                for verb in ["patch", "update", "delete"] {
                    assert!(
                        !granted(kind.group(), kind.plural(), verb),
                        "deploy/rbac.yaml grants {verb} on {}: more than the code needs",
                        kind.name()
                    );
                }
            }
            if let Some(crd) = kind.optional_crd() {
                let reads_crd = rules.iter().any(|r| {
                    r["resources"].as_array().is_some_and(|x| x.iter().any(|i| i == "customresourcedefinitions"))
                        && r["resourceNames"].as_array().is_some_and(|x| x.iter().any(|i| i == crd))
                });
                assert!(reads_crd, "deploy/rbac.yaml: get on CRD {crd}");
            }
        }
    }
}
