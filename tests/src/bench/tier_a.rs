//! Tier A: plain BPF_PROG_TEST_RUN with a large repeat on one pinned CPU.
//! portguard on typical frames against the no-op floor programs.
//!
//! The kernel reports whole ns per repeat (a 6 ns floor quantizes ratios to
//! steps of ~0.17), so the figures and ratios here come from the calling
//! thread's CPU time over the whole call divided by the repeat (sub-ns
//! resolution); the kernel's own figure is kept beside it as a cross-check.
use std::net::IpAddr;

use anyhow::Result;
use serde_json::{json, Value};

use super::{
    progs::{self, Instance, Prog, XDP_DROP, XDP_PASS},
    stats::Summary,
    Opts,
};

pub struct Case {
    pub name: &'static str,
    pub what: &'static str,
    pub frame: Vec<u8>,
    /// None: a floor program of that name; Some(action): portguard, expected action.
    pub floor: Option<&'static str>,
    /// Run through the tc programs (`noop_tc`, portguard's `--mode tc` one), not XDP.
    pub tc: bool,
    pub action: u32,
    /// Which floor it is compared with.
    pub vs: &'static str,
}

pub struct TierA {
    /// (case, ns per packet from thread CPU time, ratio to its floor).
    pub cases: Vec<(Case, Summary, Summary)>,
    /// Per case: the kernel's whole-ns figure and the wall-clock figure of
    /// the same calls.
    pub kernel: Vec<Summary>,
    pub wall: Vec<Summary>,
}

/// The cross-check: the median over rounds of (CPU-time figure - kernel
/// figure) of the same call. The kernel's is floor(true), so CPU time should
/// read 0-1 ns above it; allow 1.5 ns or 10% either way for the syscall's
/// fixed cost, interrupts accounted to the thread, and a preemption inside
/// the kernel's timed window (which its clock counts and the thread's CPU
/// clock does not).
fn agrees(cpu_minus_kernel: f64, kernel: f64) -> bool {
    let tol = 1.5f64.max(0.1 * kernel);
    cpu_minus_kernel >= -tol && cpu_minus_kernel <= tol + 1.0
}

impl TierA {
    pub fn ns(&self, name: &str) -> &Summary {
        &self.cases.iter().find(|c| c.0.name == name).unwrap().1
    }

    pub fn ratio(&self, name: &str) -> &Summary {
        &self.cases.iter().find(|c| c.0.name == name).unwrap().2
    }

    /// Per case, per round: CPU-time figure minus the kernel's.
    fn diffs(&self) -> Vec<Summary> {
        self.cases
            .iter()
            .zip(&self.kernel)
            .map(|((_, ns, _), k)| {
                Summary::of(
                    ns.samples
                        .iter()
                        .zip(&k.samples)
                        .map(|(c, k)| c - k)
                        .collect(),
                )
            })
            .collect()
    }

    /// Cases whose CPU-time figure disagrees with the kernel's (see [`agrees`]).
    pub fn disagreements(&self) -> Vec<String> {
        self.cases
            .iter()
            .zip(&self.kernel)
            .zip(self.diffs())
            .filter(|((_, k), d)| !agrees(d.median(), k.median()))
            .map(|(((c, ns, _), k), d)| {
                format!(
                    "{}: thread CPU time {:.2} ns/run vs kernel {:.0} ns/run (median difference per round {:.2} ns)",
                    c.name,
                    ns.median(),
                    k.median(),
                    d.median()
                )
            })
            .collect()
    }

    pub fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for ((((c, ns, r), k), w), d) in self
            .cases
            .iter()
            .zip(&self.kernel)
            .zip(&self.wall)
            .zip(self.diffs())
        {
            m.insert(
                c.name.into(),
                json!({
                    "what": c.what,
                    "ns_per_packet": ns.json(),
                    "kernel_ns_per_packet": k.json(),
                    "wall_ns_per_packet": w.json(),
                    "cpu_minus_kernel_ns": d.json(),
                    "cpu_agrees_with_kernel": agrees(d.median(), k.median()),
                    "floor": c.vs,
                    "ratio_to_floor": r.json(),
                }),
            );
        }
        Value::Object(m)
    }
}

