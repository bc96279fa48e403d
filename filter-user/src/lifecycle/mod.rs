//! Ports that come and go: link events from rtnetlink ([`netlink`]), the
//! `[[guard]]` interface patterns ([`guard`]), and the [`reconcile::Reconciler`]
//! that keeps the pinned state equal to a desired state as interfaces are
//! created, deleted, renamed and moved. `portguard daemon` feeds it from a
//! state file; anything else (a fleet agent) can feed it the same way.
pub mod guard;
pub mod netlink;
pub mod reconcile;

pub use guard::Guard;
pub use netlink::{Link, LinkEvent, LinkEvents, Received};
pub use reconcile::{Options, PortStatus, Reconciler};
