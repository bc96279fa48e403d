//! Declarative state: which ports portguard guards, and making the kernel
//! match (`portguard apply`, `portguard daemon`, and any other agent).
//!
//! A state file lists every port, in TOML or in JSON with the same
//! structure; each port is a [`PortSpec`]:
//!
//! ```toml
//! [[port]]
//! iface = "vm1"
//! mac = "02:00:00:00:00:01"
//! ips = ["192.0.2.11", "2001:db8::11", "198.51.100.0/28"]
//! tenant = "acme"
//! mode = "enforce"        # or "monitor"
//! attach = true
//! broadcast_pps = 200     # plus broadcast_burst, multicast_*, arp_*
//! allow_dhcp_server = false
//! allow_ethertype = ["0x88cc"]
//! allow_vlan = [100]
//! ```
//!
//! Three steps, one module each:
//!
//! * **parse** ([`parse`], [`load`]): text -> [`State`], validated as a whole
//!   before anything touches the kernel; every error names the line, the
//!   port and the field ([`StateError`]).
//! * **plan** ([`plan`], [`plan_against`]): [`State`] + the pinned port
//!   records -> [`Plan`], one [`PortPlan`] per port, each an ordered list
//!   of [`Step`]s. Describing a plan (`describe`, `to_json`) and applying it
//!   walk the same list.
//! * **apply** ([`apply`]): carries the steps out, each port's binding
//!   atomically through [`Pinned::bind`](crate::pinned::Pinned::bind),
//!   under the pin-dir [`lock`] ([`open_locked`]).
//!
//! # Using it from a daemon or an agent
//!
//! Ports need not come from a file. Build the state in memory from
//! [`PortSpec`]s (from JSON, etcd, ...) and plan/apply it:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use portguard::{spec::PortSpec, state::{self, PlanOptions, State}};
//! let specs: Vec<PortSpec> = serde_json::from_str(r#"[{"iface": "vm1", "mac": "02:00:00:00:00:01"}]"#)?;
//! let st = State::from_specs(specs, "etcd")?;
//! // None: maps created now get the default capacity (`--max-ports`).
//! let (mut p, _lock) = state::open_locked("/sys/fs/bpf/portguard".as_ref(), None)?;
//! let plan = state::plan(&p, &st, PlanOptions { prune: false, skip_missing: true })?;
//! state::apply(&mut p, &plan, &mut |outcome| println!("{}", outcome.plan.describe()))?;
//! # Ok(()) }
//! ```
//!
//! One port alone (a key changed or was deleted): [`Port::from_spec`] then
//! [`plan_one`] and [`apply_port`]; [`plan_removal`] unbinds and detaches
//! one port's record. [`plan_port`] and [`plan_leftover`] are the pure
//! per-port planners [`plan_against`] is made of, for callers that hold
//! the port records themselves.
mod apply;
mod parse;
mod plan;

use std::{fmt, path::Path};

use anyhow::{Context, Result};

pub use apply::{apply, apply_port, lock, open_locked, Outcome};
pub use parse::{parse, Format};
pub use plan::{
    diff_bindings, plan, plan_against, plan_leftover, plan_one, plan_port, plan_removal,
    plan_resolved, Changes, FieldChange, Kind, Plan, PlanOptions, PortPlan, Step,
};

use crate::{binding::Binding, spec::PortSpec};

/// One validated port: what it is bound to and whether it is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub iface: String,
    /// Normalized (sorted, unique, bounds checked).
    pub binding: Binding,
    /// The filter should be attached to the interface.
    pub attach: bool,
    /// 1-based line of the port's table (TOML files only).
    pub line: Option<usize>,
}

impl Port {
    /// Validates one port (interface name, binding). `origin` names where
    /// it came from in the error.
    // The error is built once per rejected port: its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn from_spec(spec: &PortSpec, origin: &str) -> Result<Port, StateError> {
        parse::check_port(spec).map_err(|(field, message)| StateError {
            origin: origin.to_string(),
            line: None,
            column: None,
            port: None,
            field: Some(field.to_string()),
            message,
        })
    }

    /// The port as a [`PortSpec`] (every limit spelled out).
    pub fn spec(&self) -> PortSpec {
        PortSpec {
            attach: Some(self.attach),
            ..PortSpec::from_binding(&self.iface, &self.binding)
        }
    }
}

/// A validated set of ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// In file order; interface names are unique.
    pub ports: Vec<Port>,
    /// `[[guard]]` patterns: matching interfaces are attached fail-closed
    /// as soon as they appear, until a port binds them (the daemon, and any
    /// [`Reconciler`](crate::lifecycle::Reconciler), follows them; `apply`
    /// is one-shot and does not).
    pub guards: Vec<crate::lifecycle::Guard>,
}

impl State {
    /// Validates ports that come from anywhere (JSON from etcd, an API): the
    /// same checks as a file's, errors naming `origin`, the port and the field.
    #[allow(clippy::result_large_err)]
    pub fn from_specs(
        specs: impl IntoIterator<Item = PortSpec>,
        origin: &str,
    ) -> Result<State, StateError> {
        parse::validate(specs.into_iter().collect(), origin, &parse::NoPositions)
    }

    /// The ports as [`PortSpec`]s, in order.
    pub fn specs(&self) -> Vec<PortSpec> {
        self.ports.iter().map(Port::spec).collect()
    }
}

/// Why a state file was rejected. The whole file is rejected: nothing changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    /// File name (or `<input>`).
    pub origin: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// `port[N]` (0-based) and its iface, when the error is inside a port.
    pub port: Option<(usize, Option<String>)>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, ", line {l}, column {c}")?,
            (Some(l), None) => write!(f, ", line {l}")?,
            _ => {}
        }
        match &self.port {
            Some((i, Some(name))) => write!(f, ", port[{i}] (iface {name:?})")?,
            Some((i, None)) => write!(f, ", port[{i}]")?,
            None => {}
        }
        if let Some(field) = &self.field {
            // A JSON key may hold a newline (an unknown field): errors are one line.
            write!(f, ", field `{}`", field.escape_debug())?;
        }
        // Parser messages may span lines ("invalid array\nexpected `]`"): errors are one line.
        let message: Vec<&str> = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        write!(f, ": {}", message.join("; "))
    }
}

impl std::error::Error for StateError {}

/// Reads and parses a state file.
pub fn load(path: &Path) -> Result<State> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read state file {}", path.display()))?;
    let format = Format::detect(path, &text);
    Ok(parse(&text, format, &path.display().to_string())?)
}
