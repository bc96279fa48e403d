//! IPv4: header sanity, source address, DHCP client exception; fragments
//! and DHCP content in `frag` and `dhcp`.
use filter_common::Reason;
use network_types::{ip::Ipv4Hdr, udp::UdpHdr};

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
    let Some(ip) = f.header::<Ipv4Hdr>(l3) else {
        return Reason::Malformed;
    };
    if ip.version() != 4 {
        return Reason::Malformed;
    }
    let ihl = ip.ihl() as usize;
    let mut total = ip.tot_len() as usize;
    // BIG TCP: a GSO super-frame over 64 KiB carries total length 0; its
    // packet then runs to the end of the frame (policy.md 4.1).
    if total == 0 && f.len() - l3 > MAX_IP_LEN {
        total = f.len() - l3;
    }
    if ihl < 20 || total < ihl || l3 + total > f.len() {
        return Reason::Malformed;
    }
    let total = opaque(total);
    let src = ip.src_addr;
    let mut src_ok = v4_allowed(port, src);

    // Flags and offset as one word (network-types splits them): the masks
    // below test "MF or offset" and "offset" in one instruction each.
    let frag_field = u16::from_be_bytes(ip.frags);
    let first_fragment = frag_field & 0x1fff == 0;
    let mut dport = 0u16;
    if ip.proto == IPPROTO_UDP && first_fragment {
        if ihl + 8 > total {
            return Reason::Malformed;
        }
        let Some(udp) = f.header::<UdpHdr>(l3 + ihl) else {
            return Reason::Malformed;
        };
        let sport = udp.src_port();
        dport = udp.dst_port();
        // A DHCP client has no address yet: 0.0.0.0:68 -> 255.255.255.255:67.
        if !src_ok && src == [0, 0, 0, 0] && ip.dst_addr == [255; 4] && sport == 68 && dport == 67 {
            src_ok = true;
        }
    }
    if !src_ok {
        return Reason::Ipv4Spoof;
    }
    // Fragments (MF set or an offset): per-frame rules, see frag.rs.
    if frag_field & 0x3fff != 0 && ip.proto == frag::IPPROTO_TCP {
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
