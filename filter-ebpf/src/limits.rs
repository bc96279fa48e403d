//! Storm control: per-port GCRA token buckets for broadcast, multicast and
//! ARP requests, and the drop-event sampler. Bucket state is shared by all
//! CPUs and advanced with compare-and-exchange, so the configured rate holds
//! whichever CPU a port's frames land on, with no lock.
use core::intrinsics::{atomic_cxchg, AtomicOrdering};

use aya_ebpf::{
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    Global,
};
use filter_common::{PortConfig, RateCfg, Reason};

use crate::{maps::RATE, policy::Class};

#[inline(always)]
pub fn check(port: &PortConfig, class: Class) -> Reason {
    let (cfg, reason) = match class {
        Class::Broadcast => (&port.bcast, Reason::BcastLimit),
        Class::Multicast => (&port.mcast, Reason::McastLimit),
        Class::ArpRequest => (&port.arp, Reason::ArpLimit),
        Class::Unicast => return Reason::Pass,
    };
    if cfg.interval_ns == 0 {
        return Reason::Pass;
    }
    let Some(state) = RATE.get_ptr_mut(port.slot) else {
        return Reason::Pass;
    };
    // SAFETY: `state` points into an array map value that lives as long as the map.
    let tat = unsafe {
        match class {
            Class::Broadcast => &raw mut (*state).bcast_tat,
            Class::Multicast => &raw mut (*state).mcast_tat,
            _ => &raw mut (*state).arp_tat,
        }
    };
    if conform(tat, cfg) {
        Reason::Pass
    } else {
        reason
    }
}

/// Nanoseconds per kernel tick (jiffy), set by the loader from the resolution
/// of CLOCK_MONOTONIC_COARSE. Read-only data: the verifier folds it.
#[no_mangle]
static TICK_NS: Global<u64> = Global::new(0);

/// The buckets' clock, in ns: jiffies times the tick length. The verifier
/// inlines `bpf_jiffies64` into one load, where a clock helper is a call
/// (~20 ns with return-thunk mitigations). One tick of resolution, as the
/// coarse clock has: the GCRA's long-run rate is exact either way, a tick only
/// lets at most tick/interval extra frames into one tick.
#[inline(always)]
fn now_ns() -> u64 {
    let tick = TICK_NS.load();
    if tick == 0 {
        // Loaded without the loader's value (not portguard's loader): same resolution, slower.
        // SAFETY: helper without arguments.
        return unsafe { bpf_ktime_get_coarse_ns() };
    }
    // SAFETY: helper without arguments.
    unsafe { bpf_jiffies64() }.wrapping_mul(tick)
}

/// One GCRA step on `tat` (theoretical arrival time, ns). True when the frame conforms.
#[inline(always)]
pub fn conform(tat: *mut u64, cfg: &RateCfg) -> bool {
    let ptr = tat;
    let now = now_ns();
    let mut tries = 0;
    while tries < 4 {
        // A plain aligned 64-bit load (BPF has no atomic-load instruction before v4);
        // a stale value only makes the cmpxchg below fail and retry.
        // SAFETY: `ptr` is a valid, aligned u64 in a map value.
        let cur = unsafe { core::ptr::read_volatile(ptr) };
        let base = if cur > now { cur } else { now };
        if base - now > cfg.tau_ns {
            return false;
        }
        // The BPF target has no stable compare_exchange; the intrinsic lowers to BPF_CMPXCHG.
        // SAFETY: `ptr` is the valid, aligned u64 behind `tat`.
        let (_, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                ptr,
                cur,
                base + cfg.interval_ns,
            )
        };
        if swapped {
            return true;
        }
        tries += 1;
    }
    // Lost the race four times in a row: admit rather than punish a legitimate frame.
    true
}
