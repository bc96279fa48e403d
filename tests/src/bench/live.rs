//! Tier B: BPF_PROG_TEST_RUN with `xdp_live_frames`. Frames "arrive" on a
//! veth of a private netns; what the program passes is turned into skbs and
//! goes up the real stack inside the timed loop, so nftables' cost is
//! measured on the same clock as portguard's.
//!
//! Devices (all in the netns `pgbench-<pid>-b`):
//! * `pgb0` (peer `pgb1`): bound port for portguard (B1) and the device of the
//!   netdev-family ingress chain (B3);
//! * `pgb1`: no nftables hook: the floors B0/B2 and portguard's pass path B5;
//! * `pgb2` (peer `pgb3`): a port of bridge `pgbbr`, filtered by the
//!   bridge-family prerouting chain (B4).
//!
//! Every frame is addressed to a MAC nobody has, so what reaches IP is
//! PACKET_OTHERHOST and dropped at the top of ip_rcv/ipv6_rcv.
use std::{net::IpAddr, time::Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::{
    nft,
    progs::{self, Family, Instance},
    stats::Summary,
    sys::{self, Netns},
    Opts,
};

pub const CASES: [(&str, &str); 6] = [
    ("B0", "no-op XDP_DROP"),
    ("B1", "portguard dropping spoofed frames"),
    ("B2", "no-op XDP_PASS into the stack"),
    (
        "B3",
        "no-op XDP_PASS + nftables netdev ingress set lookup, drop",
    ),
    (
        "B4",
        "no-op XDP_PASS + bridge + nftables bridge prerouting set lookup, drop",
    ),
    ("B5", "portguard passing bound frames into the stack"),
];

pub struct Config {
    pub family: Family,
    pub bindings: u32,
    pub install_portguard_s: f64,
    pub install_nft_netdev_s: f64,
    pub install_nft_bridge_s: f64,
    pub ns: Vec<Summary>,
    pub counters_ok: Value,
}

impl Config {
    pub fn key(&self) -> String {
        format!("{}_{}", self.family.name(), self.bindings)
    }

    pub fn get(&self, case: &str) -> &Summary {
        &self.ns[CASES.iter().position(|c| c.0 == case).unwrap()]
    }

    pub fn ratio(&self, a: &str, b: &str) -> Summary {
        self.get(a).ratio(self.get(b))
    }

    pub fn json(&self) -> Value {
        let mut cases = serde_json::Map::new();
        for (i, (k, what)) in CASES.iter().enumerate() {
            cases.insert(
                k.to_string(),
                json!({"what": what, "ns_per_frame": self.ns[i].json()}),
            );
        }
        json!({
            "family": self.family.name(),
            "bindings": self.bindings,
            "install_seconds": {
                "portguard_bind": super::stats::round(self.install_portguard_s, 4),
                "nft_netdev": super::stats::round(self.install_nft_netdev_s, 4),
                "nft_bridge": super::stats::round(self.install_nft_bridge_s, 4),
            },
            "cases": cases,
            "ratios": {
                "B1_over_B0": self.ratio("B1", "B0").json(),
                "B3_over_B1": self.ratio("B3", "B1").json(),
                "B4_over_B1": self.ratio("B4", "B1").json(),
                "B3_over_B2": self.ratio("B3", "B2").json(),
                "B5_over_B2": self.ratio("B5", "B2").json(),
            },
            "verified_drops": self.counters_ok,
        })
    }
}

/// Creates the devices of Tier B in `ns`.
pub fn setup(ns: &Netns) -> Result<()> {
    let n = ns.name.as_str();
    // No IPv6 on these devices: no ND/MLD chatter counted with the frames.
    sys::must_in(
        n,
        &[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )?;
    sys::ip(
        n,
        &[
            "link", "add", "pgb0", "type", "veth", "peer", "name", "pgb1",
        ],
    )?;
    sys::ip(
        n,
        &[
            "link", "add", "pgb2", "type", "veth", "peer", "name", "pgb3",
        ],
    )?;
    sys::ip(n, &["link", "add", "pgbbr", "type", "bridge"])?;
    sys::ip(n, &["link", "set", "pgb2", "master", "pgbbr"])?;
    for d in ["pgb0", "pgb1", "pgb2", "pgb3", "pgbbr"] {
        sys::ip(n, &["link", "set", d, "up"])?;
    }
    Ok(())
}

/// The addresses of a binding of size `n`: the documentation address for a
/// single IPv4 binding, else `family.bound(0..n)`.
pub fn addrs(family: Family, n: u32) -> Vec<IpAddr> {
    if n == 1 && family == Family::V4 {
        return vec![IpAddr::V4(progs::V4_BOUND)];
    }
    (0..n).map(|i| family.bound(i)).collect()
}

/// Runs inside a thread that is in `ns` and pinned.
pub fn run(o: &Opts, ns: &str, family: Family, n: u32) -> Result<Config> {
    let if0 = ifindex("pgb0")?;
    let if1 = ifindex("pgb1")?;
    let if2 = ifindex("pgb2")?;
    let addrs = addrs(family, n);
    let legit_src = addrs[0];
    let mut inst = Instance::new(&format!("b-{}-{n}", family.name()))?;
    let b = progs::binding(addrs.iter().map(|a| progs::net(*a)).collect())?;
    let t = Instant::now();
    inst.pinned.bind(if0, "pgb0", &b)?;
    let install_portguard_s = t.elapsed().as_secs_f64();
    drop(b);
    inst.pinned
        .bind(if1, "pgb1", &progs::binding(vec![progs::net(legit_src)])?)?;

    let install_nft_netdev_s = nft::load(ns, "nd", &nft::netdev_ruleset("pgb0", family, &addrs))?;
    let install_nft_bridge_s = nft::load(ns, "br", &nft::bridge_ruleset("pgb2", family, &addrs))?;
    eprintln!(
        "  B {}_{n}: installed in {install_portguard_s:.2} s (portguard), {install_nft_netdev_s:.2} s + \
         {install_nft_bridge_s:.2} s (nft netdev + bridge)",
        family.name()
    );
    drop(addrs);
    let r = measure(o, ns, &mut inst, family, legit_src, [if0, if1, if2], n);
    nft::delete(ns, "netdev", nft::NETDEV_TABLE);
    nft::delete(ns, "bridge", nft::BRIDGE_TABLE);
    let (ns_, counters_ok) = r?;
    Ok(Config {
        family,
        bindings: n,
        install_portguard_s,
        install_nft_netdev_s,
        install_nft_bridge_s,
        ns: ns_,
        counters_ok,
    })
}

fn measure(
    o: &Opts,
    ns: &str,
    inst: &mut Instance,
    family: Family,
    legit_src: IpAddr,
    [if0, if1, if2]: [u32; 3],
    n: u32,
) -> Result<(Vec<Summary>, Value)> {
    let spoof = progs::udp_frame(family.spoof());
    let legit = progs::udp_frame(legit_src);
    let one = |inst: &mut Instance, case: usize, frames: u32| -> Result<f64> {
        match case {
            0 => progs::live(inst.floor("noop_drop")?, if1, &spoof, frames),
            1 => progs::live(inst.portguard()?, if0, &spoof, frames),
            2 => progs::live(inst.floor("noop_pass")?, if1, &spoof, frames),
            3 => progs::live(inst.floor("noop_pass")?, if0, &spoof, frames),
            4 => progs::live(inst.floor("noop_pass")?, if2, &spoof, frames),
            _ => progs::live(inst.portguard()?, if1, &legit, frames),
        }
    };
    // Warm-up run of each case, verifying that the frames went where intended.
    let w = o.b_frames / 8;
    let pg_drop0 = total_dropped(inst, if0)?;
    let pg_pass0 = inst.pinned.counters(if1)?.passed.packets;
    // Listing anything from nft fetches every set element into its cache:
    // minutes with a 1M-element set. Check the nft counters on small sets only
    // (the rules are the same at every size).
    let check_nft = n <= 1000;
    let nft_counter = |family: &str, table: &str, chain: &str| -> Result<u64> {
        if check_nft {
            nft::counter(ns, family, table, chain)
        } else {
            Ok(0)
        }
    };
    let nd0 = nft_counter("netdev", nft::NETDEV_TABLE, "ingress")?;
    let br0 = nft_counter("bridge", nft::BRIDGE_TABLE, "pre")?;
    for c in 0..CASES.len() {
        one(inst, c, w)?;
    }
    let pg_drop = total_dropped(inst, if0)? - pg_drop0;
    let pg_pass = inst.pinned.counters(if1)?.passed.packets - pg_pass0;
    let nd = nft_counter("netdev", nft::NETDEV_TABLE, "ingress")? - nd0;
    let br = nft_counter("bridge", nft::BRIDGE_TABLE, "pre")? - br0;
    let verified = json!({
        "frames_per_case": w,
        "portguard_dropped_B1": pg_drop,
        "portguard_passed_B5": pg_pass,
        "nft_netdev_dropped_B3": if check_nft { json!(nd) } else { json!("not checked (nft list of a large set takes minutes)") },
        "nft_bridge_dropped_B4": if check_nft { json!(br) } else { json!("not checked") },
    });
    let mut checks = vec![
        ("portguard drops (B1)", pg_drop),
        ("portguard passes (B5)", pg_pass),
    ];
    if check_nft {
        checks.push(("nft netdev drops (B3)", nd));
        checks.push(("nft bridge drops (B4)", br));
    }
    for (what, got) in checks {
        // Exact, give or take a few frames of the netns' own background traffic.
        if got < w as u64 || got > w as u64 + w as u64 / 100 {
            bail!(
                "Tier B {}_{n}: {what}: counted {got} of {w} frames: the frames did not take the intended path",
                family.name()
            );
        }
    }
    let mut out = vec![Summary::new(); CASES.len()];
    for round in 0..o.rounds_b {
        for k in 0..CASES.len() {
            let c = (k + round) % CASES.len();
            out[c].push(one(inst, c, o.b_frames)?);
        }
    }
    Ok((out, verified))
}

fn total_dropped(inst: &Instance, ifindex: u32) -> Result<u64> {
    let s = inst.pinned.counters(ifindex)?;
    Ok(s.dropped.iter().map(|c| c.packets).sum())
}

fn ifindex(name: &str) -> Result<u32> {
    Ok(portguard::iface::index(name)?)
}
