//! portguard userspace: bindings, pinned state, attach/detach, counters.
//! The `portguard` binary (src/main.rs, src/cli/) is a thin layer over this.

pub mod attach;
pub mod audit;
pub mod batch;
pub mod binding;
pub mod bpffs;
pub mod clock;
pub mod daemon;
pub mod error;
pub mod events;
pub mod iface;
pub mod lifecycle;
pub mod logfile;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod parse;
pub mod pcap;
pub mod pinned;
pub mod report;
pub mod spec;
pub mod state;
pub mod sys;
pub mod testrun;
pub mod who;

pub use filter_common::{Reason, N_REASONS};

/// The XDP object built by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("PORTGUARD_EBPF_OBJ"));
