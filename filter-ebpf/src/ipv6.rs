//! IPv6 first-hop security: header sanity, extension-header walk, source
//! address (bound, EUI-64 link-local, `::` only for DAD NS / MLDv2 report),
//! ND inspection, RA guard and DHCPv6 server guard.
use filter_common::{flags, PortConfig, Reason, MAX_IPV6_EXT_HEADERS, MAX_ND_OPTIONS};

use crate::{
    addrs::v6_allowed,
    bytes::{eq6, is_zero16, sub},
    ipv4::MAX_IP_LEN,
    pkt::{opaque, Pkt},
};

const NH_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_DSTOPTS: u8 = 60;
const NH_UDP: u8 = 17;
const NH_ICMPV6: u8 = 58;

const ICMP6_RS: u8 = 133;
const ICMP6_RA: u8 = 134;
const ICMP6_NS: u8 = 135;
const ICMP6_NA: u8 = 136;
const ICMP6_REDIRECT: u8 = 137;
const ICMP6_MLDV2_REPORT: u8 = 143;

#[inline(always)]
fn is_ext(nh: u8) -> bool {
    nh == NH_HOP || nh == NH_ROUTING || nh == NH_FRAGMENT || nh == NH_DSTOPTS
}

#[inline(always)]
pub fn check(p: &Pkt, l3: usize, port: &PortConfig) -> Reason {
    let ip = match p.bytes::<40>(l3) {
        Some(h) => h,
        None => return Reason::Malformed,
    };
    if ip[0] >> 4 != 6 {
        return Reason::Malformed;
    }
    // Upper-layer parsing is bounded by the payload length, not the (padded) frame.
    let mut end = l3 + 40 + u16::from_be_bytes([ip[4], ip[5]]) as usize;
    // BIG TCP: a GSO super-frame over 64 KiB of payload carries payload length
    // 0 (with or without a jumbo hop-by-hop option); it runs to the frame's end.
    if end == l3 + 40 && p.len() - end > MAX_IP_LEN {
        end = p.len();
    }
    if end > p.len() {
        return Reason::Malformed;
    }
    let end = opaque(end);
    let hop_limit = ip[7];
    let src: [u8; 16] = sub::<40, 8, 16>(ip);
    let dst: [u8; 16] = sub::<40, 24, 16>(ip);
    let src_unspecified = is_zero16(&src);

    // Walk at most MAX_IPV6_EXT_HEADERS extension headers.
    let mut nh = ip[6];
    let mut off = l3 + 40;
    let mut i = 0;
    while i < MAX_IPV6_EXT_HEADERS {
        if nh == NH_FRAGMENT {
            if off + 8 > end {
                return Reason::Malformed;
            }
            let f = match p.bytes::<8>(off) {
                Some(f) => f,
                None => return Reason::Malformed,
            };
            nh = f[0];
            off += 8;
            if u16::from_be_bytes([f[2], f[3]]) & 0xfff8 != 0 {
                // Non-first fragment: no upper-layer header to inspect, source only.
                return source_only(port, &src, src_unspecified);
            }
        } else if is_ext(nh) {
            if off + 2 > end {
                return Reason::Malformed;
            }
            let h = match p.bytes::<2>(off) {
                Some(h) => h,
                None => return Reason::Malformed,
            };
            let len = (h[1] as usize + 1) * 8;
            if off + len > end {
                return Reason::Malformed;
            }
            nh = h[0];
            off += len;
        } else {
            break;
        }
        i += 1;
    }
    if is_ext(nh) {
        // Chain longer than the bound: the upper layer stays hidden.
        return Reason::Malformed;
    }

    match nh {
        NH_ICMPV6 => icmpv6(p, off, end, hop_limit, &src, &dst, src_unspecified, port),
        NH_UDP => {
            if off + 8 > end {
                return Reason::Malformed;
            }
            let udp = match p.bytes::<4>(off) {
                Some(u) => u,
                None => return Reason::Malformed,
            };
            let verdict = source_only(port, &src, src_unspecified);
            if verdict != Reason::Pass {
                return verdict;
            }
            let sport = u16::from_be_bytes([udp[0], udp[1]]);
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            if sport == 547 && dport == 546 && port.flags & flags::ALLOW_DHCP_SERVER == 0 {
                return Reason::DhcpServer;
            }
            Reason::Pass
        }
        _ => source_only(port, &src, src_unspecified),
    }
}

