//! Sections 4 (IPv4) and 5 (ARP) of policy.md.
use std::net::Ipv4Addr;

use filter_common::Reason;

use super::{allowed_v4, be16, dhcp, frag};
use crate::binding::Binding;

const PROTO_UDP: u8 = 17;

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Section 4. `l3` is the offset of the IPv4 header in `frame`.
pub(super) fn check_ipv4(b: &Binding, frame: &[u8], l3: usize) -> Reason {
    // 4.1: the fixed header must be in the frame, and the whole packet (by its
    // own total length) too.
    let hdr = match frame.get(l3..l3 + 20) {
        Some(h) => h,
        None => return Reason::Malformed,
    };
    let version = hdr[0] >> 4;
    let header_len = usize::from(hdr[0] & 0x0f) * 4;
    let total_len = super::ip_len(
        usize::from(u16::from_be_bytes([hdr[2], hdr[3]])),
        frame.len() - l3,
    );
    if version != 4 || header_len < 20 || total_len < header_len || l3 + total_len > frame.len() {
        return Reason::Malformed;
    }
    // From here on, only the packet itself (padding excluded).
    let packet = &frame[l3..l3 + total_len];
    let frag_field = u16::from_be_bytes([packet[6], packet[7]]);
    let fragment_offset = frag_field & 0x1fff;
    let protocol = packet[9];
    let src = v4(&packet[12..16]);
    let dst = v4(&packet[16..20]);

    // 4.2: UDP first fragment: the UDP header must fit in the packet.
    let udp_ports = if protocol == PROTO_UDP && fragment_offset == 0 {
        if header_len + 8 > total_len {
            return Reason::Malformed;
        }
        match (be16(packet, header_len), be16(packet, header_len + 2)) {
            (Some(s), Some(d)) => Some((s, d)),
            _ => return Reason::Malformed,
        }
    } else {
        None
    };

    // 4.3 / 4.4: source address.
    let dhcp_client =
        udp_ports == Some((68, 67)) && src == Ipv4Addr::UNSPECIFIED && dst == Ipv4Addr::BROADCAST;
    if !(allowed_v4(b, src) || dhcp_client) {
        return Reason::Ipv4Spoof;
    }
    // 4.5: fragments.
    if frag_field & 0x3fff != 0 && protocol == frag::TCP {
        let r = frag::v4_tcp(header_len, total_len, fragment_offset);
        if r != Reason::Pass {
            return r;
        }
    }
    // 4.6: DHCP.
    match udp_ports {
        Some((_, dport)) if dhcp::v4_applies(b, dport) => dhcp::v4(
            b,
            dport,
            &packet[header_len + 8..],
            frag_field & 0x2000 != 0,
        ),
        _ => Reason::Pass,
    }
}

/// The ARP opcode at `l3`, when the frame has the full 28-byte Ethernet/IPv4
/// ARP header (used for the storm class).
pub(super) fn arp_opcode(frame: &[u8], l3: usize) -> Option<u16> {
    let arp = frame.get(l3..l3.checked_add(28)?)?;
    let well_formed =
        arp[0..2] == [0, 1] && arp[2..4] == [0x08, 0x00] && arp[4] == 6 && arp[5] == 4;
    if !well_formed {
        return None;
    }
    Some(u16::from_be_bytes([arp[6], arp[7]]))
}

/// Section 5.
pub(super) fn check_arp(b: &Binding, frame: &[u8], l3: usize) -> Reason {
    let opcode = match arp_opcode(frame, l3) {
        Some(op @ (1 | 2)) => op,
        _ => return Reason::Malformed,
    };
    let arp = &frame[l3..l3 + 28];
    let sender_mac = &arp[8..14];
    let sender_ip = v4(&arp[14..18]);
    if sender_mac != b.mac.0 {
        return Reason::ArpSpoof;
    }
    // "allowed v4, or 0.0.0.0 when the opcode is request": a reply from
    // 0.0.0.0 passes when a bound prefix covers 0.0.0.0 (e.g. 0.0.0.0/0).
    // The program disagrees (pinned in tests/tests/integration/differential.rs).
    let probe = opcode == 1 && sender_ip == Ipv4Addr::UNSPECIFIED;
    if !(allowed_v4(b, sender_ip) || probe) {
        return Reason::ArpSpoof;
    }
    Reason::Pass
}
