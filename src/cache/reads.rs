//! The one door to what a pass reads: through the controller's cache when there is one, else
//! straight from the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use serde_json::Value;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::{Cache, Key, Lean, Listed, Lookup, Need};
use crate::requests;

/// The reads of one pass: through the controller's cache when there is one, else straight from
/// the API server (`diff`, tests calling a reconcile directly).
#[derive(Clone, Copy)]
pub struct Reads<'a> {
    pub client: &'a Client,
    cache: Option<&'a Cache>,
}

impl<'a> Reads<'a> {
    pub fn direct(client: &'a Client) -> Self {
        Self { client, cache: None }
    }

    pub fn cached(client: &'a Client, cache: &'a Cache) -> Self {
        Self { client, cache: Some(cache) }
    }

    /// One object's content, or `None` when it does not exist.
    pub async fn value(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Value>>, kube::Error> {
        self.read(resource, namespace, name, Need::Content).await
    }

    /// One object, as much of it as `need` says (its content, or at least its metadata).
    pub async fn read(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        need: Need,
    ) -> Result<Option<Arc<Value>>, kube::Error> {
        match self.cache {
            Some(cache) => cache.get(self.client, resource, namespace, name, need).await,
            None => Ok(requests::get_opt(self.client, namespace, resource, name).await?.map(Arc::new)),
        }
    }

    /// One typed object, or `None` when it does not exist.
    pub async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        self.get_as(namespace, name, Need::Content).await
    }

    /// One typed object, as much of it as `need` says, or `None` when it does not exist.
    pub async fn get_as<K>(&self, namespace: &str, name: &str, need: Need) -> Result<Option<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let resource = ApiResource::erase::<K>(&());
        let Some(value) = self.read(&resource, namespace, name, need).await? else { return Ok(None) };
        serde_json::from_value(Value::clone(&value)).map(Some).map_err(kube::Error::SerdeError)
    }

    /// Whether an object exists (its metadata, from a store when one covers it).
    pub async fn exists(&self, resource: &ApiResource, namespace: &str, name: &str) -> Result<bool, kube::Error> {
        if let Some(cache) = self.cache {
            match cache.lookup(resource, namespace, name) {
                Lookup::Absent => return Ok(cache.written_unseen(resource, namespace, name)),
                Lookup::Present(_) => return Ok(true),
                Lookup::Unknown => {}
            }
        }
        let api: Api<PartialObjectMeta<DynamicObject>> = if namespace.is_empty() {
            Api::all_with(self.client.clone(), resource)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, resource)
        };
        Ok(api.get_metadata_opt(name).await?.is_some())
    }

    /// Typed objects of `namespace` carrying every label of `labels`.
    pub async fn list<K>(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Result<Vec<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let resource = ApiResource::erase::<K>(&());
        if let Some(found) = self.cache.and_then(|c| c.list(&resource, namespace, labels)) {
            let mut out = Vec::new();
            for listed in found {
                if let Some(object) = self.get::<K>(namespace, &listed.name).await? {
                    out.push(object);
                }
            }
            return Ok(out);
        }
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = kube::api::ListParams::default().labels(&selector.join(","));
        Ok(Api::<K>::namespaced(self.client.clone(), namespace).list(&params).await?.items)
    }

    /// Whether applying `applied` (hashed by [`super::hash_of`]) onto `live_version` was
    /// already shown to change nothing. Never, without a cache.
    pub fn is_settled(&self, key: &Key, applied: u64, live_version: &str) -> bool {
        self.cache.is_some_and(|c| c.is_settled(key, applied, live_version))
    }

    /// Records that the object at `live_version` holds everything `applied` sets.
    pub fn settle(&self, key: Key, applied: u64, live_version: String) {
        if let Some(cache) = self.cache {
            cache.settle(key, applied, live_version);
        }
    }

    /// Keeps what later passes need of an object the operator just wrote, until the watch
    /// shows a newer version.
    pub fn keep_written(&self, key: Key, value: Value, need: Need) {
        if let Some(cache) = self.cache {
            cache.keep_as(key, value, need);
        }
    }

    /// Forgets an object the operator deleted.
    pub fn forget(&self, key: &Key) {
        if let Some(cache) = self.cache {
            cache.forget(key);
        }
    }

    /// Whether the CustomResourceDefinition `name` is known (from its watch) not to be installed.
    pub fn crd_absent(&self, name: &str) -> bool {
        let crds = ApiResource::erase::<CustomResourceDefinition>(&());
        matches!(self.cache.map(|c| c.lookup(&crds, "", name)), Some(Lookup::Absent))
    }

    /// The objects of `resource` in `namespace` carrying `labels` (an instance label among them),
    /// names and what a store keeps of each: from a store when one covers them, else listed
    /// (metadata only). `None`: the API server does not serve the kind (its CRD is not installed).
    pub async fn list_meta(
        &self,
        resource: &ApiResource,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<Vec<Listed>>, kube::Error> {
        if let Some(found) = self.cache.and_then(|c| c.list(resource, namespace, labels)) {
            return Ok(Some(found));
        }
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::namespaced_with(self.client.clone(), namespace, resource);
        match api.list_metadata(&kube::api::ListParams::default().labels(&selector.join(","))).await {
            Ok(list) => Ok(Some(
                list.items
                    .into_iter()
                    .map(|m| Listed { lean: Lean::of(&m.metadata), name: m.metadata.name.unwrap_or_default() })
                    .collect(),
            )),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }
}
