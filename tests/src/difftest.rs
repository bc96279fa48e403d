//! Differential test of the XDP program against the reference model
//! (`portguard::model`, written from docs/policy.md).
//!
//! For each random port state (a binding from [`crate::gen`], or no record
//! at all, or an attached-but-unbound record; the state changes every ~1000
//! frames) the state is written with the library (`Pinned::bind` etc.), then
//! every frame runs through the real program with BPF_PROG_TEST_RUN on
//! ifindex 1 (the loopback of the current network namespace; nothing is
//! attached to it). Each binding must read back as written. A second port
//! (a fake ifindex, never run) is rebound every few states, and frames
//! often use its addresses and those of the port's previous bindings:
//! entries of other ports and generations must not leak. The returned
//! action and the exact change of the port's counters (packets and bytes of
//! `passed` and of every `dropped` and `would_drop` reason, summed over
//! CPUs) must equal what the model says. The first mismatching frame is
//! also shrunk (shortened, bytes zeroed) while it keeps failing the same
//! way, to give a small reproducer.
//!
//! Storm control is off in every generated binding (see [`crate::gen`]):
//! its verdicts depend on the kernel clock. Frames shorter than 14 bytes
//! cannot be run: BPF_PROG_TEST_RUN refuses them (EINVAL), as no driver
//! hands such a frame to XDP; the model alone judges those (`malformed`),
//! and the report counts them in `model_only`.
//!
//! Each run uses its own pin directory `/sys/fs/bpf/pg-diff-<pid>-<n>`,
//! removed when the [`Harness`] is dropped (also on error or panic).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use filter_common::{PortStats, Reason, ATTACH_NATIVE, N_REASONS};
use portguard::{
    binding::Binding,
    model::{self, Decision, Outcome},
    pinned::{remove_pin_dir, Pinned},
    spec::PortSpec,
    testrun::run_frame,
};

use crate::gen::Gen;

/// Loopback: always present in a network namespace.
pub const IFINDEX: u32 = 1;
pub const IFNAME: &str = "lo";
/// A second, bound port that no frame is run on (no such interface needs
/// to exist): its addresses must not be allowed on ifindex 1.
pub const NEIGHBOUR: u32 = 0x7fff_0001;

/// What the port's record looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortState {
    Bound(Binding),
    /// No record for the ifindex at all (counted in slot 0).
    NoRecord,
    /// A record from `attach` with no binding (fail closed, own slot).
    AttachedUnbound,
}

impl PortState {
    pub fn binding(&self) -> Option<&Binding> {
        match self {
            PortState::Bound(b) => Some(b),
            _ => None,
        }
    }

    /// The state for a report: the port as JSON ([`PortSpec`]), or what the record is.
    pub fn describe(&self) -> String {
        match self {
            PortState::Bound(b) => PortSpec::from_binding(IFNAME, b).to_json().to_string(),
            PortState::NoRecord => "no record (unbound, no binding)".into(),
            PortState::AttachedUnbound => "attached, no binding".into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Frames generated.
    pub frames: u64,
    /// Frames where the program and the model disagree (action or counters),
    /// plus port states the library did not read back as written.
    pub mismatches: u64,
    /// The first one: frame hex, port state (binding as JSON), expected, actual.
    pub first_mismatch: Option<String>,
    /// Frames the kernel cannot run (shorter than 14 bytes): model only.
    pub model_only: u64,
    /// Port states used.
    pub states: u64,
    /// Frames by the model's reason (coverage).
    pub by_reason: BTreeMap<&'static str, u64>,
    /// Mismatching frames by the model's reason.
    pub mismatches_by_reason: BTreeMap<&'static str, u64>,
    pub elapsed: Duration,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "frames={} mismatches={} states={} model_only={} elapsed={:.2}s",
            self.frames,
            self.mismatches,
            self.states,
            self.model_only,
            self.elapsed.as_secs_f64()
        );
        let _ = write!(s, "\nby reason:");
        for (r, n) in &self.by_reason {
            let _ = write!(s, " {r}={n}");
        }
        if !self.mismatches_by_reason.is_empty() {
            let _ = write!(s, "\nmismatches by model reason:");
            for (r, n) in &self.mismatches_by_reason {
                let _ = write!(s, " {r}={n}");
            }
        }
        s
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// A private pin directory with the program loaded and ifindex 1's record
/// under our control. Dropping it removes the pin directory.
pub struct Harness {
    dir: PathBuf,
    /// Map access (bind, counters).
    maps: Pinned,
    /// Owns the loaded program. A second `Pinned` on the same pin directory
    /// (same pinned maps) so the program can be borrowed while `maps` is used.
    prog: Pinned,
    state: PortState,
    slot: u32,
    before: PortStats,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = remove_pin_dir(&self.dir);
    }
}

impl Harness {
    pub fn new() -> Result<Harness> {
        remove_stale_pin_dirs();
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/sys/fs/bpf/pg-diff-{}-{n}", std::process::id()));
        Harness::in_dir(&dir)
    }

