//! tc ingress companion of the XDP program: polices the VLAN tag a frame
//! carries in skb metadata (`skb->vlan_tci`), which XDP cannot see.
//!
//! A VLAN device on a veth (eth0.100 with tx-vlan offload) hands the tag to
//! the peer as metadata, not as frame bytes: XDP (native or generic) checks
//! such a frame as untagged. This program runs right after XDP on the same
//! interface and applies the VLAN rules of docs/policy.md section 2 to the
//! metadata tag; the frame bytes (the inner frame) were already checked by
//! XDP. O(1): no frame parsing, one record lookup, only for tagged frames.
//!
//! In tc mode the checks themselves (`skb.rs`, ahead of this program in the
//! tcx chain) see the metadata tag and apply these rules; a frame they pass
//! has an allowed tag, so this program lets it go on without counting.
//!
//! Counting (see docs/vlan-offload.md): XDP already counted a frame it let
//! through as `passed`. When this program drops it, it takes that back
//! (`passed` -1 packet, -len bytes, on the same CPU) and counts the drop by
//! reason with the on-wire length (len + 4 tag bytes), so the counters read as
//! if one program had decided. In monitor mode the frame passes: `would_drop`
//! grows and `passed` keeps the frame, as in XDP. No drop events are sampled here.
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};
use filter_common::{flags, Reason};

use crate::{maps::STATS, policy::vlan_allowed, port};

/// `__sk_buff.vlan_proto` and `.protocol` hold the EtherType in network byte order.
const BE_8021Q: u32 = (0x8100u16).to_be() as u32;
const BE_8021AD: u32 = (0x88a8u16).to_be() as u32;
const VLAN_TAG_LEN: u64 = 4;

/// Returns `TC_ACT_UNSPEC` (tcx "next": let later tc programs and filters run)
/// or `TC_ACT_SHOT`. Never `TC_ACT_OK`, which would skip the operator's own
/// ingress filters (e.g. policers) on the interface.
#[classifier]
pub fn portguard_vlan(ctx: TcContext) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the program's context; these are plain u32 ctx fields.
    let (present, ifindex) = unsafe { ((*skb).vlan_present, (*skb).ifindex) };
    if present == 0 {
        return TC_ACT_UNSPEC;
    }
    // SAFETY: as above.
    let (tci, proto, inner, len) = unsafe {
        (
            (*skb).vlan_tci,
            (*skb).vlan_proto,
            (*skb).protocol,
            (*skb).len,
        )
    };
    let Some(port) = port::record(ifindex) else {
        return shoot(0, false, Reason::UnboundPort, len);
    };
    let monitor = port.flags & flags::MONITOR != 0;
    if port.flags & flags::BOUND == 0 {
        return shoot(port.slot, monitor, Reason::UnboundPort, len);
    }
    // Only single 802.1Q tags with an allowed VID. A metadata tag in front of
    // an in-band one is a stacked tag (the frame's EtherType is then 0x8100/0x88a8).
    if proto != BE_8021Q
        || !vlan_allowed(port, (tci & 0x0fff) as u16)
        || inner == BE_8021Q
        || inner == BE_8021AD
    {
        return shoot(port.slot, monitor, Reason::Vlan, len);
    }
    TC_ACT_UNSPEC
}

/// Counts a drop (or, in monitor mode, a would-drop) in `slot` and returns the action.
#[inline(always)]
fn shoot(slot: u32, monitor: bool, reason: Reason, len: u32) -> i32 {
    let idx = reason as usize;
    let wire = len as u64 + VLAN_TAG_LEN;
    if let Some(s) = STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value: no other CPU writes it, and tc runs with BH off.
        let s = unsafe { &mut *s };
        if idx < s.dropped.len() {
            if monitor {
                // Passes: XDP's `passed` for this frame stays right.
                s.would_drop[idx].packets += 1;
                s.would_drop[idx].bytes += wire;
            } else {
                s.dropped[idx].packets += 1;
                s.dropped[idx].bytes += wire;
                // XDP counted this frame as passed on this CPU (same softirq
                // pass); saturating in case it did not run (attach in progress).
                if s.passed.packets > 0 {
                    s.passed.packets -= 1;
                    s.passed.bytes = s.passed.bytes.saturating_sub(len as u64);
                }
            }
        }
    }
    if monitor {
        TC_ACT_UNSPEC
    } else {
        TC_ACT_SHOT
    }
}
