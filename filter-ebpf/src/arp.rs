//! ARP: well-formed Ethernet/IPv4 request or reply whose sender is the port itself.
use filter_common::Reason;
use network_types::arp::ArpHdr;

use crate::{addrs::v4_allowed, bytes::eq6, pkt::Frame};

/// Returns the verdict and whether the frame is an ARP request (for storm control).
#[inline(always)]
pub fn check(f: &Frame) -> (Reason, bool) {
    let port = f.port;
    let Some(a) = f.header::<ArpHdr>(f.l3) else {
        return (Reason::Malformed, false);
    };
    let op = a.oper();
    // Ethernet (1) / IPv4 (0x0800), 6- and 4-byte addresses.
    if a.htype() != 1 || a.ptype() != 0x0800 || a.hlen() != 6 || a.plen() != 4 {
        return (Reason::Malformed, false);
    }
    if op != 1 && op != 2 {
        return (Reason::Malformed, false);
    }
    let request = op == 1;
    if !eq6(&a.sha, &port.mac) {
        return (Reason::ArpSpoof, request);
    }
    let spa = a.spa;
    // A bound address, or 0.0.0.0 in a request: an ARP probe (RFC 5227).
    let spa_ok = v4_allowed(port, spa) || (request && spa == [0, 0, 0, 0]);
    if !spa_ok {
        return (Reason::ArpSpoof, request);
    }
    (Reason::Pass, request)
}
