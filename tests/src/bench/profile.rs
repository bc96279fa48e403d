//! Where portguard's per-packet time goes, by difference between variants
//! that stop at successive stages of the program (plain test_run, warm,
//! interleaved rounds like Tier A). Nothing here changes the program: the
//! variants are frames and port records.
//!
//! | variant | path through the program |
//! |---|---|
//! | no_record | PORT_INDEX miss -> PORTS (hash) miss -> count in slot 0 -> drop |
//! | mac_spoof_nosample | PORT_INDEX hit -> record -> source MAC check fails -> count -> drop |
//! | mac_spoof | the same + drop-event sampling (RATE lookup, jiffies, GCRA) |
//! | ethertype_pass | record -> MAC ok -> allowed extra EtherType -> count -> pass |
//! | legit_v4 | record -> MAC ok -> IPv4 header checks -> inline address hit -> count -> pass |
//! | spoof_v4_nosample | ... inline address miss -> count -> drop |
//! | spoof_v4 | the same + drop-event sampling |
//! | legit_v4_map | legit_v4 on a port with 5 IPv4 addresses: V4_ADDRS (hash) hit |
use std::process::Command;

use anyhow::Result;
use filter_common::RateCfg;
use serde_json::{json, Value};

use super::{
    progs::{self, Instance, Prog},
    stats::Summary,
    Opts,
};
use crate::frames;

pub struct Profile {
    pub variants: Vec<(&'static str, &'static str, Summary)>,
    pub floor: Summary,
    pub prog: Value,
}

impl Profile {
    pub fn get(&self, k: &str) -> &Summary {
        &self.variants.iter().find(|v| v.0 == k).unwrap().2
    }

    /// Stage costs by difference of medians, ns.
    pub fn stages(&self) -> Vec<(&'static str, f64)> {
        let m = |k: &str| self.get(k).median();
        let f = self.floor.median();
        vec![
            (
                "no record: PORT_INDEX miss + PORTS hash miss + slot-0 counters + drop, over the floor",
                m("no_record") - f,
            ),
            (
                "PORT_INDEX hit + record + MAC check + counters + drop, over the floor",
                m("mac_spoof_nosample") - f,
            ),
            (
                "drop-event sampling (RATE lookup, jiffies, GCRA)",
                m("mac_spoof") - m("mac_spoof_nosample"),
            ),
            (
                "IPv4 header checks + inline address check (vs an allowed EtherType)",
                m("legit_v4") - m("ethertype_pass"),
            ),
            ("whole legit IPv4 path, over the floor", m("legit_v4") - f),
            (
                "spoofed IPv4: miss + drop accounting, vs legit (no sampling)",
                m("spoof_v4_nosample") - m("legit_v4"),
            ),
            (
                "spoofed IPv4: drop-event sampling",
                m("spoof_v4") - m("spoof_v4_nosample"),
            ),
            (
                "V4_ADDRS hash lookup instead of the inline check (5 addresses), warm",
                m("legit_v4_map") - m("legit_v4_paired"),
            ),
        ]
    }

    pub fn json(&self) -> Value {
        let mut v = serde_json::Map::new();
        for (k, what, s) in &self.variants {
            v.insert(
                k.to_string(),
                json!({"what": what, "ns_per_packet": s.json()}),
            );
        }
        json!({
            "floor_noop_pass_ns": self.floor.json(),
            "variants": v,
            "stages_ns": self.stages().iter().map(|(k, x)| json!({"stage": k, "ns": super::stats::round(*x, 1)})).collect::<Vec<_>>(),
            "program": self.prog,
        })
    }
}

/// Sets or clears drop-event sampling in the record of `ifindex`.
fn set_sampling(inst: &mut Instance, ifindex: u32, on: bool) -> Result<()> {
    let found = inst.pinned.edit_record(ifindex, |c| {
        c.events = if on {
            portguard::binding::DEFAULT_EVENTS.cfg()
        } else {
            RateCfg::DISABLED
        };
    })?;
    anyhow::ensure!(found, "no record for ifindex {ifindex}");
    Ok(())
}

/// Instruction counts of the loaded program, from bpftool (if installed).
fn prog_info(inst: &mut Instance) -> Value {
    let id = match inst.portguard().and_then(|p| Ok(p.info()?.id())) {
        Ok(id) => id,
        Err(_) => return Value::Null,
    };
    let count = |what: &str| -> Option<usize> {
        let o = Command::new("bpftool")
            .args(["prog", "dump", what, "id", &id.to_string()])
            .output()
            .ok()?;
        if !o.status.success() {
            return None;
        }
        let s = String::from_utf8_lossy(&o.stdout);
        Some(match what {
            // "  12: (bf) r6 = r1" lines
            "xlated" => s
                .lines()
                .filter(|l| {
                    l.trim_start()
                        .split(':')
                        .next()
                        .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
                })
                .count(),
            _ => s
                .lines()
                .filter(|l| l.starts_with("   ") || l.contains(':'))
                .count(),
        })
    };
    // PGBENCH_DUMP=DIR keeps the translated and JIT-ed code for reading.
    if let Some(dir) = std::env::var_os("PGBENCH_DUMP") {
        for what in ["xlated", "jited"] {
            if let Ok(o) = Command::new("bpftool")
                .args(["prog", "dump", what, "id", &id.to_string()])
                .output()
            {
                let _ = std::fs::write(
                    std::path::Path::new(&dir).join(format!("portguard.{what}")),
                    o.stdout,
                );
            }
        }
    }
    let o = Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output();
    let show: Value = o
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(Value::Null);
    json!({
        "xlated_insns": count("xlated"),
        "bytes_xlated": show.get("bytes_xlated"),
        "bytes_jited": show.get("bytes_jited"),
        "verified_insns": show.get("verified_insns"),
    })
}

