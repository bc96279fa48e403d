//! Counting and drop-event sampling: everything that happens after the verdict.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    programs::{TcContext, XdpContext},
};
use filter_common::{flags, DropEvent, PortConfig, Reason, EVENT_CAPTURE, N_REASONS};

use crate::{
    limits::conform,
    maps::{EVENTS, RATE, STATS},
    pkt::Pkt,
    policy::{ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
};

/// Where a drop event's first bytes come from: the XDP and tc programs
/// each have their own helper (the tc one reads an skb's paged part too).
pub trait Capture {
    /// Copies the frame's first `n` bytes to `dst`; 0 on success.
    fn capture(&self, dst: *mut c_void, n: u32) -> i64;
}

impl Capture for XdpContext {
    #[inline(always)]
    fn capture(&self, dst: *mut c_void, n: u32) -> i64 {
        // SAFETY: `dst` points at `n` writable bytes (a reserved ring-buffer record).
        unsafe { bpf_xdp_load_bytes(self.ctx, 0, dst, n) }
    }
}

impl Capture for TcContext {
    #[inline(always)]
    fn capture(&self, dst: *mut c_void, n: u32) -> i64 {
        // SAFETY: as above.
        unsafe { bpf_skb_load_bytes(self.skb.skb as *const c_void, 0, dst, n) }
    }
}

/// Counts the frame `p` in `slot`; true when it may go on (passed, or
/// monitor mode), false to drop it. `port` is `None` only when the maps are
/// inconsistent (slot 0, no events).
#[inline(always)]
pub fn finish(
    ctx: &impl Capture,
    p: &Pkt,
    port: Option<&PortConfig>,
    slot: u32,
    reason: Reason,
) -> bool {
    let bytes = p.counted_len() as u64;
    let monitor = port.is_some_and(|c| c.flags & flags::MONITOR != 0);
    let idx = reason as usize;
    if let Some(s) = STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value: no other CPU writes it, and XDP runs with preemption off.
        let s = unsafe { &mut *s };
        if reason == Reason::Pass || idx >= N_REASONS {
            s.passed.packets += 1;
            s.passed.bytes += bytes;
            return true;
        }
        if monitor {
            s.would_drop[idx].packets += 1;
            s.would_drop[idx].bytes += bytes;
            s.passed.packets += 1;
            s.passed.bytes += bytes;
        } else {
            s.dropped[idx].packets += 1;
            s.dropped[idx].bytes += bytes;
        }
        if let Some(port) = port {
            sample(ctx, p, port, reason, monitor, s);
        }
    }
    reason == Reason::Pass || monitor
}

#[inline(always)]
fn sample(
    ctx: &impl Capture,
    p: &Pkt,
    port: &PortConfig,
    reason: Reason,
    monitor: bool,
    stats: &mut filter_common::PortStats,
) {
    let idx = reason as usize;
    if idx >= N_REASONS || port.events.interval_ns == 0 {
        return;
    }
    let Some(state) = RATE.get_ptr_mut(port.slot) else {
        return;
    };
    // SAFETY: idx < N_REASONS, inside the map value.
    let tat = unsafe { &raw mut (*state).events_tat[idx] };
    if !conform(tat, &port.events) {
        stats.sampled_out += 1;
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        stats.events_lost += 1;
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned DropEvent-sized record.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).ifindex = port.ifindex;
        (*ev).frame_len = p.counted_len() as u32;
        (*ev).reason = reason as u8;
        (*ev).monitor = monitor as u8;
        (*ev).ip_version = 0;
        (*ev).cap_len = 0;
        (*ev).ethertype = 0;
        (*ev).vlan = 0xffff;
        (*ev).src_mac = [0; 6];
        (*ev).dst_mac = [0; 6];
        (*ev)._pad = 0;
        (*ev).src_ip = [0; 16];
        (*ev).dst_ip = [0; 16];
        if let Some(eth) = p.bytes::<14>(0) {
            (*ev).dst_mac = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
            (*ev).src_mac = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
            let mut et = u16::from_be_bytes([eth[12], eth[13]]);
            let mut l3 = 14;
            if et == ETH_P_8021Q {
                if let Some(tag) = p.bytes::<4>(14) {
                    (*ev).vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
                    et = u16::from_be_bytes([tag[2], tag[3]]);
                    l3 = 18;
                }
            }
            if let Some((_, tci)) = p.meta_tag {
                (*ev).vlan = tci & 0x0fff;
            }
            (*ev).ethertype = et;
            if et == ETH_P_IP {
                if let Some(ip) = p.bytes::<20>(l3) {
                    (*ev).ip_version = 4;
                    (*ev).src_ip = [
                        ip[12], ip[13], ip[14], ip[15], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ];
                    (*ev).dst_ip = [
                        ip[16], ip[17], ip[18], ip[19], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ];
                }
            } else if et == ETH_P_IPV6 {
                if let Some(ip) = p.bytes::<40>(l3) {
                    (*ev).ip_version = 6;
                    (*ev).src_ip = crate::bytes::sub::<40, 8, 16>(ip);
                    (*ev).dst_ip = crate::bytes::sub::<40, 24, 16>(ip);
                }
            }
        }
        let len = p.len();
        if len > 0 {
            let cap = if len > EVENT_CAPTURE {
                EVENT_CAPTURE
            } else {
                len
            };
            // Written as ((cap - 1) & 127) + 1 so the verifier sees a length in [1, 128].
            let n = ((cap as u32).wrapping_sub(1) & (EVENT_CAPTURE as u32 - 1)) + 1;
            if ctx.capture((&raw mut (*ev).data) as *mut c_void, n) == 0 {
                (*ev).cap_len = n as u8;
            }
        }
    }
    entry.submit(0);
}
