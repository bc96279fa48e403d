//! Reference model of the data-path policy, written from `docs/policy.md`
//! (not from the eBPF code) so that the differential tests in `tests/` can
//! check the XDP program against an independent reading of the spec.
//!
//! Everything here is plain userspace Rust over `&[u8]`: every read goes
//! through `slice::get`, so hostile input can never panic the model.
//!
//! * [`evaluate`]: sections 1-6 (port, Ethernet/VLAN, per-EtherType rules),
//!   plus the storm-control class of the frame (section 7's "first match").
//! * [`Gcra`] / [`StormBuckets`]: section 7 with an explicit clock.
//! * [`outcome`]: section 8 (action and counter for a final reason).

mod dhcp;
mod frag;
mod gcra;
mod ipv4;
mod ipv6;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{eui64_link_local, PortStats, Reason};

pub use gcra::{Gcra, StormBuckets};

use crate::binding::{Binding, Mode};

/// Which storm-control bucket a frame that passed sections 1-6 is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StormClass {
    /// Not limited.
    Unicast,
    Broadcast,
    Multicast,
    ArpRequest,
}

/// The model's verdict for one frame (before storm control).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `Reason::Pass` when every non-storm check passes.
    pub reason: Reason,
    /// Section 7 class (ARP request, broadcast, multicast, unicast). Only
    /// meaningful when `reason == Reason::Pass`.
    pub class: StormClass,
}

/// Which counter of the port a frame lands in (section 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Passed,
    /// Enforce mode: `dropped[reason]`.
    Dropped(Reason),
    /// Monitor mode: `would_drop[reason]` and also `passed`.
    WouldDrop(Reason),
}

/// XDP action values (`xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// What the program does with a frame whose final reason is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// [`XDP_DROP`] or [`XDP_PASS`].
    pub action: u32,
    pub counted: Counted,
}

impl Outcome {
    /// The exact change of the port's counters for one frame of `frame_len` bytes.
    pub fn stats_delta(&self, frame_len: usize) -> PortStats {
        let mut s = PortStats::ZERO;
        self.add_to(&mut s, frame_len);
        s
    }

    /// Adds this frame to `stats` (for accumulating expected deltas over a batch).
    pub fn add_to(&self, s: &mut PortStats, frame_len: usize) {
        let b = frame_len as u64;
        match self.counted {
            Counted::Passed => {
                s.passed.packets += 1;
                s.passed.bytes += b;
            }
            Counted::Dropped(r) => {
                s.dropped[r as usize].packets += 1;
                s.dropped[r as usize].bytes += b;
            }
            Counted::WouldDrop(r) => {
                s.would_drop[r as usize].packets += 1;
                s.would_drop[r as usize].bytes += b;
                s.passed.packets += 1;
                s.passed.bytes += b;
            }
        }
    }
}

/// Section 8: action and counter for the final reason of a frame.
pub fn outcome(binding: Option<&Binding>, reason: Reason) -> Outcome {
    let drop = Outcome {
        action: XDP_DROP,
        counted: Counted::Dropped(reason),
    };
    match (binding, reason) {
        // Without a binding there is no mode: always enforce (fail closed).
        (None, Reason::Pass) => Outcome {
            action: XDP_PASS,
            counted: Counted::Passed,
        },
        (None, _) => drop,
        (Some(_), Reason::Pass) => Outcome {
            action: XDP_PASS,
            counted: Counted::Passed,
        },
        (Some(b), r) if b.mode == Mode::Monitor => Outcome {
            action: XDP_PASS,
            counted: Counted::WouldDrop(r),
        },
        (Some(_), _) => drop,
    }
}

/// Sections 1-6 of policy.md. `binding == None` means unbound port.
pub fn evaluate(binding: Option<&Binding>, frame: &[u8]) -> Decision {
    let reason = match binding {
        None => Reason::UnboundPort,
        Some(b) => check(b, frame),
    };
    Decision {
        reason,
        class: storm_class(binding, frame),
    }
}