#[inline(always)]
fn source_only(port: &PortConfig, src: &[u8; 16], src_unspecified: bool) -> Reason {
    if src_unspecified || !v6_allowed(port, src) {
        return Reason::Ipv6Spoof;
    }
    Reason::Pass
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn icmpv6(
    p: &Pkt,
    off: usize,
    end: usize,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    src_unspecified: bool,
    port: &PortConfig,
) -> Reason {
    if off + 4 > end {
        return Reason::Malformed;
    }
    let head = match p.bytes::<4>(off) {
        Some(h) => h,
        None => return Reason::Malformed,
    };
    let ty = head[0];
    let code = head[1];
    let is_nd = ty == ICMP6_NS || ty == ICMP6_NA;
    let mut target = [0u8; 16];
    if is_nd {
        if off + 24 > end {
            return Reason::Malformed;
        }
        let nd = match p.bytes::<24>(off) {
            Some(n) => n,
            None => return Reason::Malformed,
        };
        target = sub::<24, 8, 16>(nd);
    }

    if src_unspecified {
        // `::` is only for Duplicate Address Detection and MLDv2 reports.
        let dad = ty == ICMP6_NS && is_solicited_node_of(dst, &target);
        if !dad && ty != ICMP6_MLDV2_REPORT {
            return Reason::Ipv6Spoof;
        }
    } else if !v6_allowed(port, src) {
        return Reason::Ipv6Spoof;
    }

    match ty {
        ICMP6_RA | ICMP6_REDIRECT => Reason::RaGuard,
        ICMP6_NS | ICMP6_NA => nd(
            p,
            off,
            end,
            ty,
            code,
            hop_limit,
            &target,
            src_unspecified,
            port,
        ),
        ICMP6_RS => Reason::Pass,
        _ => Reason::Pass,
    }
}

/// ff02::1:ffXX:XXXX for the last 24 bits of `target`.
#[inline(always)]
fn is_solicited_node_of(dst: &[u8; 16], target: &[u8; 16]) -> bool {
    let prefix = [0xffu8, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff];
    let mut acc = 0u8;
    let mut i = 0;
    while i < 13 {
        acc |= dst[i] ^ prefix[i];
        i += 1;
    }
    acc == 0 && dst[13] == target[13] && dst[14] == target[14] && dst[15] == target[15]
}

/// Neighbor Solicitation / Advertisement (RFC 4861 7.1) checks.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn nd(
    p: &Pkt,
    off: usize,
    end: usize,
    ty: u8,
    code: u8,
    hop_limit: u8,
    target: &[u8; 16],
    src_unspecified: bool,
    port: &PortConfig,
) -> Reason {
    if hop_limit != 255 || code != 0 {
        return Reason::NdSpoof;
    }
    if ty == ICMP6_NA && !v6_allowed(port, target) {
        return Reason::NdSpoof;
    }
    // Source LLA (1) in an NS, Target LLA (2) in an NA must carry the bound MAC.
    let lla_type = if ty == ICMP6_NS { 1 } else { 2 };
    let mut o = off + 24;
    let mut i = 0;
    while i < MAX_ND_OPTIONS {
        if o >= end {
            return Reason::Pass;
        }
        if o + 2 > end {
            return Reason::Malformed;
        }
        let h = match p.bytes::<2>(o) {
            Some(h) => h,
            None => return Reason::Malformed,
        };
        let len = h[1] as usize * 8;
        if len == 0 {
            return Reason::NdSpoof;
        }
        if o + len > end {
            return Reason::Malformed;
        }
        if h[0] == lla_type {
            if src_unspecified || len != 8 {
                return Reason::NdSpoof;
            }
            let opt = match p.bytes::<8>(o) {
                Some(b) => b,
                None => return Reason::Malformed,
            };
            if !eq6(&sub::<8, 2, 6>(opt), &port.mac) {
                return Reason::NdSpoof;
            }
        }
        o += len;
        i += 1;
    }
    if o < end {
        // More options than we inspect: refuse rather than pass one unchecked.
        return Reason::NdSpoof;
    }
    Reason::Pass
}
