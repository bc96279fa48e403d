//! What a stateless filter can enforce about fragments, frame by frame
//! (docs/policy.md, "Fragments"): RFC 1858 (tiny and overlapping TCP
//! fragments), RFC 7112 (the first fragment carries the upper-layer header),
//! RFC 6980 / RFC 7113 (no fragmented Neighbor Discovery, RA or MLD: no
//! fragments in link-local scope). Only fragments get here.
use filter_common::Reason;

pub const IPPROTO_TCP: u8 = 6;
/// The fixed TCP header: a first fragment must carry it, a later fragment
/// must not start inside it (RFC 1858: it could rewrite the flags).
pub const TCP_HDR: usize = 20;

/// IPv4 TCP fragment. `ihl`/`total` from the IP header, `frag` its flags and offset field.
#[inline(always)]
pub fn v4_tcp(ihl: usize, total: usize, frag: u16) -> Reason {
    let offset = ((frag & 0x1fff) as usize) * 8;
    if offset == 0 {
        if ihl + TCP_HDR > total {
            return Reason::Malformed;
        }
    } else if offset < TCP_HDR {
        return Reason::Malformed;
    }
    Reason::Pass
}

/// Link-local scope: a link-local source, or a link-local unicast or
/// interface/link-scope multicast destination (solicited-node included).
/// Every ND, RA, Redirect and MLD message is in this scope except unicast
/// NS/NA between global addresses.
#[inline(always)]
pub fn v6_link_scope(src: &[u8; 16], dst: &[u8; 16]) -> bool {
    let ll = |a: &[u8; 16]| a[0] == 0xfe && a[1] & 0xc0 == 0x80;
    ll(src) || ll(dst) || (dst[0] == 0xff && dst[1] & 0x0f <= 2)
}

/// ICMPv6 types that must never be fragmented (RFC 6980; MLD too): Router
/// Solicitation, Neighbor Solicitation/Advertisement (`nd_spoof`), MLD
/// query/reports (`nd_spoof`). RA and Redirect are `ra_guard` anyway.
#[inline(always)]
pub fn v6_nd_type(ty: u8) -> bool {
    matches!(ty, 130..=133 | 135 | 136 | 143)
}

/// A non-first IPv6 fragment whose source is allowed. `nh` is the fragment
/// header's next header, `offset` the fragment offset in bytes.
#[inline(always)]
pub fn v6_later(src: &[u8; 16], dst: &[u8; 16], nh: u8, offset: usize) -> Reason {
    if v6_link_scope(src, dst) || (nh == IPPROTO_TCP && offset < TCP_HDR) {
        return Reason::Malformed;
    }
    Reason::Pass
}
