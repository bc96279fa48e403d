//! The one place the agent changes the kernel: the lifecycle
//! [`Reconciler`] (the same planner and applier as `portguard apply`, so a
//! port already right is not written at all; link events bind and attach a
//! port whose interface appears), fed port by port from etcd.
use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use serde::{Deserialize, Serialize};

use crate::{
    error::one_line,
    lifecycle::{reconcile, LinkEvent, Options, Reconciler},
    state::{Port, State},
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
    /// "native", "generic", "tc" or None when not attached.
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

/// Why a convergence step failed as a whole.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConvergeError(pub String);

fn cerr(e: anyhow::Error) -> ConvergeError {
    ConvergeError(one_line(&e))
}

/// The host's pinned state, owned by the agent (ports not desired are removed).
pub struct Host {
    r: Reconciler,
    changes: Arc<AtomicU64>,
    /// The reconciler's lines until the call that made them returns: a sync
    /// of thousands of ports logs as many lines, one write(2) each otherwise.
    log: Arc<Mutex<Vec<u8>>>,
    port_capacity: u32,
}

/// A line the reconciler logs for a port it changed (`+` bind, `~` change, `-` remove).
fn is_change(line: &str) -> bool {
    line.starts_with("+ ") || line.starts_with("~ ") || line.starts_with("- ")
}

impl Host {
    /// Creates the pin directory and maps now (under the pin-dir lock), so
    /// that other commands find them rather than race to create them.
    pub fn new(
        pin_dir: &std::path::Path,
        audit_log: &std::path::Path,
        max_ports: Option<u32>,
    ) -> Result<Host, ConvergeError> {
        let changes = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (changes.clone(), log.clone());
        let r = Reconciler::new(
            Options {
                pin_dir: pin_dir.to_path_buf(),
                audit_log: audit_log.to_path_buf(),
                prune: true,
                audit_command: "agent".into(),
                max_ports,
            },
            move |line| {
                if is_change(line) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut b) = l.lock() {
                    let _ = writeln!(b, "portguard agent: {line}");
                }
            },
        );
        let mut host = Host {
            r,
            changes,
            log,
            port_capacity: 0,
        };
        // Kept open for the first convergence (the object is parsed once).
        let opened = host.r.open().map_err(cerr);
        host.flush_log();
        host.port_capacity = opened?;
        Ok(host)
    }

    /// Writes the lines logged so far to stderr, in one write.
    fn flush_log(&self) {
        let text = match self.log.lock() {
            Ok(mut b) => std::mem::take(&mut *b),
            Err(_) => return,
        };
        if !text.is_empty() {
            let _ = std::io::stderr().write_all(&text);
        }
    }

    /// `r`, once the lines its call logged are written.
    fn logged<T>(&self, r: T) -> T {
        self.flush_log();
        r
    }

    /// Ports the pin dir holds (fixed when its maps were created).
    pub fn port_capacity(&self) -> u32 {
        self.port_capacity
    }

    /// Ports changed in the kernel so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// After a complete list: exactly `ports` (interface names unique), the
    /// rest removed. An error means some port failed (see [`Host::outcome`]).
    pub fn set_all(&mut self, ports: Vec<Port>) -> Result<(), ConvergeError> {
        let r = self.r.set_desired(State {
            ports,
            guards: Vec::new(),
        });
        self.logged(r.map(|_| ()).map_err(cerr))
    }

    /// One port added or changed.
    pub fn upsert(&mut self, port: Port) -> Result<(), ConvergeError> {
        let r = self.r.upsert_port(port);
        self.logged(r.map_err(cerr))
    }

    /// Interface `iface` is no longer any port's: unbound and detached.
    pub fn remove(&mut self, iface: &str) -> Result<(), ConvergeError> {
        let r = self.r.remove_port(iface);
        self.logged(r.map_err(cerr))
    }

    /// A link appeared, changed or went away.
    pub fn on_link(&mut self, ev: &LinkEvent) -> Result<(), ConvergeError> {
        let r = self.r.on_event(ev);
        self.logged(r.map_err(cerr))
    }

    /// Verifies the programs in the background, ahead of the first attach.
    pub fn warm_up(&mut self) {
        self.r.warm_up();
        self.flush_log();
    }

    /// Link events were lost: re-read every link.
    pub fn resync(&mut self) -> Result<(), ConvergeError> {
        let r = self.r.resync();
        self.logged(r.map(|_| ()).map_err(cerr))
    }

    /// Where desired port `iface` stands.
    pub fn outcome(&self, iface: &str) -> PortOutcome {
        match self.r.status(iface) {
            None | Some(reconcile::PortStatus::Pending) => PortOutcome {
                state: PortState::Pending,
                message: Some(format!("interface {iface} does not exist (yet)")),
                ifindex: 0,
                attach_mode: None,
            },
            Some(reconcile::PortStatus::Enforced {
                ifindex,
                attach_mode,
            }) => PortOutcome {
                state: PortState::Enforced,
                message: None,
                ifindex,
                attach_mode: attach_mode.map(str::to_string),
            },
            Some(reconcile::PortStatus::Error(e)) => PortOutcome::error(e),
        }
    }

    /// The fail-static snapshot while the store is unreachable: its ports
    /// are bound and attached, nothing is removed.
    pub fn apply_snapshot(&mut self, st: State) -> u64 {
        let before = self.changes();
        for p in st.ports {
            let _ = self.upsert(p);
        }
        self.changes() - before
    }
}
