//! Wall-clock time of kernel timestamps: the data path stamps events with
//! CLOCK_MONOTONIC (`bpf_ktime_get_ns`); users read RFC 3339 UTC.
use chrono::{DateTime, SecondsFormat, Utc};
use rustix::time::{clock_gettime, ClockId};

/// Converts CLOCK_MONOTONIC nanoseconds to wall-clock (CLOCK_REALTIME) ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    /// realtime - monotonic, in nanoseconds.
    pub offset_ns: i128,
}

fn clock_ns(clock: ClockId) -> i128 {
    let ts = clock_gettime(clock);
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl ClockOffset {
    /// Measures the offset now: the realtime read bracketed by the closest
    /// pair of monotonic reads out of a few tries.
    pub fn measure() -> ClockOffset {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..5 {
            let m1 = clock_ns(ClockId::Monotonic);
            let r = clock_ns(ClockId::Realtime);
            let m2 = clock_ns(ClockId::Monotonic);
            let gap = m2 - m1;
            let off = r - (m1 + gap / 2);
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, off));
            }
        }
        ClockOffset {
            offset_ns: best.map(|b| b.1).unwrap_or(0),
        }
    }

    /// Wall-clock nanoseconds since the Unix epoch (clamped at 0).
    pub fn wall_ns(&self, mono_ns: u64) -> u64 {
        let w = mono_ns as i128 + self.offset_ns;
        w.clamp(0, u64::MAX as i128) as u64
    }
}

/// RFC 3339 UTC with nanoseconds, e.g. `2024-05-01T12:00:00.123456789Z`.
pub fn rfc3339(wall_ns: u64) -> String {
    let secs = (wall_ns / 1_000_000_000) as i64;
    let nanos = (wall_ns % 1_000_000_000) as u32;
    match DateTime::<Utc>::from_timestamp(secs, nanos) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Nanos, true),
        None => format!("{secs}.{nanos:09}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_sane() {
        let c = ClockOffset::measure();
        let mono = clock_ns(ClockId::Monotonic) as u64;
        let wall = c.wall_ns(mono) as i128;
        let real = clock_ns(ClockId::Realtime);
        assert!((wall - real).abs() < 50_000_000, "{wall} vs {real}");
    }
}
