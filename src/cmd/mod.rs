//! The offline and read-only commands: `render` (a CR file to manifests, no cluster), `diff`
//! (what the operator would change in a live cluster) and `report` (a support tarball, with
//! `diff` in it). They decide and render through the same steps as the controller
//! ([`crate::decide`], [`crate::render`]) and only print.

pub mod diff;
pub mod render;
pub mod report;
