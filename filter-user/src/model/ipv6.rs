//! Section 6 (IPv6, ICMPv6/ND, DHCPv6) of policy.md.
//!
//! After the fixed header is checked, all parsing works on `packet`, the
//! slice from the IPv6 header to the end of payload (40 + payload length),
//! so "needs N bytes before the end of payload" is simply `packet.get(..)`.
use std::net::Ipv6Addr;

use filter_common::{Reason, MAX_IPV6_EXT_HEADERS, MAX_ND_OPTIONS};

use super::{allowed_v6, be16, dhcp, frag};
use crate::binding::Binding;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

const RS: u8 = 133;
const RA: u8 = 134;
const NS: u8 = 135;
const NA: u8 = 136;
const REDIRECT: u8 = 137;
const MLDV2_REPORT: u8 = 143;

const OPT_SLLA: u8 = 1;
const OPT_TLLA: u8 = 2;

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// Whether the walk met a Fragment header with offset 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frag {
    None,
    /// M = 0: the whole packet (RFC 6946).
    Atomic,
    /// M = 1: a first fragment.
    More,
}

/// What the extension-header walk found.
enum Upper {
    /// A non-first fragment: no upper layer to inspect; the Fragment
    /// header's next header and the offset in bytes.
    LaterFragment { next: u8, offset: usize },
    /// The upper-layer protocol, its offset in the packet, and the fragment state.
    Proto(u8, usize, Frag),
}

/// 6.2: walk at most 6 extension headers; nothing but the upper layer may
/// follow a Fragment header.
fn walk(packet: &[u8]) -> Result<Upper, Reason> {
    let mut next = packet[6];
    let mut off = 40usize;
    let mut frag = Frag::None;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if matches!(next, HOP_BY_HOP | ROUTING | DEST_OPTS | FRAGMENT) && frag != Frag::None {
            return Err(Reason::Malformed);
        }
        match next {
            HOP_BY_HOP | ROUTING | DEST_OPTS => {
                let h = packet.get(off..off + 2).ok_or(Reason::Malformed)?;
                let len = (usize::from(h[1]) + 1) * 8;
                if off + len > packet.len() {
                    return Err(Reason::Malformed);
                }
                next = h[0];
                off += len;
            }
            FRAGMENT => {
                let h = packet.get(off..off + 8).ok_or(Reason::Malformed)?;
                let field = u16::from_be_bytes([h[2], h[3]]);
                let offset = usize::from(field & 0xfff8);
                if offset != 0 {
                    return Ok(Upper::LaterFragment { next: h[0], offset });
                }
                frag = if field & 1 != 0 {
                    Frag::More
                } else {
                    Frag::Atomic
                };
                next = h[0];
                off += 8;
            }
            other => return Ok(Upper::Proto(other, off, frag)),
        }
    }
    match next {
        HOP_BY_HOP | ROUTING | FRAGMENT | DEST_OPTS => Err(Reason::Malformed),
        other => Ok(Upper::Proto(other, off, frag)),
    }
}

/// ff02::1:ffXX:XXXX with XX:XXXX the last 24 bits of `target`.
fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

/// Section 6. `l3` is the offset of the IPv6 header in `frame`.
pub(super) fn check(b: &Binding, frame: &[u8], l3: usize) -> Reason {
    // 6.1
    let hdr = match frame.get(l3..l3 + 40) {
        Some(h) => h,
        None => return Reason::Malformed,
    };
    if hdr[0] >> 4 != 6 {
        return Reason::Malformed;
    }
    let payload_len = super::ip_len(
        usize::from(u16::from_be_bytes([hdr[4], hdr[5]])),
        frame.len() - l3 - 40,
    );
    let end = l3 + 40 + payload_len;
    let packet = match frame.get(l3..end) {
        Some(p) => p,
        None => return Reason::Malformed,
    };
    let hop_limit = packet[7];
    let src = addr(&packet[8..24]);
    let dst = addr(&packet[24..40]);
    let unspecified = src == Ipv6Addr::UNSPECIFIED;
    let source_allowed = !unspecified && allowed_v6(b, src);

    // 6.2
    let (proto, off, frag) = match walk(packet) {
        Err(r) => return r,
        Ok(Upper::LaterFragment { next, offset }) => {
            // 6.2 non-first fragment: source, then the fragment rules.
            return if !source_allowed {
                Reason::Ipv6Spoof
            } else if frag::v6_link_scope(src, dst) || (next == frag::TCP && offset < frag::TCP_HDR)
            {
                Reason::Malformed
            } else {
                Reason::Pass
            };
        }
        Ok(Upper::Proto(p, off, frag)) => (p, off, frag),
    };
    // A first fragment in link-local scope (checked after the rules above).
    let fragment_in_link_scope = frag == Frag::More && frag::v6_link_scope(src, dst);

    match proto {
        ICMPV6 => icmpv6(b, packet, off, hop_limit, src, dst, frag),
        UDP => {
            // 6.4
            let dport = match (be16(packet, off), be16(packet, off + 2)) {
                (Some(_), Some(d)) if off + 8 <= packet.len() => d,
                _ => return Reason::Malformed,
            };
            // 6.5
            if !source_allowed {
                return Reason::Ipv6Spoof;
            }
            if fragment_in_link_scope {
                return Reason::Malformed;
            }
            // 6.9
            if dhcp::v6_applies(b, dport) {
                return dhcp::v6(dport, &packet[off + 8..]);
            }
            Reason::Pass
        }
        _ => {
            // 6.4: a first fragment carries the whole TCP header (RFC 7112).
            if frag == Frag::More && proto == frag::TCP && off + frag::TCP_HDR > packet.len() {
                return Reason::Malformed;
            }
            if !source_allowed {
                Reason::Ipv6Spoof
            } else if fragment_in_link_scope {
                Reason::Malformed
            } else {
                Reason::Pass
            }
        }
    }
}

