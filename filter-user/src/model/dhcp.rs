//! The DHCP rules of policy.md (section 4 step 7, section 6 step 9, and
//! "DHCP"): server and relay messages by destination port and message type,
//! DHCPv4 client messages by their hardware addresses.
use filter_common::{Reason, MAX_DHCP_OPTIONS};

use crate::binding::Binding;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const BOOTP_FIXED: usize = 236;

/// Does a UDP datagram to `dport` get the DHCP checks on this port?
pub(super) fn v4_applies(b: &Binding, dport: u16) -> bool {
    !b.allow_dhcp_server && (dport == 67 || dport == 68)
}

pub(super) fn v6_applies(b: &Binding, dport: u16) -> bool {
    !b.allow_dhcp_server && (dport == 546 || dport == 547)
}

/// IPv4: `udp_payload` is everything after the UDP header up to the end of
/// the IP packet; `more_fragments` is the MF flag of a first fragment.
pub(super) fn v4(b: &Binding, dport: u16, udp_payload: &[u8], more_fragments: bool) -> Reason {
    if dport == 68 {
        return Reason::DhcpServer;
    }
    if more_fragments || udp_payload.len() < BOOTP_FIXED {
        return Reason::Malformed;
    }
    let (op, htype, hlen) = (udp_payload[0], udp_payload[1], udp_payload[2]);
    let giaddr = &udp_payload[24..28];
    let chaddr = &udp_payload[28..34];
    if op == 2 || giaddr != [0, 0, 0, 0] {
        return Reason::DhcpServer;
    }
    if op != 1 {
        return Reason::Malformed;
    }
    if htype != 1 || hlen != 6 || chaddr != b.mac.0 {
        return Reason::DhcpSpoof;
    }
    match udp_payload.get(BOOTP_FIXED..BOOTP_FIXED + 4) {
        Some(m) if m == MAGIC => options(b, &udp_payload[BOOTP_FIXED + 4..]),
        _ => Reason::Pass,
    }
}

fn options(b: &Binding, mut opts: &[u8]) -> Reason {
    for _ in 0..MAX_DHCP_OPTIONS {
        let Some(&code) = opts.first() else {
            return Reason::Pass;
        };
        match code {
            255 => return Reason::Pass,
            0 => {
                opts = &opts[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(1) else {
            return Reason::Malformed;
        };
        let Some(data) = opts.get(2..2 + usize::from(len)) else {
            return Reason::Malformed;
        };
        if code == 52 {
            return Reason::DhcpSpoof;
        }
        if code == 61 {
            match data {
                [1, mac @ ..] if mac == b.mac.0 => {}
                [1, ..] => return Reason::DhcpSpoof,
                [_, _, ..] => {}
                _ => return Reason::DhcpSpoof,
            }
        }
        opts = &opts[2 + usize::from(len)..];
    }
    match opts.first() {
        None | Some(255) => Reason::Pass,
        Some(_) => Reason::DhcpSpoof,
    }
}

/// IPv6: `udp_payload` as for [`v4`].
pub(super) fn v6(dport: u16, udp_payload: &[u8]) -> Reason {
    if dport == 546 {
        return Reason::DhcpServer;
    }
    if udp_payload.len() < 4 {
        return Reason::Malformed;
    }
    match udp_payload[0] {
        1 | 3 | 4 | 5 | 6 | 8 | 9 | 11 | 20 => Reason::Pass,
        _ => Reason::DhcpServer,
    }
}