/// Runs in the Tier A netns (ifindex 1 = lo bound; `dummy` has no record at first).
pub fn run(o: &Opts, dummy: u32) -> Result<Profile> {
    let mut inst = Instance::new("p")?;
    let mut b = progs::binding(vec![progs::net(std::net::IpAddr::V4(progs::V4_BOUND))])?;
    b.ethertypes = vec![frames::ETH_P_LLDP];
    inst.pinned.bind(1, "lo", &b)?;
    let legit = progs::udp_frame(std::net::IpAddr::V4(progs::V4_BOUND));
    let spoof = progs::udp_frame(std::net::IpAddr::V4(progs::V4_SPOOF));
    let mut mac_spoof = legit.clone();
    mac_spoof[6..12].copy_from_slice(&[0x02, 0, 0x5e, 0x10, 0, 0x77]);
    let lldp = frames::pad_to(
        frames::eth(
            progs::OTHER_MAC,
            progs::VM_MAC,
            frames::ETH_P_LLDP,
            &[0u8; 32],
        ),
        60,
    );
    // (name, what, ifindex, frame, sampling on, expected action)
    type Variant = (&'static str, &'static str, u32, Vec<u8>, bool, u32);
    let variants: Vec<Variant> = vec![
        (
            "no_record",
            "frame on an interface with no port record",
            dummy,
            legit.clone(),
            true,
            progs::XDP_DROP,
        ),
        (
            "mac_spoof_nosample",
            "wrong source MAC, event sampling off",
            1,
            mac_spoof.clone(),
            false,
            progs::XDP_DROP,
        ),
        (
            "mac_spoof",
            "wrong source MAC (default event sampling)",
            1,
            mac_spoof,
            true,
            progs::XDP_DROP,
        ),
        (
            "ethertype_pass",
            "allowed extra EtherType (LLDP), no L3 check",
            1,
            lldp,
            true,
            progs::XDP_PASS,
        ),
        (
            "legit_v4",
            "bound IPv4/UDP",
            1,
            legit,
            true,
            progs::XDP_PASS,
        ),
        (
            "spoof_v4_nosample",
            "unbound IPv4 source, event sampling off",
            1,
            spoof.clone(),
            false,
            progs::XDP_DROP,
        ),
        (
            "spoof_v4",
            "unbound IPv4 source (default event sampling)",
            1,
            spoof,
            true,
            progs::XDP_DROP,
        ),
    ];
    let mut out: Vec<Summary> = vec![Summary::new(); variants.len()];
    let mut floor = Summary::new();
    let mut sampling = true;
    let mut set = |inst: &mut Instance, on: bool| -> Result<()> {
        if sampling != on {
            set_sampling(inst, 1, on)?;
            sampling = on;
        }
        Ok(())
    };
    for v in &variants {
        set(&mut inst, v.4)?;
        let (ret, _) = progs::plain(inst.portguard()?, v.2, &v.3, o.a_repeat / 4)?;
        progs::expect(v.0, ret, v.5)?;
    }
    let n = variants.len() + 1;
    for round in 0..o.rounds {
        for k in 0..n {
            let i = (k + round) % n;
            if i == variants.len() {
                floor.push(
                    progs::plain_precise(
                        Prog::Xdp(inst.floor("noop_pass")?),
                        1,
                        &variants[4].3,
                        o.a_repeat,
                    )?
                    .cpu_ns,
                );
                continue;
            }
            let v = &variants[i];
            set(&mut inst, v.4)?;
            out[i].push(
                progs::plain_precise(Prog::Xdp(inst.portguard()?), v.2, &v.3, o.a_repeat)?.cpu_ns,
            );
        }
    }
    // The same legit frame on a port with one address more than fits in the
    // record: what the exact-address map lookup costs over the inline check.
    let mut mapped = Instance::new("p-map")?;
    let mut ips = b.ips.clone();
    ips.extend((1..=filter_common::MAX_INLINE_ADDRS as u8).map(|i| {
        progs::net(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            198, 51, 100, i,
        )))
    }));
    let b_map = progs::binding(ips)?;
    mapped.pinned.bind(1, "lo", &b_map)?;
    let mut map_s = Summary::new();
    let mut inline_s = Summary::new();
    for _ in 0..o.rounds {
        let t = progs::plain_precise(
            Prog::Xdp(mapped.portguard()?),
            1,
            &variants[4].3,
            o.a_repeat,
        )?;
        progs::expect("legit_v4_map", t.action, progs::XDP_PASS)?;
        map_s.push(t.cpu_ns);
        inline_s.push(
            progs::plain_precise(Prog::Xdp(inst.portguard()?), 1, &variants[4].3, o.a_repeat)?
                .cpu_ns,
        );
    }
    let prog = prog_info(&mut inst);
    let mut variants: Vec<(&'static str, &'static str, Summary)> = variants
        .iter()
        .zip(out)
        .map(|(v, s)| (v.0, v.1, s))
        .collect();
    variants.push((
        "legit_v4_paired",
        "bound IPv4/UDP, address inline in the record (paired with the next)",
        inline_s,
    ));
    variants.push((
        "legit_v4_map",
        "bound IPv4/UDP, port with 5 IPv4 addresses: V4_ADDRS hash lookup",
        map_s,
    ));
    Ok(Profile {
        variants,
        floor,
        prog,
    })
}
