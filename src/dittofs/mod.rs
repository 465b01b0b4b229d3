//! DittoFS's REST API: the client (`api`), the session that logs in and reads the live state
//! (`session`), and the planner that turns what the runtime template asks for
//! (`render::DesiredRuntime`) into the calls that make the server match (`plan`, `access`).
//! The controller step that drives them is `controller/serving.rs`.

pub mod api;
pub mod plan;
pub mod session;
