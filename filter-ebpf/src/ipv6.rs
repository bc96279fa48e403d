//! IPv6 first-hop security: header sanity, extension-header walk, source
//! address (bound, EUI-64 link-local, `::` only for DAD NS / MLDv2 report),
//! ND inspection (DAD only for the port's own targets) and RA guard; the
//! fragment rules are in `frag`, DHCPv6 by content in `dhcp`.
use filter_common::{PortConfig, Reason, MAX_IPV6_EXT_HEADERS, MAX_ND_OPTIONS};
use network_types::{ip::Ipv6Hdr, udp::UdpHdr};

use crate::{
    addrs::v6_allowed,
    bytes::{eq6, is_zero16, sub},
    dhcp, frag,
    ipv4::MAX_IP_LEN,
    pkt::{opaque, Frame},
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

/// What the fixed header and the extension-header walk found, for the
/// upper-layer checks.
struct Ip6 {
    /// End of the payload (upper-layer parsing stops here, not at the padded frame's end).
    end: usize,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
    src_unspecified: bool,
    /// A Fragment header was seen: 0 none, `FRAG_ATOMIC`, `FRAG_MORE`.
    fragment: u8,
}

#[inline(always)]
pub fn check(f: &Frame) -> Reason {
    let (l3, port) = (f.l3, f.port);
    let Some(ip) = f.header::<Ipv6Hdr>(l3) else {
        return Reason::Malformed;
    };
    if ip.version() != 6 {
        return Reason::Malformed;
    }
    // Upper-layer parsing is bounded by the payload length, not the (padded) frame.
    let mut end = l3 + 40 + ip.payload_len() as usize;
    // BIG TCP: a GSO super-frame over 64 KiB of payload carries payload length
    // 0 (with or without a jumbo hop-by-hop option); it runs to the frame's end.
    if end == l3 + 40 && f.len() - end > MAX_IP_LEN {
        end = f.len();
    }
    if end > f.len() {
        return Reason::Malformed;
    }
    let end = opaque(end);
    let (src, dst) = (ip.src_addr, ip.dst_addr);
    let src_unspecified = is_zero16(&src);

    // Extension headers, ICMPv6 and ND options are read as bytes:
    // network-types 0.2 has no layouts for them.
    // Walk at most MAX_IPV6_EXT_HEADERS extension headers. `fragment`: a
    // Fragment header was seen (0 none, FRAG_ATOMIC, FRAG_MORE).
    let mut fragment = 0u8;
    let mut nh = ip.next_hdr;
    let mut off = l3 + 40;
    let mut i = 0;
    while i < MAX_IPV6_EXT_HEADERS {
        if is_ext(nh) && fragment != 0 {
            // Nothing may follow the Fragment header but the upper layer:
            // a later fragment could otherwise overlap the upper-layer header.
            return Reason::Malformed;
        }
        if nh == NH_FRAGMENT {
            if off + 8 > end {
                return Reason::Malformed;
            }
            let Some(fh) = f.bytes::<8>(off) else {
                return Reason::Malformed;
            };
            nh = fh[0];
            off += 8;
            let offset = (u16::from_be_bytes([fh[2], fh[3]]) & 0xfff8) as usize;
            if offset != 0 {
                // Non-first fragment: no upper-layer header to inspect.
                if src_unspecified || !v6_allowed(port, &src) {
                    return Reason::Ipv6Spoof;
                }
                return frag::v6_later(&src, &dst, nh, offset);
            }
            fragment = if fh[3] & 1 != 0 {
                FRAG_MORE
            } else {
                FRAG_ATOMIC
            };
        } else if is_ext(nh) {
            if off + 2 > end {
                return Reason::Malformed;
            }
            let Some(h) = f.bytes::<2>(off) else {
                return Reason::Malformed;
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
    let v6 = Ip6 {
        end,
        hop_limit: ip.hop_limit,
        src,
        dst,
        src_unspecified,
        fragment,
    };

    match nh {
        NH_ICMPV6 => icmpv6(f, &v6, off),
        NH_UDP => {
            if off + 8 > end {
                return Reason::Malformed;
            }
            let Some(udp) = f.header::<UdpHdr>(off) else {
                return Reason::Malformed;
            };
            let verdict = source_only(port, &v6);
            if verdict != Reason::Pass {
                return verdict;
            }
            if v6.fragment == FRAG_MORE && frag::v6_link_scope(&v6.src, &v6.dst) {
                return Reason::Malformed;
            }
            let dport = udp.dst_port();
            if dhcp::v6_port(port, dport) {
                return dhcp::v6(f, off, end, dport);
            }
            Reason::Pass
        }
        _ => {
            // RFC 7112: a first fragment carries the whole upper-layer header.
            if v6.fragment == FRAG_MORE && nh == frag::IPPROTO_TCP && off + frag::TCP_HDR > end {
                return Reason::Malformed;
            }
            let v = source_only(port, &v6);
            if v == Reason::Pass
                && v6.fragment == FRAG_MORE
                && frag::v6_link_scope(&v6.src, &v6.dst)
            {
                return Reason::Malformed;
            }
            v
        }
    }
}

/// A Fragment header with offset 0 and M = 0 (RFC 6946), or M = 1.
const FRAG_ATOMIC: u8 = 1;
const FRAG_MORE: u8 = 2;

#[inline(always)]
fn source_only(port: &PortConfig, v6: &Ip6) -> Reason {
    if v6.src_unspecified || !v6_allowed(port, &v6.src) {
        return Reason::Ipv6Spoof;
    }
    Reason::Pass
}

/// The ICMPv6 message at `off`.
#[inline(always)]
fn icmpv6(f: &Frame, v6: &Ip6, off: usize) -> Reason {
    let (end, src, dst) = (v6.end, &v6.src, &v6.dst);
    if off + 4 > end {
        return Reason::Malformed;
    }
    let Some(head) = f.bytes::<4>(off) else {
        return Reason::Malformed;
    };
    let ty = head[0];
    let code = head[1];
    let is_nd = ty == ICMP6_NS || ty == ICMP6_NA;
    let mut target = [0u8; 16];
    if is_nd {
        if off + 24 > end {
            return Reason::Malformed;
        }
        let Some(nd) = f.bytes::<24>(off) else {
            return Reason::Malformed;
        };
        target = sub::<24, 8, 16>(nd);
    }

    if v6.src_unspecified {
        // `::` is only for Duplicate Address Detection and MLDv2 reports.
        let dad = ty == ICMP6_NS && is_solicited_node_of(dst, &target);
        if !dad && ty != ICMP6_MLDV2_REPORT {
            return Reason::Ipv6Spoof;
        }
    } else if !v6_allowed(f.port, src) {
        return Reason::Ipv6Spoof;
    }

    if ty == ICMP6_RA || ty == ICMP6_REDIRECT {
        return Reason::RaGuard;
    }
    if v6.fragment != 0 {
        // RFC 6980: ND (and MLD) must never be fragmented; RFC 7113: nothing
        // fragmented in link-local scope, where ND could hide.
        if frag::v6_nd_type(ty) {
            return Reason::NdSpoof;
        }
        if v6.fragment == FRAG_MORE && frag::v6_link_scope(src, dst) {
            return Reason::Malformed;
        }
    }
    match ty {
        ICMP6_NS | ICMP6_NA => nd(f, v6, off, ty, code, &target),
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
fn nd(f: &Frame, v6: &Ip6, off: usize, ty: u8, code: u8, target: &[u8; 16]) -> Reason {
    let (port, end, src_unspecified) = (f.port, v6.end, v6.src_unspecified);
    if v6.hop_limit != 255 || code != 0 {
        return Reason::NdSpoof;
    }
    // An NA, or a DAD probe (NS from `::`), only for an address the port may use.
    if (ty == ICMP6_NA || src_unspecified) && !v6_allowed(port, target) {
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
        let Some(h) = f.bytes::<2>(o) else {
            return Reason::Malformed;
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
            let Some(opt) = f.bytes::<8>(o) else {
                return Reason::Malformed;
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
