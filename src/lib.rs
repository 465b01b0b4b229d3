//! dittofs-operator: DittoServer CR → values → render → validate → apply → status.
//!
//! - [`crd`]: the custom resource and its admission rules
//! - [`values`]: operator-level defaults and overrides
//! - [`discover`]: data found in the cluster that rendering needs
//! - [`render`]: templates → typed objects (pure)
//! - [`input`]: reading CR files for the offline commands
//! - [`apply`]: server-side apply and pruning
//! - [`status`]: conditions and phase
//! - [`controller`]: the reconcile loop tying them together

pub mod apply;
pub mod controller;
pub mod crd;
pub mod diff;
pub mod discover;
pub mod health;
pub mod input;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod overrides;
pub mod percona;
pub mod preview;
pub mod render;
pub mod serve;
pub mod settings;
pub mod status;
pub mod values;
