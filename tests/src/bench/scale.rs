//! Tier A2: lookup cost against the number of installed addresses, with cold
//! caches. One portguard instance per size (own pin dir, own maps, all bound
//! on ifindex 1 = lo of the bench netns), all alive at once so every round
//! measures every size. Each frame of a large set of distinct frames (half
//! from bound sources drawn at random, half from distinct unbound sources) is
//! run once (repeat = 1): consecutive lookups hit unrelated hash buckets.
use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use super::{
    progs::{self, Family, Instance, XDP_DROP, XDP_PASS},
    stats::{Rng, Summary},
    Opts,
};

pub struct SizeResult {
    pub bindings: u32,
    /// max_entries of the address maps (MAX_ADDRS unless resized).
    pub max_addrs: u32,
    /// One bound frame replayed (plain test_run, large repeat): warm caches.
    pub warm: Summary,
    /// Pinned::bind of one Binding holding `bindings` addresses.
    pub install_s: f64,
    /// Building and normalizing (sorting) that Binding.
    pub build_s: f64,
    pub all: Summary,
    pub bound: Summary,
    pub unbound: Summary,
    pub ratio_to_floor: Summary,
    pub ratio_to_1: Summary,
}

pub struct Scale {
    pub family: Family,
    pub frames: usize,
    pub floor: Summary,
    pub sizes: Vec<SizeResult>,
    /// The same with address maps sized to the binding (experiment).
    pub resized: Vec<SizeResult>,
}

impl Scale {
    pub fn size(&self, n: u32) -> Option<&SizeResult> {
        self.sizes.iter().find(|s| s.bindings == n)
    }

    pub fn json(&self) -> Value {
        json!({
            "family": self.family.name(),
            "distinct_frames_per_pass": self.frames,
            "method": "plain BPF_PROG_TEST_RUN, repeat=1 per frame, mean over a set of distinct frames; \
                       half the frames come from bound sources drawn at random, half from distinct unbound ones",
            "floor_noop_pass_ns": self.floor.json(),
            "sizes": self.sizes.iter().map(size_json).collect::<Vec<_>>(),
            "resized_address_maps": self.resized.iter().map(size_json).collect::<Vec<_>>(),
        })
    }
}

fn size_json(s: &SizeResult) -> Value {
    json!({
                "bindings": s.bindings,
                "address_map_max_entries": s.max_addrs,
                "warm_ns_per_packet": s.warm.json(),
                "install_seconds": super::stats::round(s.install_s, 4),
                "build_binding_seconds": super::stats::round(s.build_s, 4),
                "ns_per_packet": s.all.json(),
                "ns_bound_source": s.bound.json(),
                "ns_unbound_source": s.unbound.json(),
                "ratio_to_floor": s.ratio_to_floor.json(),
                "ratio_to_1_binding": s.ratio_to_1.json(),
    })
}

struct Sized {
    n: u32,
    max_addrs: Option<u32>,
    inst: Instance,
    frames: Vec<(Vec<u8>, bool)>,
    install_s: f64,
    build_s: f64,
}

/// Mean ns over the frame set: (all, bound-only, unbound-only).
fn pass(
    prog: &aya::programs::Xdp,
    frames: &[(Vec<u8>, bool)],
    check: bool,
) -> Result<(f64, f64, f64)> {
    let (mut sb, mut nb, mut su, mut nu) = (0f64, 0u64, 0f64, 0u64);
    for (f, bound) in frames {
        let (ret, ns) = progs::plain(prog, 1, f, 1)?;
        if check {
            progs::expect(
                "scaled lookup",
                ret,
                if *bound { XDP_PASS } else { XDP_DROP },
            )?;
        }
        if *bound {
            sb += ns;
            nb += 1;
        } else {
            su += ns;
            nu += 1;
        }
    }
    let all = (sb + su) / (nb + nu) as f64;
    Ok((all, sb / nb.max(1) as f64, su / nu.max(1) as f64))
}

fn floor_pass(prog: &aya::programs::Xdp, frames: &[(Vec<u8>, bool)]) -> Result<f64> {
    let mut s = 0f64;
    for (f, _) in frames {
        s += progs::plain(prog, 1, f, 1)?.1;
    }
    Ok(s / frames.len() as f64)
}

