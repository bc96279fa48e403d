//! What the agent reports under `/portguard/v1/status/<host>/`.
use serde::{Deserialize, Serialize};

use super::converge::{PortOutcome, PortState};

/// `status/<host>/ports/<id>`. A port is enforced as bound when `state` is
/// `enforced` and `observed_mod_revision` equals its binding key's mod revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    pub observed_mod_revision: i64,
    pub state: PortState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub iface: String,
    #[serde(default)]
    pub ifindex: u32,
    /// "native", "generic", "tc", or null when not attached.
    #[serde(default)]
    pub attach_mode: Option<String>,
}

impl PortStatus {
    pub fn new(mod_revision: i64, iface: &str, o: &PortOutcome) -> PortStatus {
        PortStatus {
            observed_mod_revision: mod_revision,
            state: o.state,
            message: o.message.clone(),
            iface: iface.to_string(),
            ifindex: o.ifindex,
            attach_mode: o.attach_mode.clone(),
        }
    }
}

/// `status/<host>/agent`, on a lease: it disappears when the agent is gone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub host: String,
    pub version: String,
    pub pid: u32,
    /// The store revision the kernel state reflects (list or last event).
    pub synced_revision: i64,
    /// True while the agent has a complete list and a live watch.
    pub in_sync: bool,
    pub ports: usize,
    pub enforced: usize,
    pub pending: usize,
    pub error: usize,
    /// Ports the host's pin dir can hold (`--max-ports` less 1): ports
    /// beyond it are `error`.
    pub port_capacity: u32,
    /// Ports changed in the kernel since the agent started.
    pub changes: u64,
    /// Complete lists since the agent started (the first, then after cancelled watches and periodically).
    pub lists: u64,
    /// Store calls or watches that failed since the agent started.
    pub store_errors: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub started_at: String,
}