    pub fn in_dir(dir: &Path) -> Result<Harness> {
        // Guard first, so a failure below still removes what was created.
        struct Guard<'a>(&'a Path, bool);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if self.1 {
                    let _ = remove_pin_dir(self.0);
                }
            }
        }
        let mut guard = Guard(dir, true);
        let maps = Pinned::open(dir).context("opening the pin directory")?;
        let mut prog = Pinned::open(dir).context("opening the pin directory again")?;
        prog.program().context("loading the XDP program")?;
        guard.1 = false;
        let mut h = Harness {
            dir: dir.to_path_buf(),
            maps,
            prog,
            state: PortState::NoRecord,
            slot: 0,
            before: PortStats::ZERO,
        };
        h.set_state(PortState::NoRecord)?;
        Ok(h)
    }

    pub fn state(&self) -> &PortState {
        &self.state
    }

    /// Writes `state` for ifindex 1 with the library and checks it reads back.
    /// Returns a description when the read-back differs (a mismatch).
    pub fn set_state(&mut self, state: PortState) -> Result<Option<String>> {
        let mut problem = None;
        match &state {
            PortState::Bound(b) => {
                self.maps.bind(IFINDEX, IFNAME, b).context("bind")?;
                let back = self.maps.port(IFINDEX)?.and_then(|p| p.binding);
                if back.as_ref() != Some(b) {
                    problem = Some(format!(
                        "binding read back differs:\nwritten: {}\nread:    {}",
                        state.describe(),
                        back.map(|b| PortState::Bound(b).describe())
                            .unwrap_or_else(|| "none".into())
                    ));
                }
            }
            PortState::NoRecord => {
                self.maps.unbind(IFINDEX).context("unbind")?;
                self.maps.mark_detached(IFINDEX).context("mark_detached")?;
                if self.maps.config(IFINDEX)?.is_some() {
                    problem = Some("a record is left after unbind + mark_detached".into());
                }
            }
            PortState::AttachedUnbound => {
                self.maps.unbind(IFINDEX).context("unbind")?;
                self.maps
                    .mark_attached(IFINDEX, IFNAME, ATTACH_NATIVE)
                    .context("mark_attached")?;
                if self.maps.port(IFINDEX)?.is_none_or(|p| p.binding.is_some()) {
                    problem = Some("no unbound record after unbind + mark_attached".into());
                }
            }
        }
        self.slot = self.maps.config(IFINDEX)?.map(|c| c.slot).unwrap_or(0);
        self.before = self.maps.slot_counters(self.slot)?;
        self.state = state;
        Ok(problem)
    }

    /// Runs one frame through the program: (action, change of the port's counters).
    pub fn run(&mut self, frame: &[u8]) -> Result<(u32, PortStats)> {
        let prog = self.prog.program()?;
        let action = run_frame(prog, IFINDEX, frame)
            .with_context(|| format!("test_run of a {}-byte frame", frame.len()))?;
        let after = self.maps.slot_counters(self.slot)?;
        let delta = sub_stats(&after, &self.before);
        self.before = after;
        Ok((action, delta))
    }
}

/// Removes `pg-diff-<pid>-*` pin directories of processes that died without
/// unwinding (SIGKILL, abort), so they do not pile up.
fn remove_stale_pin_dirs() {
    let Ok(dir) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("pg-diff-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        let dead = !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists();
        if dead {
            let _ = remove_pin_dir(&e.path());
        }
    }
}

