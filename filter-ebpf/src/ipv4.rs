//! IPv4: header sanity, source address, DHCP client exception, DHCP server guard.
use filter_common::{flags, PortConfig, Reason};

use crate::{
    addrs::v4_allowed,
    pkt::{opaque, Pkt},
};

const IPPROTO_UDP: u8 = 17;
/// Largest length an IP length field can express.
pub const MAX_IP_LEN: usize = 0xffff;

#[inline(always)]
pub fn check(p: &Pkt, l3: usize, port: &PortConfig) -> Reason {
    let ip = match p.bytes::<20>(l3) {
        Some(h) => h,
        None => return Reason::Malformed,
    };
    if ip[0] >> 4 != 4 {
        return Reason::Malformed;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let mut total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    // BIG TCP: a GSO super-frame over 64 KiB carries total length 0; its
    // packet then runs to the end of the frame (policy.md 4.1).
    if total == 0 && p.len() - l3 > MAX_IP_LEN {
        total = p.len() - l3;
    }
    if ihl < 20 || total < ihl || l3 + total > p.len() {
        return Reason::Malformed;
    }
    let total = opaque(total);
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let mut src_ok = v4_allowed(port, src);

    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    if ip[9] == IPPROTO_UDP && first_fragment {
        if ihl + 8 > total {
            return Reason::Malformed;
        }
        let udp = match p.bytes::<4>(l3 + ihl) {
            Some(u) => u,
            None => return Reason::Malformed,
        };
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
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
        if src_ok && sport == 67 && dport == 68 && port.flags & flags::ALLOW_DHCP_SERVER == 0 {
            return Reason::DhcpServer;
        }
    }
    if !src_ok {
        return Reason::Ipv4Spoof;
    }
    Reason::Pass
}
