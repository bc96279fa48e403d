//! Is this address one the port may use? Up to `MAX_INLINE_ADDRS` host
//! addresses per family are in the record itself (no lookup); a port with
//! more has them in the exact-address hash (one lookup); the prefix trie is
//! consulted only for ports that have a prefix.
use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{flags, PortConfig, V4Key, V6Key, LPM_PORT_BITS, MAX_INLINE_ADDRS};

use crate::{
    bytes::eq16,
    maps::{V4_ADDRS, V4_PREFIXES, V6_ADDRS, V6_PREFIXES},
};

#[inline(always)]
pub fn v4_allowed(port: &PortConfig, addr: [u8; 4]) -> bool {
    let a = u32::from_ne_bytes(addr);
    let n = port.n_v4_inline as usize;
    let mut i = 0;
    while i < MAX_INLINE_ADDRS && i < n {
        if port.v4_inline[i] == a {
            return true;
        }
        i += 1;
    }
    let key = V4Key {
        ifindex: port.ifindex,
        generation: port.generation,
        addr,
    };
    // SAFETY: the value is a plain u8 read once.
    if port.flags & flags::HAS_V4_TABLE != 0 && unsafe { V4_ADDRS.get(key) }.is_some() {
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
    let n = port.n_v6_inline as usize;
    let mut i = 0;
    while i < MAX_INLINE_ADDRS && i < n {
        if eq16(addr, &port.v6_inline[i]) {
            return true;
        }
        i += 1;
    }
    let key = V6Key {
        ifindex: port.ifindex,
        generation: port.generation,
        addr: *addr,
    };
    // SAFETY: the value is a plain u8 read once.
    if port.flags & flags::HAS_V6_TABLE != 0 && unsafe { V6_ADDRS.get(key) }.is_some() {
        return true;
    }
    port.flags & flags::HAS_V6_PREFIX != 0
        && V6_PREFIXES
            .get(Key::new(LPM_PORT_BITS + 128, key))
            .is_some()
}