/// `a - b`, field by field (counters only grow).
pub fn sub_stats(a: &PortStats, b: &PortStats) -> PortStats {
    let mut d = PortStats::ZERO;
    d.passed.packets = a.passed.packets.wrapping_sub(b.passed.packets);
    d.passed.bytes = a.passed.bytes.wrapping_sub(b.passed.bytes);
    for i in 0..N_REASONS {
        d.dropped[i].packets = a.dropped[i].packets.wrapping_sub(b.dropped[i].packets);
        d.dropped[i].bytes = a.dropped[i].bytes.wrapping_sub(b.dropped[i].bytes);
        d.would_drop[i].packets = a.would_drop[i]
            .packets
            .wrapping_sub(b.would_drop[i].packets);
        d.would_drop[i].bytes = a.would_drop[i].bytes.wrapping_sub(b.would_drop[i].bytes);
    }
    d.sampled_out = a.sampled_out.wrapping_sub(b.sampled_out);
    d.events_lost = a.events_lost.wrapping_sub(b.events_lost);
    d
}

/// The counters the policy defines (passed, dropped, would_drop); the
/// event-sampling counters are not part of the verdict.
pub fn same_verdict_counters(a: &PortStats, b: &PortStats) -> bool {
    a.passed == b.passed && a.dropped == b.dropped && a.would_drop == b.would_drop
}

/// Non-zero verdict counters, e.g. `passed=1/60 dropped.malformed=1/60`.
pub fn describe_counters(s: &PortStats) -> String {
    let mut out = Vec::new();
    if s.passed.packets != 0 || s.passed.bytes != 0 {
        out.push(format!("passed={}/{}B", s.passed.packets, s.passed.bytes));
    }
    for (kind, arr) in [("dropped", &s.dropped), ("would_drop", &s.would_drop)] {
        for (i, c) in arr.iter().enumerate() {
            if c.packets != 0 || c.bytes != 0 {
                let name = Reason::from_u8(i as u8).map(|r| r.name()).unwrap_or("?");
                out.push(format!("{kind}.{name}={}/{}B", c.packets, c.bytes));
            }
        }
    }
    if out.is_empty() {
        "(none)".into()
    } else {
        out.join(" ")
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Result<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("bad hex"))
        .collect()
}

/// What the model expects for `frame` on a port in `state`.
pub fn expect(state: &PortState, frame: &[u8]) -> (Decision, Outcome, PortStats) {
    let b = state.binding();
    let d = model::evaluate(b, frame);
    // Storm control is off in the differential run (all limits 0), so the
    // final reason is the sections 1-6 reason.
    let o = model::outcome(b, d.reason);
    (d, o, o.stats_delta(frame.len()))
}

/// One frame against kernel and model; `Some(description)` on a mismatch.
pub fn check_frame(h: &mut Harness, frame: &[u8], label: &str) -> Result<Option<String>> {
    let (d, want, want_stats) = expect(h.state(), frame);
    let (action, got_stats) = h.run(frame)?;
    if action == want.action && same_verdict_counters(&got_stats, &want_stats) {
        return Ok(None);
    }
    Ok(Some(format!(
        "frame ({} bytes, {label}): {}\nport: ifindex {IFINDEX}, {}\nmodel:  reason {} (class {:?}) -> action {}, counters {}\nkernel: action {}, counters {}",
        frame.len(),
        hex(frame),
        h.state().describe(),
        d.reason.name(),
        d.class,
        want.action,
        describe_counters(&want_stats),
        action,
        describe_counters(&got_stats),
    )))
}

/// How a frame fails: the model's reason, the program's action and which
/// verdict counters it bumped (packets only, so that shorter frames compare).
fn failure_kind(h: &mut Harness, frame: &[u8]) -> Result<Option<(Reason, u32, Vec<u64>)>> {
    if frame.len() < 14 {
        return Ok(None);
    }
    let (d, want, want_stats) = expect(h.state(), frame);
    let (action, got) = h.run(frame)?;
    if action == want.action && same_verdict_counters(&got, &want_stats) {
        return Ok(None);
    }
    let mut bumped = vec![got.passed.packets];
    bumped.extend(got.dropped.iter().map(|c| c.packets));
    bumped.extend(got.would_drop.iter().map(|c| c.packets));
    Ok(Some((d.reason, action, bumped)))
}

