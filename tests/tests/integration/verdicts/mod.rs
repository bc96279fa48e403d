//! BPF_PROG_TEST_RUN fixture tables: for every rule of docs/policy.md
//! sections 1-8 (focus: 2-6, including truncations), a frame, the expected
//! XDP action and the expected change of the port's counters.
//!
//! The program and maps are loaded into a fresh pin directory per test via
//! the library (`Pinned`), the port is ifindex 1 (lo, which every network
//! namespace has; test runs never attach anything to it). Every table runs
//! twice, on fresh rigs: through the XDP program and through the tc program
//! of `--mode tc` (its actions mapped onto XDP's), which must agree row for
//! row. The kernel refuses some frames as skb test-run input (EINVAL: some
//! truncated headers, and anything over about 3.7 KB); those rows run
//! through XDP only, each named on stderr. On veths, where tc is the default
//! mode, the netns suites send such frames for real.
//!
//! Frames shorter than 14 bytes cannot be tested here: the kernel rejects
//! BPF_PROG_TEST_RUN input below ETH_HLEN with EINVAL (see
//! `frames_below_14_bytes_are_rejected_by_the_kernel`).
//!
//! Layout: this file holds the rig, the bindings, the frame shorthands and
//! the `row!`/`rows!` table macros; one file per policy section holds its
//! tests (l2, ipv4, dhcp, arp, ipv6, fragments, nd, storm_monitor), each
//! table's rows built by a `pub(super) fn <test>_t()` so `reference_model`
//! can cross-check every row against `portguard::model`. A new table goes
//! into its section's file and into the list in reference_model.rs.
//!
//! Needs root. Run through `cargo xtask test`, or
//! `cargo test -p portguard-tests --test integration verdicts::`.
use std::net::{Ipv4Addr, Ipv6Addr};

use filter_common::{PortStats, Reason, ATTACH_NATIVE};
use portguard::{
    binding::{Binding, Limit, Mode},
    model,
    parse::{IpNet, Mac as PMac},
    pinned::Pinned,
    testrun::{run_frame, run_skb},
};
use portguard_tests::{
    difftest::{describe_counters, same_verdict_counters, sub_stats},
    frames::{self as f, Mac},
    netns::PinDir,
};

const IFINDEX: u32 = 1;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// Which program of the object a rig runs frames through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Xdp,
    /// `portguard_skb`, the tc program of `attach --mode tc`.
    Tc,
}

/// The port's MAC and a peer's.
const M: Mac = [0x02, 0, 0, 0, 0, 0x01];
const PEER: Mac = [0x02, 0, 0, 0, 0, 0x02];
const OTHER: Mac = [0x02, 0xde, 0xad, 0xbe, 0xef, 0x01];

fn own4() -> Ipv4Addr {
    f::v4("192.0.2.1")
}
fn peer4() -> Ipv4Addr {
    f::v4("192.0.2.2")
}
fn own6() -> Ipv6Addr {
    f::v6("2001:db8::1")
}
fn peer6() -> Ipv6Addr {
    f::v6("2001:db8::2")
}
/// Inside the bound 2001:db8:1::/64.
fn pfx6() -> Ipv6Addr {
    f::v6("2001:db8:1::abcd")
}
fn ll() -> Ipv6Addr {
    f::eui64_ll(M)
}
const UNSPEC6: Ipv6Addr = Ipv6Addr::UNSPECIFIED;

// ------------------------------------------------------------------ bindings

/// The binding used by most tables: MAC M; 192.0.2.1, 198.51.100.0/28,
/// 2001:db8::1, 2001:db8:1::/64; storm control off.
fn base() -> Binding {
    let ips = [
        "192.0.2.1",
        "198.51.100.0/28",
        "2001:db8::1",
        "2001:db8:1::/64",
    ]
    .iter()
    .map(|s| s.parse::<IpNet>().unwrap())
    .collect();
    let mut b = Binding::new(PMac(M), ips);
    let off = Limit { pps: 0, burst: 0 };
    b.broadcast = off;
    b.multicast = off;
    b.arp = off;
    b
}

fn with(f: impl FnOnce(&mut Binding)) -> Binding {
    let mut b = base();
    f(&mut b);
    b.normalize().unwrap()
}

// ------------------------------------------------------------------ fixtures

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Pass,
    Drop(Reason),
}
use Want::{Drop, Pass};

