//! Requests whose responses are read only as far as the operator uses them.
//!
//! The API server returns the whole object after a write or a read, managedFields included: for
//! a StatefulSet they mirror most of its spec. kube's typed `Api` parses them into `FieldsV1`
//! values, and turning the object back into JSON costs a large share of the operator's CPU at
//! hundreds of servers (docs/performance.md). Here a response is parsed once, straight into JSON, with
//! managedFields skipped unparsed; nothing the operator decides on is in them (the cache and the
//! diff drop them too). A response nobody reads is not parsed at all. One that does not parse
//! is an error that does not quote it: it may hold a Secret.

use std::fmt;

use kube::api::{ApiResource, DynamicObject, GetParams, Patch, PatchParams, PostParams};
use kube::core::Request;
use kube::{Client, Resource};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Reads an object; `None` when it does not exist.
pub async fn get_opt(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    name: &str,
) -> kube::Result<Option<Value>> {
    let request = at(resource, namespace).get(name, &GetParams::default()).map_err(kube::Error::BuildRequest)?;
    match returned(client, request).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Server-side applies `body` (or dry-runs it, with `params`) and returns the object as stored.
pub async fn apply(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    name: &str,
    params: &PatchParams,
    body: &Value,
) -> kube::Result<Value> {
    let request =
        at(resource, namespace).patch(name, params, &Patch::Apply(body)).map_err(kube::Error::BuildRequest)?;
    returned(client, request).await
}

/// Creates `body` and returns the object as stored.
pub async fn create(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    params: &PostParams,
    body: &Value,
) -> kube::Result<Value> {
    let data = serde_json::to_vec(body).map_err(kube::Error::SerdeError)?;
    let request = at(resource, namespace).create(params, data).map_err(kube::Error::BuildRequest)?;
    returned(client, request).await
}

/// Patches the status subresource of a `K`; the object returned is not read.
pub async fn patch_status<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    params: &PatchParams,
    patch: &Patch<Value>,
) -> kube::Result<()>
where
    K: Resource<DynamicType = ()>,
{
    let request = Request::new(K::url_path(&(), Some(namespace)))
        .patch_subresource("status", name, params, patch)
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await.map(drop)
}

/// Requests for `resource` in `namespace` ("": cluster-scoped, or every namespace).
fn at(resource: &ApiResource, namespace: &str) -> Request {
    Request::new(DynamicObject::url_path(resource, Some(namespace).filter(|ns| !ns.is_empty())))
}

async fn returned(client: &Client, request: http::Request<Vec<u8>>) -> kube::Result<Value> {
    let text = client.request_text(request).await?;
    serde_json::from_str::<Returned>(&text).map(|r| r.0).map_err(kube::Error::SerdeError)
}

/// An object as returned, without `metadata.managedFields`.
struct Returned(Value);

impl<'de> Deserialize<'de> for Returned {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Fields { skip: None }).map(|object| Returned(Value::Object(object)))
    }
}

/// A JSON object, with the field `skip` left out and `metadata` read without managedFields.
struct Fields {
    skip: Option<&'static str>,
}

impl<'de> Visitor<'de> for Fields {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.skip == Some(key.as_str()) {
                map.next_value::<IgnoredAny>()?;
            } else if self.skip.is_none() && key == "metadata" {
                let metadata = map.next_value::<Metadata>()?;
                object.insert(key, Value::Object(metadata.0));
            } else {
                object.insert(key, map.next_value()?);
            }
        }
        Ok(object)
    }
}

struct Metadata(Map<String, Value>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Fields { skip: Some("managedFields") }).map(Metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_fields_are_skipped_and_the_rest_is_kept() {
        let text = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "a", "resourceVersion": "7", "managedFields": [{"manager": "x", "fieldsV1": {"f:spec": {}}}],
                         "labels": {"k": "v"}},
            "spec": {"replicas": 1, "managedFields": "not metadata: kept"},
            "status": {"replicas": 0}
        })
        .to_string();
        let Returned(value) = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "a", "resourceVersion": "7", "labels": {"k": "v"}},
                "spec": {"replicas": 1, "managedFields": "not metadata: kept"},
                "status": {"replicas": 0}
            })
        );
    }

    #[test]
    fn a_response_that_is_not_an_object_fails() {
        assert!(serde_json::from_str::<Returned>("[1]").is_err());
        assert!(serde_json::from_str::<Returned>(r#"{"metadata": 5}"#).is_err());
    }
}