/// Runs inside a thread in the bench netns, pinned.
pub fn run(o: &Opts, family: Family) -> Result<Scale> {
    let mut sized = Vec::new();
    let sizes: Vec<u32> = if o.quick && family == Family::V4 {
        vec![o.sizes[0], *o.sizes.last().unwrap()]
    } else {
        o.sizes.clone()
    };
    let mut plan: Vec<(u32, Option<u32>)> = sizes.iter().map(|&n| (n, None)).collect();
    if family == Family::V6 && !o.quick {
        // The bucket-array experiment: the smallest map-resident and the
        // largest size again, with address maps of just enough entries
        // (power of two, >= 1024).
        for &n in [o.sizes[1], *o.sizes.last().unwrap()].iter() {
            plan.push((n, Some(n.max(1024).next_power_of_two())));
        }
    }
    for (n, max_addrs) in plan {
        eprintln!(
            "  A2 {}: installing {n} bindings{}",
            family.name(),
            max_addrs
                .map(|m| format!(" (address maps of {m} entries)"))
                .unwrap_or_default()
        );
        let t = Instant::now();
        let ips: Vec<_> = (0..n).map(|i| progs::net(family.bound(i))).collect();
        let b = progs::binding(ips)?;
        let build_s = t.elapsed().as_secs_f64();
        let tag = format!("s{}-{n}-{}", family.name(), max_addrs.unwrap_or(0));
        let mut inst = Instance::with_max_addrs(&tag, max_addrs)?;
        let t = Instant::now();
        inst.pinned.bind(1, "lo", &b)?;
        let install_s = t.elapsed().as_secs_f64();
        drop(b);
        let mut rng = Rng::new(0x5eed ^ n as u64);
        let frames = (0..o.a2_frames)
            .map(|k| {
                if k % 2 == 0 {
                    (
                        progs::udp_frame(family.bound(rng.below(n as u64) as u32)),
                        true,
                    )
                } else {
                    (progs::udp_frame(family.unbound(k as u32)), false)
                }
            })
            .collect();
        sized.push(Sized {
            n,
            max_addrs,
            inst,
            frames,
            install_s,
            build_s,
        });
    }
    // Check every verdict once (also a warm-up of code and TLBs).
    for s in sized.iter_mut() {
        pass(s.inst.portguard()?, &s.frames, true)?;
    }
    let k = sized.len();
    let mut all: Vec<Summary> = vec![Summary::new(); k];
    let mut bound: Vec<Summary> = vec![Summary::new(); k];
    let mut unbound: Vec<Summary> = vec![Summary::new(); k];
    let mut warm: Vec<Summary> = vec![Summary::new(); k];
    let mut floor = Summary::new();
    let warm_frame = progs::udp_frame(family.bound(0));
    for round in 0..o.rounds {
        for j in 0..=k {
            let i = (j + round) % (k + 1);
            if i == k {
                let s = &sized[0];
                floor.push(floor_pass(s.inst.floor("noop_pass")?, &s.frames)?);
                continue;
            }
            let s = &mut sized[i];
            let (a, b, u) = pass(s.inst.portguard()?, &s.frames, false)?;
            all[i].push(a);
            bound[i].push(b);
            unbound[i].push(u);
            let (ret, w) = progs::plain(s.inst.portguard()?, 1, &warm_frame, o.a_repeat / 4)?;
            progs::expect("warm lookup", ret, XDP_PASS)?;
            warm[i].push(w);
        }
    }
    let mut sizes = Vec::new();
    let mut resized = Vec::new();
    let one = |i: usize| {
        // The smallest instance with the same kind of address maps (the
        // 1-binding one; the 5-binding one among the resized).
        sized
            .iter()
            .position(|x| x.max_addrs.is_some() == sized[i].max_addrs.is_some())
            .unwrap()
    };
    for (i, s) in sized.iter().enumerate() {
        let r = SizeResult {
            bindings: s.n,
            max_addrs: s.max_addrs.unwrap_or(filter_common::MAX_ADDRS),
            warm: warm[i].clone(),
            install_s: s.install_s,
            build_s: s.build_s,
            ratio_to_floor: all[i].ratio(&floor),
            ratio_to_1: all[i].ratio(&all[one(i)]),
            all: all[i].clone(),
            bound: bound[i].clone(),
            unbound: unbound[i].clone(),
        };
        if s.max_addrs.is_some() {
            resized.push(r);
        } else {
            sizes.push(r);
        }
    }
    Ok(Scale {
        family,
        frames: o.a2_frames,
        floor,
        sizes,
        resized,
    })
}