struct Fx {
    name: String,
    frame: Vec<u8>,
    want: Want,
}

fn fx(name: &str, frame: Vec<u8>, want: Want) -> Fx {
    Fx {
        name: name.to_string(),
        frame,
        want,
    }
}

/// A loaded program + maps in a private pin dir, port ifindex 1 bound to `b`.
struct Rig {
    p: Pinned,
    hook: Hook,
    binding: Option<Binding>,
    _dir: PinDir,
}

impl Rig {
    fn new(b: Option<Binding>) -> Rig {
        Rig::on(Hook::Xdp, b)
    }

    fn on(hook: Hook, b: Option<Binding>) -> Rig {
        let dir = PinDir::new();
        let mut p = Pinned::open(&dir.path).expect("Pinned::open");
        if let Some(b) = &b {
            p.bind(IFINDEX, "lo", b).expect("bind");
        }
        match hook {
            Hook::Xdp => drop(p.program().expect("load program")),
            Hook::Tc => drop(p.skb_program().expect("load tc program")),
        }
        Rig {
            p,
            hook,
            binding: b,
            _dir: dir,
        }
    }

    fn rebind(&mut self, b: Binding) {
        self.p.bind(IFINDEX, "lo", &b).expect("bind");
        self.binding = Some(b);
    }

    /// The action for `frame`, as XDP's (tc's "next" = pass, "shot" = drop).
    fn run(&mut self, frame: &[u8]) -> u32 {
        self.try_run(frame)
            .unwrap_or_else(|e| panic!("{:?} test run ({} bytes): {e:#}", self.hook, frame.len()))
    }

    fn try_run(&mut self, frame: &[u8]) -> anyhow::Result<u32> {
        Ok(match self.hook {
            Hook::Xdp => run_frame(self.p.program()?, IFINDEX, frame)?,
            Hook::Tc => match run_skb(self.p.skb_program()?, frame)? {
                TC_ACT_UNSPEC => XDP_PASS,
                TC_ACT_SHOT => XDP_DROP,
                other => 1000 + other,
            },
        })
    }

    fn counters(&self) -> PortStats {
        self.p.counters(IFINDEX).expect("counters")
    }

    /// Runs every fixture; returns one line per mismatch.
    fn table(&mut self, table: &[Fx]) -> Vec<String> {
        let monitor = self.binding.as_ref().map(|b| b.mode) == Some(Mode::Monitor);
        let mut problems = Vec::new();
        for t in table {
            let before = self.counters();
            let action = match self.try_run(&t.frame) {
                Ok(a) => a,
                Err(e) if self.hook == Hook::Tc && refused_as_skb(&e) => {
                    eprintln!(
                        "[Tc {}] not run: the kernel refuses this {}-byte frame as skb test input",
                        t.name,
                        t.frame.len()
                    );
                    continue;
                }
                Err(e) => panic!("{:?} test run of [{}]: {e:#}", self.hook, t.name),
            };
            let after = self.counters();
            let delta = sub_stats(&after, &before);
            let expect = expected_delta(t.want, monitor, t.frame.len());
            let want_action = match (t.want, monitor) {
                (Pass, _) | (Drop(_), true) => XDP_PASS,
                (Drop(_), false) => XDP_DROP,
            };
            let mut bad = Vec::new();
            if action != want_action {
                bad.push(format!("action {action} (want {want_action})"));
            }
            if !same_verdict_counters(&delta, &expect) {
                bad.push(format!("counters moved {}", describe_counters(&delta)));
            }
            if !bad.is_empty() {
                problems.push(format!(
                    "[{:?} {}] want {:?}: {} | frame {}",
                    self.hook,
                    t.name,
                    t.want,
                    bad.join(", "),
                    hex(&t.frame)
                ));
            }
        }
        problems
    }
}

/// EINVAL from an skb test run: the kernel's own input checks, not the program.
fn refused_as_skb(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(22))
    }) || format!("{e:#}").contains("os error 22")
}

