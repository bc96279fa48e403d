//! The one place the agent changes the kernel: desired ports in, per-port
//! outcome out, through the same planner and applier as `portguard apply`
//! (so a port already right is not written at all).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    audit::{one_line, AuditLog},
    binding::attach_mode_name,
    iface::{self, IfaceError},
    pinned::{Pinned, PortInfo},
    state::{self, Kind, PlanOptions, Port, State},
};

/// Where a port is, as its status key reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    /// Bound (and attached when the value asks for it).
    Enforced,
    /// Valid, waiting for its interface to appear.
    Pending,
    /// Refused (bad value, interface unusable, or the kernel change failed).
    Error,
}

/// What happened to one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortOutcome {
    pub state: PortState,
    pub message: Option<String>,
    pub ifindex: u32,
    /// "native", "generic" or None when not attached.
    pub attach_mode: Option<String>,
}

impl PortOutcome {
    pub fn error(message: String) -> PortOutcome {
        PortOutcome {
            state: PortState::Error,
            message: Some(message),
            ifindex: 0,
            attach_mode: None,
        }
    }
}

/// Why a whole convergence step failed (nothing after the failure changed).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConvergeError(pub String);

fn cerr(e: anyhow::Error) -> ConvergeError {
    ConvergeError(one_line(&e))
}

/// Which kernel records a step may remove.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// Everything not desired (after a complete list).
    All,
    /// Only these records besides the desired ports' own (a deleted or
    /// renamed port's last ifindex).
    Only(&'a [u32]),
}

/// The host's pinned state, changed under the pin-dir lock one step at a time.
pub struct Host {
    pin_dir: PathBuf,
    audit: AuditLog,
    /// Opened once (loading the object and opening every map costs tens of
    /// ms): dropped after a failed step, so the next one opens afresh.
    pinned: Option<Pinned>,
    /// Ports changed in the kernel so far (each is one or more map writes).
    pub changes: u64,
}

impl Host {
    /// Creates the pin directory and maps if needed.
    pub fn open(pin_dir: &Path, audit_log: &Path) -> Result<Host, ConvergeError> {
        let (p, _lock) = state::open_locked(pin_dir).map_err(cerr)?;
        Ok(Host {
            pin_dir: pin_dir.to_path_buf(),
            audit: AuditLog::new(audit_log),
            pinned: Some(p),
            changes: 0,
        })
    }

    /// Makes the ports `desired` (interface names unique) enforced and removes
    /// the records `scope` allows that are not desired. Returns each desired
    /// port's outcome by interface name.
    pub fn sync(
        &mut self,
        desired: &[&Port],
        scope: Scope,
    ) -> Result<BTreeMap<String, PortOutcome>, ConvergeError> {
        let _lock = state::lock(&self.pin_dir).map_err(cerr)?;
        let mut p = match self.pinned.take() {
            Some(p) => p,
            None => Pinned::open(&self.pin_dir).map_err(cerr)?,
        };
        let r = self.sync_with(&mut p, desired, scope);
        if r.is_ok() {
            self.pinned = Some(p);
        }
        r
    }

    fn sync_with(
        &mut self,
        p: &mut Pinned,
        desired: &[&Port],
        scope: Scope,
    ) -> Result<BTreeMap<String, PortOutcome>, ConvergeError> {
        let mut out = BTreeMap::new();
        // An interface that exists but cannot carry the filter is this port's
        // error, not the whole step's (the planner would refuse everything).
        let mut usable = Vec::new();
        for spec in desired {
            match iface::ethernet_port(&spec.iface) {
                Ok(_) | Err(IfaceError::Unknown(_)) => usable.push((*spec).clone()),
                Err(e) => {
                    out.insert(spec.iface.clone(), PortOutcome::error(e.to_string()));
                }
            }
        }
        let current: Vec<PortInfo> = match scope {
            Scope::All => p.ports().map_err(cerr)?,
            Scope::Only(extra) => {
                let mut idx: BTreeSet<u32> = extra.iter().copied().collect();
                idx.extend(usable.iter().filter_map(|s| iface::index(&s.iface).ok()));
                let mut v = Vec::new();
                for i in idx {
                    if let Some(info) = p.port(i).map_err(cerr)? {
                        v.push(info);
                    }
                }
                v
            }
        };
        let st = State { ports: usable };
        let plan = state::plan_against(
            &current,
            &p.link_dir(),
            &st,
            PlanOptions {
                prune: true,
                skip_missing: true,
            },
        )
        .map_err(cerr)?;
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let audit = &self.audit;
        let mut changes = 0;
        // Per-port failures are reported per port; the step itself goes on.
        let _ = state::apply(p, &plan, &mut |o| {
            changes += 1;
            let mut e = o.audit_entry();
            e.command = "agent".into();
            let _ = audit.record(&e);
            if let Err(msg) = &o.result {
                failed.insert(o.plan.iface.clone(), msg.clone());
            }
        });
        self.changes += changes;
        for pp in &plan.ports {
            if pp.after.is_none() {
                continue;
            }
            let o = if pp.kind == Kind::Missing {
                PortOutcome {
                    state: PortState::Pending,
                    message: Some(format!("interface {} does not exist (yet)", pp.iface)),
                    ifindex: 0,
                    attach_mode: None,
                }
            } else if let Some(msg) = failed.get(&pp.iface) {
                PortOutcome::error(msg.clone())
            } else {
                let info = p.port(pp.ifindex).map_err(cerr)?;
                PortOutcome {
                    state: PortState::Enforced,
                    message: None,
                    ifindex: pp.ifindex,
                    attach_mode: info
                        .as_ref()
                        .and_then(|i| attach_mode_name(i.attach_mode))
                        .map(str::to_string),
                }
            };
            out.insert(pp.iface.clone(), o);
        }
        Ok(out)
    }

    /// Applies a state file without removing anything (the fail-static
    /// snapshot at start while the store is unreachable). Returns the ports changed.
    pub fn apply_snapshot(&mut self, st: &State) -> Result<u64, ConvergeError> {
        let specs: Vec<&Port> = st.ports.iter().collect();
        let before = self.changes;
        self.sync(&specs, Scope::Only(&[]))?;
        Ok(self.changes - before)
    }
}
