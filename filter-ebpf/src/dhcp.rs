//! DHCP by content (docs/policy.md, "DHCP"): server and relay messages are
//! recognised by the port they are sent to and by their message type, not by
//! the server's source port; DHCPv4 client messages must name the port's own
//! hardware address. Only UDP datagrams to ports 67/68 (v4) and 546/547 (v6)
//! from ports without `allow_dhcp_server` get here.
use filter_common::{flags, PortConfig, Reason, MAX_DHCP_OPTIONS};

use crate::{
    bytes::{eq6, sub},
    pkt::{opaque, Frame},
};

pub const BOOTPS: u16 = 67;
pub const BOOTPC: u16 = 68;
pub const DHCP6_CLIENT: u16 = 546;
pub const DHCP6_SERVER: u16 = 547;

/// BOOTP fixed header (op .. file) and the DHCP magic cookie after it.
const BOOTP_FIXED: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
const OPT_OVERLOAD: u8 = 52;
const OPT_CLIENT_ID: u8 = 61;

/// DHCPv6 message types a client sends to a server/relay (RFC 8415 7.3:
/// SOLICIT 1, REQUEST 3, CONFIRM 4, RENEW 5, REBIND 6, RELEASE 8, DECLINE 9,
/// INFORMATION-REQUEST 11; RFC 7341 DHCPV4-QUERY 20). Everything else sent
/// to port 547 is a server or relay message.
const DHCP6_CLIENT_TYPES: u32 =
    1 << 1 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 8 | 1 << 9 | 1 << 11 | 1 << 20;

/// Does this destination port need the DHCP checks on this port?
#[inline(always)]
pub fn v4_port(port: &PortConfig, dport: u16) -> bool {
    (dport == BOOTPS || dport == BOOTPC) && port.flags & flags::ALLOW_DHCP_SERVER == 0
}

#[inline(always)]
pub fn v6_port(port: &PortConfig, dport: u16) -> bool {
    (dport == DHCP6_CLIENT || dport == DHCP6_SERVER) && port.flags & flags::ALLOW_DHCP_SERVER == 0
}

/// IPv4 UDP to port 67 or 68. `udp` is the UDP header's offset, `end` the end
/// of the IP packet, `more` the IPv4 more-fragments flag (offset is 0 here).
#[inline(always)]
pub fn v4(f: &Frame, udp: usize, end: usize, dport: u16, more: bool) -> Reason {
    if dport == BOOTPC {
        return Reason::DhcpServer;
    }
    // A client message split over fragments cannot be checked (and clients
    // never fragment: RFC 2131 messages fit in 576 bytes).
    if more {
        return Reason::Malformed;
    }
    let bootp = udp + 8;
    if bootp + BOOTP_FIXED > end {
        return Reason::Malformed;
    }
    let Some(h) = f.bytes::<34>(bootp) else {
        return Reason::Malformed;
    };
    // BOOTREPLY (2) is a server's; a request with giaddr set is a relay's.
    if h[0] == 2 || h[24] | h[25] | h[26] | h[27] != 0 {
        return Reason::DhcpServer;
    }
    if h[0] != 1 {
        return Reason::Malformed;
    }
    let chaddr = [h[28], h[29], h[30], h[31], h[32], h[33]];
    if h[1] != 1 || h[2] != 6 || !eq6(&chaddr, &f.port.mac) {
        return Reason::DhcpSpoof;
    }
    let opts = bootp + BOOTP_FIXED;
    if opts + 4 > end {
        // Plain BOOTP without the vendor area: nothing more to check.
        return Reason::Pass;
    }
    match f.bytes::<4>(opts) {
        Some(m) if *m == MAGIC => v4_options(f, opts + 4, end),
        Some(_) => Reason::Pass,
        None => Reason::Malformed,
    }
}

/// Walks at most `MAX_DHCP_OPTIONS` options: a client identifier of
/// hardware type 1 must be the bound MAC; option overload (which would move
/// options into `sname`/`file`, unwalked) and options left over are refused.
#[inline(always)]
fn v4_options(f: &Frame, start: usize, end: usize) -> Reason {
    let mut o = start;
    let mut i = 0;
    while i < MAX_DHCP_OPTIONS {
        // Opaque: keeps LLVM from turning the packet bounds checks below into
        // length arithmetic the verifier cannot follow.
        o = opaque(o);
        if o >= end {
            return Reason::Pass;
        }
        let Some(code) = byte_at(f, o) else {
            return Reason::Malformed;
        };
        if code == OPT_END {
            return Reason::Pass;
        }
        if code == OPT_PAD {
            o += 1;
            i += 1;
            continue;
        }
        if o + 2 > end {
            return Reason::Malformed;
        }
        let Some(h) = f.bytes::<2>(o) else {
            return Reason::Malformed;
        };
        let len = h[1] as usize;
        if o + 2 + len > end {
            return Reason::Malformed;
        }
        if code == OPT_OVERLOAD {
            return Reason::DhcpSpoof;
        }
        if code == OPT_CLIENT_ID {
            if len < 2 {
                return Reason::DhcpSpoof;
            }
            let Some(id) = f.bytes::<3>(o) else {
                return Reason::Malformed;
            };
            if id[2] == 1 {
                if len != 7 {
                    return Reason::DhcpSpoof;
                }
                let Some(b) = f.bytes::<9>(o) else {
                    return Reason::Malformed;
                };
                if !eq6(&sub::<9, 3, 6>(b), &f.port.mac) {
                    return Reason::DhcpSpoof;
                }
            }
        }
        o += 2 + len;
        i += 1;
    }
    if o < end {
        // More options than we walk: one of them could name someone else.
        match byte_at(f, o) {
            Some(OPT_END) => Reason::Pass,
            _ => Reason::DhcpSpoof,
        }
    } else {
        Reason::Pass
    }
}

/// The byte at `o` (> 0), read as the second of two: LLVM compiles a
/// one-byte bounds check into `ptr >= data_end`, a form the verifier does
/// not turn into a readable range.
#[inline(always)]
fn byte_at(f: &Frame, o: usize) -> Option<u8> {
    f.bytes::<2>(o - 1).map(|b| b[1])
}

/// IPv6 UDP to port 546 or 547. `udp` is the UDP header's offset, `end` the
/// end of payload.
#[inline(always)]
pub fn v6(f: &Frame, udp: usize, end: usize, dport: u16) -> Reason {
    if dport == DHCP6_CLIENT {
        return Reason::DhcpServer;
    }
    // msg-type + transaction-id: the smallest DHCPv6 message.
    if udp + 12 > end {
        return Reason::Malformed;
    }
    let Some(t) = f.bytes::<4>(opaque(udp + 8)) else {
        return Reason::Malformed;
    };
    let ty = t[0] as u32;
    if ty < 32 && DHCP6_CLIENT_TYPES & (1 << ty) != 0 {
        Reason::Pass
    } else {
        Reason::DhcpServer
    }
}
