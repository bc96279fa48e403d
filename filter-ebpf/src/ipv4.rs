//! IPv4: header sanity, source address, DHCP client exception; fragments
//! and DHCP content in `frag` and `dhcp`.
use filter_common::Reason;

use crate::{
    addrs::v4_allowed,
    dhcp, frag,
    pkt::{opaque, Frame},
};

const IPPROTO_UDP: u8 = 17;
/// Largest length an IP length field can express.
pub const MAX_IP_LEN: usize = 0xffff;

#[inline(always)]
pub fn check(f: &Frame) -> Reason {
    let (l3, port) = (f.l3, f.port);
    let Some(ip) = f.bytes::<20>(l3) else {
        return Reason::Malformed;
    };
    if ip[0] >> 4 != 4 {
        return Reason::Malformed;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let mut total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    // BIG TCP: a GSO super-frame over 64 KiB carries total length 0; its
    // packet then runs to the end of the frame (policy.md 4.1).
    if total == 0 && f.len() - l3 > MAX_IP_LEN {
        total = f.len() - l3;
    }
    if ihl < 20 || total < ihl || l3 + total > f.len() {
        return Reason::Malformed;
    }
    let total = opaque(total);
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let mut src_ok = v4_allowed(port, src);

    let frag_field = u16::from_be_bytes([ip[6], ip[7]]);
    let first_fragment = frag_field & 0x1fff == 0;
    let mut dport = 0u16;
    if ip[9] == IPPROTO_UDP && first_fragment {
        if ihl + 8 > total {
            return Reason::Malformed;
        }
        let Some(udp) = f.bytes::<4>(l3 + ihl) else {
            return Reason::Malformed;
        };
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        dport = u16::from_be_bytes([udp[2], udp[3]]);
        // A DHCP client has no address yet: 0.0.0.0:68 -> 255.255.255.255:67.
        if !src_ok
            && src == [0, 0, 0, 0]
            && ip[16] == 255
            && ip[17] == 255
            && ip[18] == 255
            && ip[19] == 255
            && sport == 68
            && dport == 67
        {
            src_ok = true;
        }
    }
    if !src_ok {
        return Reason::Ipv4Spoof;
    }
    // Fragments (MF set or an offset): per-frame rules, see frag.rs.
    if frag_field & 0x3fff != 0 && ip[9] == frag::IPPROTO_TCP {
        let v = frag::v4_tcp(ihl, total, frag_field);
        if v != Reason::Pass {
            return v;
        }
    }
    if dhcp::v4_port(port, dport) {
        return dhcp::v4(f, l3 + ihl, l3 + total, dport, frag_field & 0x2000 != 0);
    }
    Reason::Pass
}