fn cases() -> Vec<Case> {
    use progs::Family::*;
    let v6_bound = V6.bound(0);
    vec![
        Case {
            name: "noop_pass",
            what: "floor: XDP program returning XDP_PASS",
            frame: progs::udp_frame(IpAddr::V4(progs::V4_BOUND)),
            floor: Some("noop_pass"),
            action: XDP_PASS,
            vs: "noop_pass",
            tc: false,
        },
        Case {
            name: "noop_drop",
            what: "floor: XDP program returning XDP_DROP",
            frame: progs::udp_frame(IpAddr::V4(progs::V4_BOUND)),
            floor: Some("noop_drop"),
            action: XDP_DROP,
            vs: "noop_drop",
            tc: false,
        },
        Case {
            name: "legit_v4",
            what: "portguard, bound IPv4/UDP frame (passes)",
            frame: progs::udp_frame(IpAddr::V4(progs::V4_BOUND)),
            floor: None,
            action: XDP_PASS,
            vs: "noop_pass",
            tc: false,
        },
        Case {
            name: "spoof_v4",
            what: "portguard, IPv4/UDP from an unbound source (ipv4_spoof drop)",
            frame: progs::udp_frame(IpAddr::V4(progs::V4_SPOOF)),
            floor: None,
            action: XDP_DROP,
            vs: "noop_drop",
            tc: false,
        },
        Case {
            name: "arp",
            what: "portguard, ARP reply from the bound MAC/IPv4 (passes)",
            frame: progs::arp_reply(),
            floor: None,
            action: XDP_PASS,
            vs: "noop_pass",
            tc: false,
        },
        Case {
            name: "legit_v6",
            what: "portguard, bound IPv6/UDP frame (passes)",
            frame: progs::udp_frame(v6_bound),
            floor: None,
            action: XDP_PASS,
            vs: "noop_pass",
            tc: false,
        },
        Case {
            name: "spoof_v6",
            what: "portguard, IPv6/UDP from an unbound source (ipv6_spoof drop)",
            frame: progs::udp_frame(V6.spoof()),
            floor: None,
            action: XDP_DROP,
            vs: "noop_drop",
            tc: false,
        },
        Case {
            name: "noop_tc",
            what: "floor: tc program returning \"next\" (skb test run)",
            frame: progs::udp_frame(IpAddr::V4(progs::V4_BOUND)),
            floor: Some("noop_tc"),
            action: TC_ACT_UNSPEC,
            vs: "noop_tc",
            tc: true,
        },
        Case {
            name: "legit_v4_tc",
            what: "portguard --mode tc, bound IPv4/UDP frame (passes)",
            frame: progs::udp_frame(IpAddr::V4(progs::V4_BOUND)),
            floor: None,
            action: TC_ACT_UNSPEC,
            vs: "noop_tc",
            tc: true,
        },
        Case {
            name: "legit_v6_tc",
            what: "portguard --mode tc, bound IPv6/UDP frame (passes)",
            frame: progs::udp_frame(v6_bound),
            floor: None,
            action: TC_ACT_UNSPEC,
            vs: "noop_tc",
            tc: true,
        },
    ]
}

/// tc's "next" (`TC_ACT_UNSPEC`, -1) as the test run returns it.
const TC_ACT_UNSPEC: u32 = u32::MAX;

fn prog<'a>(inst: &'a mut Instance, c: &Case) -> Result<Prog<'a>> {
    Ok(match (c.tc, c.floor) {
        (false, Some(f)) => Prog::Xdp(inst.floor(f)?),
        (false, None) => Prog::Xdp(inst.portguard()?),
        (true, Some(_)) => Prog::Tc(inst.tc_floor()?),
        (true, None) => Prog::Tc(inst.portguard_tc()?),
    })
}

/// Runs inside a thread that is in the bench netns (ifindex 1 = its lo) and pinned.
pub fn run(o: &Opts) -> Result<TierA> {
    let mut inst = Instance::new("a")?;
    let b = progs::binding(vec![
        progs::net(IpAddr::V4(progs::V4_BOUND)),
        progs::net(progs::Family::V6.bound(0)),
    ])?;
    inst.pinned.bind(1, "lo", &b)?;
    let cases = cases();
    let mut ns: Vec<Summary> = cases.iter().map(|_| Summary::new()).collect();
    let mut kernel = ns.clone();
    let mut wall = ns.clone();

    // Check actions once, and warm up.
    for c in &cases {
        let t = progs::plain_precise(prog(&mut inst, c)?, 1, &c.frame, o.a_repeat / 4)?;
        progs::expect(c.name, t.action, c.action)?;
    }
    for round in 0..o.rounds {
        // Rotate the order each round so no case always runs first.
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let c = &cases[i];
            let t = progs::plain_precise(prog(&mut inst, c)?, 1, &c.frame, o.a_repeat)?;
            ns[i].push(t.cpu_ns);
            kernel[i].push(t.kernel_ns);
            wall[i].push(t.wall_ns);
        }
    }
    let vs: Vec<usize> = cases
        .iter()
        .map(|c| cases.iter().position(|x| x.name == c.vs).unwrap())
        .collect();
    let mut out = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let r = ns[i].ratio(&ns[vs[i]]);
        out.push((c, ns[i].clone(), r));
    }
    Ok(TierA {
        cases: out,
        kernel,
        wall,
    })
}
