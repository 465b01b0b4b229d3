//! The `DittoServer` custom resource: Rust types, and the CRD generated from them with the
//! admission rules (OpenAPI + CEL) that reject bad input before the operator sees it.

mod spec;
mod status;
mod validation;

pub use spec::*;
pub use status::*;
pub use validation::{crd, crd_yaml};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "dittofs-operator";
/// The API group, also the prefix of the operator's own annotations and finalizer.
pub const GROUP: &str = "dittofs.dittofs.com";
