//! The fleet: bindings from etcd (`portguard agent`, `portguard fleet`).
//! The contract is in docs/fleet.md.
pub mod agent;
pub mod converge;
pub mod keys;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod value;