fn icmpv6(
    b: &Binding,
    packet: &[u8],
    off: usize,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    frag: Frag,
) -> Reason {
    // 6.3
    let head = match packet.get(off..off + 4) {
        Some(h) => h,
        None => return Reason::Malformed,
    };
    let (ty, code) = (head[0], head[1]);
    let nd = ty == NS || ty == NA;
    let target = if nd {
        match packet.get(off..off + 24) {
            Some(h) => Some(addr(&h[8..24])),
            None => return Reason::Malformed,
        }
    } else {
        None
    };

    // 6.5
    let unspecified = src == Ipv6Addr::UNSPECIFIED;
    if unspecified {
        let dad = ty == NS && target.is_some_and(|t| dst == solicited_node(t));
        if !(dad || ty == MLDV2_REPORT) {
            return Reason::Ipv6Spoof;
        }
    } else if !allowed_v6(b, src) {
        return Reason::Ipv6Spoof;
    }

    // 6.6
    if ty == RA || ty == REDIRECT {
        return Reason::RaGuard;
    }
    // 6.7: fragmented ND/MLD (RFC 6980), fragments in link-local scope (RFC 7113).
    if frag != Frag::None && frag::v6_nd_type(ty) {
        return Reason::NdSpoof;
    }
    if frag == Frag::More && frag::v6_link_scope(src, dst) {
        return Reason::Malformed;
    }
    match (ty, target) {
        (RS, _) => Reason::Pass,
        // 6.8
        (NS | NA, Some(target)) => {
            neighbor(b, packet, off, ty, code, hop_limit, target, unspecified)
        }
        _ => Reason::Pass,
    }
}

#[allow(clippy::too_many_arguments)]
fn neighbor(
    b: &Binding,
    packet: &[u8],
    off: usize,
    ty: u8,
    code: u8,
    hop_limit: u8,
    target: Ipv6Addr,
    unspecified: bool,
) -> Reason {
    if hop_limit != 255 || code != 0 {
        return Reason::NdSpoof;
    }
    // An NA, or a DAD probe (NS from `::`), only for an address the port may use.
    if (ty == NA || unspecified) && !allowed_v6(b, target) {
        return Reason::NdSpoof;
    }
    let own_lla = if ty == NS { OPT_SLLA } else { OPT_TLLA };
    let mut opts = match packet.get(off + 24..) {
        Some(o) => o,
        None => return Reason::Malformed,
    };
    let mut seen = 0;
    while !opts.is_empty() {
        if seen == MAX_ND_OPTIONS {
            return Reason::NdSpoof;
        }
        let (kind, len8) = match opts.get(0..2) {
            Some(h) => (h[0], h[1]),
            None => return Reason::Malformed,
        };
        if len8 == 0 {
            return Reason::NdSpoof;
        }
        let len = usize::from(len8) * 8;
        let opt = match opts.get(..len) {
            Some(o) => o,
            None => return Reason::Malformed,
        };
        if kind == own_lla && (len8 != 1 || unspecified || opt[2..8] != b.mac.0) {
            return Reason::NdSpoof;
        }
        opts = &opts[len..];
        seen += 1;
    }
    Reason::Pass
}
