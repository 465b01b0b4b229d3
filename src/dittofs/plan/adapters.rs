//! Adapters and their settings: created, ports and enabled state corrected, settings patched,
//! and restarted where DittoFS reads a change only at start or a listener is stuck.

use serde_json::{Value, json};

use super::{Area, Change, Edits, Live, Plan, changed_keys};
use crate::dittofs::api::segment;
use crate::render::desired::{DesiredAdapter, DesiredRuntime};

/// An enabled adapter that is not healthy this long after its last restart is restarted again
/// (DittoFS never retries a listener that failed to bind, e.g. on a busy port).
pub const ADAPTER_RESTART_AFTER_SECONDS: i64 = 15;

/// Adapter settings that DittoFS reads when the adapter starts: changing one restarts it.
const SETTINGS_READ_AT_START: &[&str] = &["portmapper_enabled", "portmapper_port", "udp_enabled"];

/// Settings first: an adapter restarted below for a new port starts with them.
pub(super) fn plan_adapters(desired: &DesiredRuntime, live: &Live, out: &mut Plan) {
    let mut restart = plan_adapter_settings(desired, live, out);
    for adapter in &desired.adapters {
        if plan_adapter(adapter, live, out) {
            // Saved with a restart by DittoFS: the new settings are read then.
            restart.retain(|a| a != &adapter.adapter_type);
        }
    }
    for adapter in restart {
        let subject = format!("adapter {adapter}");
        for (step, enabled) in [("stop", false), ("start", true)] {
            out.changes.push(
                Change::call(
                    "PUT",
                    format!("/api/v1/adapters/{}", segment(&adapter)),
                    Some(json!({"enabled": enabled})),
                )
                .about(
                    Area::Adapter,
                    &subject,
                    format!("{subject}: restart, {step} (it reads the changed settings at start)"),
                ),
            );
        }
    }
}

/// One adapter created, corrected, or restarted when stuck. Returns whether it is saved with a
/// new port or enabled state (DittoFS restarts it then).
fn plan_adapter(adapter: &DesiredAdapter, live: &Live, out: &mut Plan) -> bool {
    let t = &adapter.adapter_type;
    let subject = format!("adapter {t}");
    let Some(l) = live.adapters.iter().find(|a| &a.adapter_type == t) else {
        let disabled = if adapter.enabled { "" } else { " (disabled)" };
        out.changes.push(
            Change::call(
                "POST",
                "/api/v1/adapters",
                Some(json!({"type": t, "enabled": adapter.enabled, "port": adapter.port})),
            )
            .about(
                Area::Adapter,
                &subject,
                format!("{subject}: create on port {}{disabled}", adapter.port),
            ),
        );
        return false;
    };
    let mut edits = Edits::default();
    edits.field("port", "port", l.port, adapter.port);
    edits.enabled(l.enabled, adapter.enabled);
    let stuck = live.read_at.and_then(|now| l.seconds_since_change(now)).unwrap_or(0) >= ADAPTER_RESTART_AFTER_SECONDS;
    if edits.is_empty() && adapter.enabled && !l.healthy() && stuck {
        // DittoFS keeps a listener whose address did not change: stop, then start.
        for (step, enabled) in [("stop", false), ("start", true)] {
            out.changes.push(
                Change::call("PUT", format!("/api/v1/adapters/{t}"), Some(json!({"enabled": enabled}))).about(
                    Area::Adapter,
                    &subject,
                    format!("{subject}: restart, {step} (it reports {})", l.health()),
                ),
            );
        }
    }
    let Some(change) = edits.put(format!("/api/v1/adapters/{t}"), Area::Adapter, &subject) else { return false };
    out.changes.push(change);
    true
}

/// Adapter settings that differ: one PATCH per adapter. Returns the running adapters that must
/// restart (stop, start) to read a changed setting DittoFS reads only at start. An adapter not
/// created yet gets its settings at the next pass.
fn plan_adapter_settings(desired: &DesiredRuntime, live: &Live, out: &mut Plan) -> Vec<String> {
    let mut restart = Vec::new();
    for (adapter, wanted) in &desired.adapter_settings {
        let Some(current) = live.adapter_settings.get(adapter) else { continue };
        let (changed, what) = changed_keys(wanted, Some(current));
        if changed.is_empty() {
            continue;
        }
        let subject = format!("adapter {adapter}");
        let path = format!("/api/v1/adapters/{}/settings", segment(adapter));
        let description = format!("{subject} settings: {}", what.join(", "));
        out.changes.push(Change::call("PATCH", path, Some(Value::Object(changed.clone()))).about(
            Area::Adapter,
            &subject,
            description,
        ));
        let running = live.adapters.iter().any(|a| &a.adapter_type == adapter && a.enabled);
        if running && changed.keys().any(|k| SETTINGS_READ_AT_START.contains(&k.as_str())) {
            restart.push(adapter.clone());
        }
    }
    restart
}
