//! dittofs-operator: DittoServer CR → gather → decide → render → plan → apply → status.
//!
//! - [`names`]: object names, labels, annotations, the finalizer (a leaf: imports nothing)
//! - [`kinds`]: the one table of managed kinds
//! - [`crd`]: the custom resource and its admission rules
//! - [`values`]: operator-level defaults and overrides
//! - [`gather`]: everything a pass reads, from the cluster or from `render`'s input file
//! - [`discover`]: the data rendering needs, resolved from what was gathered
//! - [`render`]: templates → typed objects (pure)
//! - [`input`]: reading CR files for the offline commands
//! - [`apply`]: server-side apply and pruning
//! - [`backoff`]: retry schedules, and the runtime step's gate that counts time, not passes
//! - [`responses`]: objects the API server returns, read without their managedFields
//! - [`conditions`]: conditions and phase
//! - [`redact`]: `Debug` that shows a secret is there, never its value
//! - [`controller`]: the reconcile pipeline tying them together (docs/architecture.md)

pub mod api_tls;
pub mod apply;
pub mod backoff;
pub mod cache;
pub mod cmd;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod diff;
pub mod discover;
pub mod dittofs;
pub mod gather;
pub mod go_duration;
pub mod health;
pub mod identity;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod operator;
pub mod overrides;
pub mod percona;
pub mod quantity;
pub mod redact;
pub mod render;
pub mod requests;
pub mod serve;
pub mod settings;
pub mod values;
