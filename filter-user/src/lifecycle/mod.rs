//! Ports that come and go: link events from rtnetlink ([`netlink`]), the
//! `[[guard]]` interface patterns ([`guard`]), and the [`reconcile::Reconciler`]
//! that keeps the pinned state equal to a desired state as interfaces are
//! created, deleted, renamed and moved. `portguard daemon` feeds it from a
//! state file; anything else (a fleet agent) can feed it the same way:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use portguard::lifecycle::{LinkEvents, Options, Received, Reconciler};
//! // Subscribe first, then sync: nothing created in between is missed.
//! let mut events = LinkEvents::subscribe()?;
//! let mut r = Reconciler::new(
//!     Options {
//!         pin_dir: "/sys/fs/bpf/portguard".into(),
//!         audit_log: "/var/log/portguard/audit.jsonl".into(),
//!         prune: true,
//!         audit_command: "agent".into(),
//!         max_ports: Some(16384),
//!     },
//!     |line| eprintln!("{line}"),
//! );
//! r.set_desired(portguard::state::load("/etc/portguard/portguard.toml".as_ref())?)?;
//! loop {
//!     match events.next(std::time::Duration::from_secs(1))? {
//!         Received::Events(evs) => {
//!             for ev in &evs {
//!                 r.on_event(ev)?;
//!             }
//!         }
//!         Received::Overrun => {
//!             r.resync()?;
//!         }
//!         Received::Timeout => {}
//!     }
//!     // r.upsert_port(..) / r.remove_port(..) as the desired state changes;
//!     // r.pending(), r.enforced(), r.errors() say where each port stands.
//! }
//! # }
//! ```
pub mod guard;
pub mod netlink;
pub mod reconcile;

pub use guard::Guard;
pub use netlink::{Link, LinkEvent, LinkEvents, Received};
pub use reconcile::{Options, PortStatus, Reconciler};
