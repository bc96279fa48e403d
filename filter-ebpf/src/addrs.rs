//! Is this address one the port may use? Exact addresses are one hash lookup;
//! the prefix trie is consulted only for ports that have a prefix.
use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{flags, PortConfig, V4Key, V6Key, LPM_PORT_BITS};

use crate::{
    bytes::eq16,
    maps::{V4_ADDRS, V4_PREFIXES, V6_ADDRS, V6_PREFIXES},
};

#[inline(always)]
pub fn v4_allowed(port: &PortConfig, addr: [u8; 4]) -> bool {
    let key = V4Key {
        ifindex: port.ifindex,
        generation: port.generation,
        addr,
    };
    // SAFETY: the value is a plain u8 read once.
    if unsafe { V4_ADDRS.get(key) }.is_some() {
        return true;
    }
    port.flags & flags::HAS_V4_PREFIX != 0
        && V4_PREFIXES.get(Key::new(LPM_PORT_BITS + 32, key)).is_some()
}

#[inline(always)]
pub fn v6_allowed(port: &PortConfig, addr: &[u8; 16]) -> bool {
    if eq16(addr, &port.eui64_ll) {
        return true;
    }
    let key = V6Key {
        ifindex: port.ifindex,
        generation: port.generation,
        addr: *addr,
    };
    // SAFETY: the value is a plain u8 read once.
    if unsafe { V6_ADDRS.get(key) }.is_some() {
        return true;
    }
    port.flags & flags::HAS_V6_PREFIX != 0
        && V6_PREFIXES
            .get(Key::new(LPM_PORT_BITS + 128, key))
            .is_some()
}
