//! The "Fragments" rules of policy.md: what a stateless filter enforces
//! about IPv4 and IPv6 fragments, frame by frame.
use std::net::Ipv6Addr;

use filter_common::Reason;

pub(super) const TCP: u8 = 6;
pub(super) const TCP_HDR: usize = 20;

/// IPv4 TCP fragment: a first fragment carries the fixed TCP header, a later
/// one does not start inside it (RFC 1858).
pub(super) fn v4_tcp(header_len: usize, total_len: usize, offset_units: u16) -> Reason {
    let offset = usize::from(offset_units) * 8;
    if (offset == 0 && header_len + TCP_HDR > total_len) || (offset != 0 && offset < TCP_HDR) {
        Reason::Malformed
    } else {
        Reason::Pass
    }
}

/// Link-local scope: link-local source or destination (fe80::/10), or a
/// multicast destination of scope 0-2 (interface-, link-local).
pub(super) fn v6_link_scope(src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    let ll = |a: Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
    let o = dst.octets();
    ll(src) || ll(dst) || (o[0] == 0xff && o[1] & 0x0f <= 2)
}

/// ICMPv6 types that are `nd_spoof` in any packet with a Fragment header
/// (RFC 6980): MLD 130-132 and 143, RS 133, NS 135, NA 136.
pub(super) fn v6_nd_type(ty: u8) -> bool {
    matches!(ty, 130..=133 | 135 | 136 | 143)
}
