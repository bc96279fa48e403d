//! Finding the record of the port a frame arrived on.
use filter_common::{PortConfig, PORT_INDEX_SLOTS};

use crate::maps::{CONFIGS, PORTS, PORT_INDEX};

/// The live record of `ifindex`: `CONFIGS[0]` (unbound, slot 0, no events)
/// when the interface has none, `None` only if the maps are inconsistent.
#[inline(always)]
pub fn record(ifindex: u32) -> Option<&'static PortConfig> {
    let cfg = match PORT_INDEX.get(ifindex & (PORT_INDEX_SLOTS - 1)) {
        Some(r) if r.ifindex == ifindex => r.cfg,
        // SAFETY: PortRef is plain data, read once.
        _ => match unsafe { PORTS.get(ifindex) } {
            Some(r) => r.cfg,
            None => 0,
        },
    };
    CONFIGS.get(cfg)
}
