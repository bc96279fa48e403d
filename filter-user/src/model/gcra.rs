//! Section 7 (storm control) with a deterministic clock.
use filter_common::Reason;

use super::StormClass;
use crate::binding::Binding;

/// A GCRA bucket ("virtual scheduling"): `pps` frames per second on average,
/// `burst` frames back to back. `pps == 0` disables it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// Emission interval, ns; 0 = disabled.
    pub interval_ns: u64,
    /// How far the theoretical arrival time may run ahead of now.
    pub tau_ns: u64,
    /// Theoretical arrival time of the next conforming frame.
    pub tat_ns: u64,
}

impl Gcra {
    pub fn new(pps: u32, burst: u32) -> Gcra {
        if pps == 0 {
            return Gcra {
                interval_ns: 0,
                tau_ns: 0,
                tat_ns: 0,
            };
        }
        let interval_ns = (1_000_000_000 / u64::from(pps)).max(1);
        let burst = u64::from(burst.max(1));
        Gcra {
            interval_ns,
            tau_ns: interval_ns * (burst - 1),
            tat_ns: 0,
        }
    }

    /// True when a frame arriving at `now_ns` conforms (and is admitted).
    pub fn conform(&mut self, now_ns: u64) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let base = self.tat_ns.max(now_ns);
        if base - now_ns > self.tau_ns {
            return false;
        }
        self.tat_ns = base + self.interval_ns;
        true
    }
}

/// The three storm buckets of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormBuckets {
    pub broadcast: Gcra,
    pub multicast: Gcra,
    pub arp: Gcra,
}

impl StormBuckets {
    pub fn new(b: &Binding) -> StormBuckets {
        StormBuckets {
            broadcast: Gcra::new(b.broadcast.pps, b.broadcast.burst),
            multicast: Gcra::new(b.multicast.pps, b.multicast.burst),
            arp: Gcra::new(b.arp.pps, b.arp.burst),
        }
    }

    /// Charges a frame that passed sections 1-6 to its bucket.
    pub fn admit(&mut self, class: StormClass, now_ns: u64) -> Reason {
        let (bucket, over) = match class {
            StormClass::Unicast => return Reason::Pass,
            StormClass::Broadcast => (&mut self.broadcast, Reason::BcastLimit),
            StormClass::Multicast => (&mut self.multicast, Reason::McastLimit),
            StormClass::ArpRequest => (&mut self.arp, Reason::ArpLimit),
        };
        if bucket.conform(now_ns) {
            Reason::Pass
        } else {
            over
        }
    }
}
