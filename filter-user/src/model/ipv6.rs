//! Section 6 (IPv6, ICMPv6/ND, DHCPv6) of policy.md.
//!
//! After the fixed header is checked, all parsing works on `packet`, the
//! slice from the IPv6 header to the end of payload (40 + payload length),
//! so "needs N bytes before the end of payload" is simply `packet.get(..)`.
use std::net::Ipv6Addr;

use filter_common::{Reason, MAX_IPV6_EXT_HEADERS, MAX_ND_OPTIONS};

use super::{allowed_v6, be16};
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

/// What the extension-header walk found.
enum Upper {
    /// A non-first fragment: no upper layer to inspect.
    LaterFragment,
    /// The upper-layer protocol and its offset in the packet.
    Proto(u8, usize),
}

/// 6.2: walk at most 6 extension headers.
fn walk(packet: &[u8]) -> Result<Upper, Reason> {
    let mut next = packet[6];
    let mut off = 40usize;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
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
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return Ok(Upper::LaterFragment);
                }
                next = h[0];
                off += 8;
            }
            other => return Ok(Upper::Proto(other, off)),
        }
    }
    match next {
        HOP_BY_HOP | ROUTING | FRAGMENT | DEST_OPTS => Err(Reason::Malformed),
        other => Ok(Upper::Proto(other, off)),
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
    let (proto, off) = match walk(packet) {
        Err(r) => return r,
        Ok(Upper::LaterFragment) => {
            return if source_allowed {
                Reason::Pass
            } else {
                Reason::Ipv6Spoof
            };
        }
        Ok(Upper::Proto(p, off)) => (p, off),
    };

    match proto {
        ICMPV6 => icmpv6(b, packet, off, hop_limit, src, dst),
        UDP => {
            // 6.4
            let (sport, dport) = match (be16(packet, off), be16(packet, off + 2)) {
                (Some(s), Some(d)) if off + 8 <= packet.len() => (s, d),
                _ => return Reason::Malformed,
            };
            // 6.5
            if !source_allowed {
                return Reason::Ipv6Spoof;
            }
            // 6.8
            if sport == 547 && dport == 546 && !b.allow_dhcp_server {
                return Reason::DhcpServer;
            }
            Reason::Pass
        }
        _ => {
            if source_allowed {
                Reason::Pass
            } else {
                Reason::Ipv6Spoof
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

    match (ty, target) {
        // 6.6
        (RA | REDIRECT, _) => Reason::RaGuard,
        (RS, _) => Reason::Pass,
        // 6.7
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
    if ty == NA && !allowed_v6(b, target) {
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