fn expected_delta(want: Want, monitor: bool, len: usize) -> PortStats {
    let mut s = PortStats::ZERO;
    let b = len as u64;
    match want {
        Pass => {
            s.passed.packets = 1;
            s.passed.bytes = b;
        }
        Drop(r) if monitor => {
            s.would_drop[r as usize].packets = 1;
            s.would_drop[r as usize].bytes = b;
            s.passed.packets = 1;
            s.passed.bytes = b;
        }
        Drop(r) => {
            s.dropped[r as usize].packets = 1;
            s.dropped[r as usize].bytes = b;
        }
    }
    s
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn report(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} fixture(s) failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A binding and the fixtures to run under it; a test's phases run in
/// order on one rig (rebinding between phases).
type Phase = (Binding, Vec<Fx>);

fn check(phases: Vec<Phase>) {
    let mut problems = Vec::new();
    for hook in [Hook::Xdp, Hook::Tc] {
        let mut rig: Option<Rig> = None;
        for (b, table) in &phases {
            match &mut rig {
                None => rig = Some(Rig::on(hook, Some(b.clone()))),
                Some(r) => r.rebind(b.clone()),
            }
            problems.extend(rig.as_mut().unwrap().table(table));
        }
    }
    report(problems);
}

// ------------------------------------------------------------------ frame shorthands

fn e4(pkt: &[u8]) -> Vec<u8> {
    f::eth(PEER, M, f::ETH_P_IP, pkt)
}
fn e6(pkt: &[u8]) -> Vec<u8> {
    f::eth(PEER, M, f::ETH_P_IPV6, pkt)
}
fn earp(body: &[u8]) -> Vec<u8> {
    f::eth(f::BROADCAST, M, f::ETH_P_ARP, body)
}
fn u4(src: Ipv4Addr) -> Vec<u8> {
    f::udp4(src, peer4(), 40000, 9, b"payload")
}
fn u6(src: Ipv6Addr) -> Vec<u8> {
    f::udp6(src, peer6(), 40000, 9, b"payload")
}
fn arp_req(sha: Mac, spa: Ipv4Addr) -> Vec<u8> {
    f::arp(f::ARP_REQUEST, sha, spa, f::ZERO_MAC, peer4())
}
/// IPv6 packet with the given upper-layer bytes after `ext` headers.
fn v6raw(src: Ipv6Addr, first_nh: u8, hl: u8, body: &[u8]) -> Vec<u8> {
    f::ipv6(src, peer6(), first_nh, hl, body)
}
fn ns(src: Ipv6Addr, target: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
    f::nd_ns_opts(src, f::solicited_node(target), target, opts)
}
fn na(src: Ipv6Addr, target: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
    f::nd_na_opts(
        src,
        f::ALL_NODES,
        target,
        f::NA_SOLICITED | f::NA_OVERRIDE,
        opts,
    )
}
fn slla(m: Mac) -> Vec<u8> {
    f::nd_opt_lla(f::ND_OPT_SLLA, m)
}
fn tlla(m: Mac) -> Vec<u8> {
    f::nd_opt_lla(f::ND_OPT_TLLA, m)
}
/// Nonce option (type 14), one unit.
fn nonce() -> Vec<u8> {
    f::nd_opt_raw(14, 1, &[1, 2, 3, 4, 5, 6])
}
/// Overwrites the ICMPv6 code and fixes the checksum of a plain (no ext hdr) ICMPv6 packet.
fn with_code(mut pkt: Vec<u8>, code: u8) -> Vec<u8> {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).unwrap());
    pkt[41] = code;
    pkt[42] = 0;
    pkt[43] = 0;
    let c = f::l4_checksum6(src, dst, f::IPPROTO_ICMPV6, &pkt[40..]);
    pkt[42..44].copy_from_slice(&c.to_be_bytes());
    pkt
}
fn hop(mut pkt: Vec<u8>, hl: u8) -> Vec<u8> {
    f::set_hop_limit(&mut pkt, hl);
    pkt
}
/// Sets the IPv6 payload length field.
fn plen(mut pkt: Vec<u8>, len: u16) -> Vec<u8> {
    pkt[4..6].copy_from_slice(&len.to_be_bytes());
    pkt
}

// ------------------------------------------------------------------ table rows

/// One fixture, one line: `row!(name, frame, want)`.
macro_rules! row {
    ($name:expr, $frame:expr, $want:expr $(,)?) => {
        fx($name, $frame, $want)
    };
}

/// A table of `row!`s. Braces keep rustfmt away, so every row stays on one
/// line however long its frame expression is.
macro_rules! rows {
    ($($row:expr),* $(,)?) => {
        vec![$($row),*]
    };
}

mod arp;
mod dhcp;
mod fragments;
mod ipv4;
mod ipv6;
mod l2;
mod nd;
mod reference_model;
mod storm_monitor;
