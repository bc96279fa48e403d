//! ARP: well-formed Ethernet/IPv4 request or reply whose sender is the port itself.
use filter_common::Reason;

use crate::{addrs::v4_allowed, bytes::eq6, pkt::Frame};

/// Returns the verdict and whether the frame is an ARP request (for storm control).
#[inline(always)]
pub fn check(f: &Frame) -> (Reason, bool) {
    let port = f.port;
    let Some(a) = f.bytes::<28>(f.l3) else {
        return (Reason::Malformed, false);
    };
    let op = u16::from_be_bytes([a[6], a[7]]);
    if a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0x00 || a[4] != 6 || a[5] != 4 {
        return (Reason::Malformed, false);
    }
    if op != 1 && op != 2 {
        return (Reason::Malformed, false);
    }
    let request = op == 1;
    let sha = [a[8], a[9], a[10], a[11], a[12], a[13]];
    if !eq6(&sha, &port.mac) {
        return (Reason::ArpSpoof, request);
    }
    let spa = [a[14], a[15], a[16], a[17]];
    // A bound address, or 0.0.0.0 in a request: an ARP probe (RFC 5227).
    let spa_ok = v4_allowed(port, spa) || (request && spa == [0, 0, 0, 0]);
    if !spa_ok {
        return (Reason::ArpSpoof, request);
    }
    (Reason::Pass, request)
}