/// Section 7, first match: ARP request, broadcast, multicast, unicast.
fn storm_class(binding: Option<&Binding>, frame: &[u8]) -> StormClass {
    if let Some(b) = binding {
        if let Ok((ET_ARP, l3)) = l2_payload(b, frame) {
            if ipv4::arp_opcode(frame, l3) == Some(1) {
                return StormClass::ArpRequest;
            }
        }
    }
    match frame.get(0..6) {
        Some(dst) if dst.iter().all(|&b| b == 0xff) => StormClass::Broadcast,
        Some(dst) if dst[0] & 1 == 1 => StormClass::Multicast,
        _ => StormClass::Unicast,
    }
}

pub(crate) const ET_IPV4: u16 = 0x0800;
pub(crate) const ET_ARP: u16 = 0x0806;
pub(crate) const ET_IPV6: u16 = 0x86dd;
pub(crate) const ET_VLAN: u16 = 0x8100;
pub(crate) const ET_QINQ: u16 = 0x88a8;

pub(crate) fn be16(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Sections 4.1 / 6.1: the length an IP length field (IPv4 total length, IPv6
/// payload length) stands for, given the bytes the frame holds for it. 0 is
/// a BIG TCP super-frame's "see the frame" when those bytes exceed 65535.
pub(crate) fn ip_len(field: usize, in_frame: usize) -> usize {
    if field == 0 && in_frame > usize::from(u16::MAX) {
        in_frame
    } else {
        field
    }
}

/// Section 2: the EtherType the frame carries after an allowed 802.1Q tag, and
/// the offset of the L3 header; `Err` is the verdict when the L2 checks fail.
/// The source-MAC check is done by the caller.
pub(crate) fn l2_payload(b: &Binding, frame: &[u8]) -> Result<(u16, usize), Reason> {
    let outer = be16(frame, 12).ok_or(Reason::Malformed)?;
    match outer {
        ET_QINQ => Err(Reason::Vlan),
        ET_VLAN => {
            if b.vlans.is_empty() {
                return Err(Reason::Vlan);
            }
            let tci = be16(frame, 14).ok_or(Reason::Malformed)?;
            let inner = be16(frame, 16).ok_or(Reason::Malformed)?;
            if !b.vlans.contains(&(tci & 0x0fff)) {
                return Err(Reason::Vlan);
            }
            if inner == ET_VLAN || inner == ET_QINQ {
                return Err(Reason::Vlan);
            }
            Ok((inner, 18))
        }
        et => Ok((et, 14)),
    }
}

fn check(b: &Binding, frame: &[u8]) -> Reason {
    // Section 2.
    if frame.len() < 14 {
        return Reason::Malformed;
    }
    let src = &frame[6..12];
    if src[0] & 1 == 1 || src != b.mac.0 {
        return Reason::MacSpoof;
    }
    let (ethertype, l3) = match l2_payload(b, frame) {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Section 3.
    match ethertype {
        ET_IPV4 => ipv4::check_ipv4(b, frame, l3),
        ET_ARP => ipv4::check_arp(b, frame, l3),
        ET_IPV6 => ipv6::check(b, frame, l3),
        et if b.ethertypes.contains(&et) => Reason::Pass,
        _ => Reason::Ethertype,
    }
}

/// *allowed v4*: a bound address or inside a bound prefix.
pub fn allowed_v4(b: &Binding, a: Ipv4Addr) -> bool {
    b.ips.iter().any(|n| n.contains(IpAddr::V4(a)))
}

/// *allowed v6*: a bound address, inside a bound prefix, or the EUI-64
/// link-local address of the bound MAC.
pub fn allowed_v6(b: &Binding, a: Ipv6Addr) -> bool {
    a.octets() == eui64_link_local(b.mac.0) || b.ips.iter().any(|n| n.contains(IpAddr::V6(a)))
}

/// Sections 1-7 against a port's storm buckets at time `now_ns`: the final
/// reason the program would count for this frame.
pub fn evaluate_with_storm(
    binding: Option<&Binding>,
    buckets: &mut StormBuckets,
    frame: &[u8],
    now_ns: u64,
) -> Reason {
    let d = evaluate(binding, frame);
    if d.reason != Reason::Pass {
        return d.reason;
    }
    buckets.admit(d.class, now_ns)
}
