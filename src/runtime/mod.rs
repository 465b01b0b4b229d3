//! DittoFS's runtime state: what the runtime template asks for (`desired`), how to talk to the
//! server (`api`), and the calls that make the server match (`plan`). The controller step that
//! drives them is `controller/runtime.rs`.

pub mod access;
pub mod api;
pub mod desired;
pub mod plan;
pub mod session;

pub use desired::{DesiredRuntime, StoreKind};