/// Greedy minimization of a mismatching frame: cut it short, then zero
/// bytes, as long as it still fails the same way.
pub fn shrink(h: &mut Harness, frame: &[u8]) -> Result<Vec<u8>> {
    let Some(kind) = failure_kind(h, frame)? else {
        return Ok(frame.to_vec());
    };
    let mut best = frame.to_vec();
    let mut len = best.len();
    while len > 14 {
        len -= 1;
        if failure_kind(h, &best[..len])?.as_ref() == Some(&kind) {
            best.truncate(len);
        }
    }
    for i in (0..best.len()).rev() {
        if best[i] == 0 {
            continue;
        }
        let mut t = best.clone();
        t[i] = 0;
        if failure_kind(h, &t)?.as_ref() == Some(&kind) {
            best = t;
        }
    }
    Ok(best)
}

/// Knobs of a differential run.
#[derive(Clone, Debug)]
pub struct Options {
    pub frames: u64,
    pub seed: u64,
    /// Average frames per port state (each state gets 50%-150% of it).
    pub frames_per_state: u64,
    /// Stop after this many mismatches (the first one is reported anyway).
    pub max_mismatches: u64,
}

impl Options {
    pub fn new(frames: u64, seed: u64) -> Options {
        Options {
            frames,
            seed,
            frames_per_state: 1000,
            max_mismatches: u64::MAX,
        }
    }
}

/// Runs `frames` random frames (seeded) through the program and the model.
pub fn run(frames: u64, seed: u64) -> Result<Report> {
    run_with(&Options::new(frames, seed))
}

pub fn run_with(opts: &Options) -> Result<Report> {
    let start = Instant::now();
    let mut h = Harness::new()?;
    let mut gen = Gen::new(opts.seed);
    let mut r = Report::default();
    let mismatch = |r: &mut Report, reason: Option<Reason>, what: String| {
        r.mismatches += 1;
        if let Some(reason) = reason {
            *r.mismatches_by_reason.entry(reason.name()).or_default() += 1;
        }
        if r.first_mismatch.is_none() {
            r.first_mismatch = Some(what);
        }
    };
    while r.frames < opts.frames && r.mismatches < opts.max_mismatches {
        // Rebind the neighbour now and then (a bind scans the address maps,
        // ~50 ms): its entries and ours live in the same maps.
        if r.states % 8 == 0 {
            let neighbour = gen.binding();
            h.maps.bind(NEIGHBOUR, "neighbour", &neighbour)?;
            gen.set_neighbours(vec![neighbour]);
        }
        let state = match gen.rng.weighted(&[90, 5, 5]) {
            0 => PortState::Bound(gen.binding()),
            1 => PortState::NoRecord,
            _ => PortState::AttachedUnbound,
        };
        r.states += 1;
        if let Some(p) = h.set_state(state)? {
            mismatch(&mut r, None, p);
        }
        let per = opts.frames_per_state.max(1);
        let n = per / 2 + gen.rng.below(per + 1);
        let n = n.min(opts.frames - r.frames);
        for _ in 0..n {
            let fr = gen.frame(h.state().binding());
            r.frames += 1;
            let want = model::evaluate(h.state().binding(), &fr.bytes).reason;
            *r.by_reason.entry(want.name()).or_default() += 1;
            if fr.bytes.len() < 14 {
                r.model_only += 1;
                continue;
            }
            let label = format!("#{} {}", r.frames, fr.label);
            if let Some(mut m) = check_frame(&mut h, &fr.bytes, &label)? {
                if r.first_mismatch.is_none() {
                    let small = shrink(&mut h, &fr.bytes)?;
                    if small != fr.bytes {
                        let _ = write!(m, "\nshrunk ({} bytes): {}", small.len(), hex(&small));
                    }
                }
                mismatch(&mut r, Some(want), m);
                if r.mismatches >= opts.max_mismatches {
                    break;
                }
            }
        }
    }
    r.elapsed = start.elapsed();
    Ok(r)
}
