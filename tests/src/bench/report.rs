//! The results as JSON (every figure), a markdown table and a plot.
use std::{fmt::Write as _, path::Path};

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use super::{
    live,
    progs::Family,
    stats::{round, Summary},
    Opts, Results,
};

/// A headline figure: its summary (for ratios) or a plain value (seconds).
struct Figure {
    key: &'static str,
    what: &'static str,
    target: Option<(&'static str, f64, bool)>, // (text, bound, lower_is_better)
    value: Option<Summary>,
}

fn b_config(r: &Results, f: Family, n: u32) -> Option<&live::Config> {
    r.b.iter().find(|c| c.family == f && c.bindings == n)
}

fn figures(r: &Results) -> Vec<Figure> {
    let a = r.a.as_ref();
    let v6 = r.a2.iter().find(|s| s.family == Family::V6);
    let v4 = r.a2.iter().find(|s| s.family == Family::V4);
    let b1 = b_config(r, Family::V4, 1);
    let b1m = b_config(r, Family::V6, 1_000_000);
    let b6 = b_config(r, Family::V6, 1);
    let scale = |s: Option<&super::scale::Scale>| {
        s.and_then(|s| s.size(1_000_000))
            .map(|x| x.ratio_to_1.clone())
    };
    // Pure address-map scaling: 1M against the smallest map-resident binding.
    let map_scale = |s: Option<&super::scale::Scale>| {
        let s = s?;
        let small = s.size(filter_common::MAX_INLINE_ADDRS as u32 + 1)?;
        Some(s.size(1_000_000)?.all.ratio(&small.all))
    };
    let install = |s: Option<&super::scale::Scale>| {
        s.and_then(|s| s.size(1_000_000))
            .map(|x| Summary::of(vec![x.install_s]))
    };
    let d_ratio = |transport: &str, test: &str| {
        r.d.as_ref()?
            .transport(transport)?
            .ratio(test, "pg_default")
    };
    let nft1m = r
        .nft_install
        .iter()
        .find(|x| x.0 == 1_000_000)
        .map(|x| Summary::of(vec![x.1]));
    vec![
        Figure {
            key: "legit_over_noop",
            what: "Tier A: legit IPv4 / no-op XDP_PASS",
            target: Some(("<= 2.0", 2.0, true)),
            value: a.map(|a| a.ratio("legit_v4").clone()),
        },
        Figure {
            key: "spoof_drop_over_noop_drop",
            what: "Tier A: spoofed IPv4 drop / no-op XDP_DROP",
            target: None,
            value: a.map(|a| a.ratio("spoof_v4").clone()),
        },
        Figure {
            key: "arp_over_noop",
            what: "Tier A: ARP reply / no-op XDP_PASS",
            target: None,
            value: a.map(|a| a.ratio("arp").clone()),
        },
        Figure {
            key: "legit_v6_over_noop",
            what: "Tier A: legit IPv6 / no-op XDP_PASS",
            target: None,
            value: a.map(|a| a.ratio("legit_v6").clone()),
        },
        Figure {
            key: "legit_tc_over_noop_tc",
            what: "Tier A: legit IPv4 through the tc program (--mode tc) / no-op tc program",
            target: None,
            value: a.map(|a| a.ratio("legit_v4_tc").clone()),
        },
        Figure {
            key: "b1_over_b0",
            what: "Tier B, IPv4, 1 binding: portguard drop / no-op drop (live frames)",
            target: Some(("<= 1.3", 1.3, true)),
            value: b1.map(|c| c.ratio("B1", "B0")),
        },
        Figure {
            key: "nft_netdev_over_portguard",
            what: "Tier B, IPv4, 1 binding: nft netdev drop (B3) / portguard drop (B1)",
            target: Some((">= 2", 2.0, false)),
            value: b1.map(|c| c.ratio("B3", "B1")),
        },
        Figure {
            key: "nft_bridge_over_portguard",
            what: "Tier B, IPv4, 1 binding: nft bridge drop (B4) / portguard drop (B1)",
            target: Some((">= 3", 3.0, false)),
            value: b1.map(|c| c.ratio("B4", "B1")),
        },
        Figure {
            key: "b1_over_b0_v6_1",
            what: "Tier B, IPv6, 1 binding: B1/B0",
            target: Some(("<= 1.3", 1.3, true)),
            value: b6.map(|c| c.ratio("B1", "B0")),
        },
        Figure {
            key: "b1_over_b0_1m",
            what: "Tier B, IPv6, 1M bindings: B1/B0",
            target: Some(("<= 1.3", 1.3, true)),
            value: b1m.map(|c| c.ratio("B1", "B0")),
        },
        Figure {
            key: "nft_netdev_over_portguard_1m",
            what: "Tier B, IPv6, 1M bindings: B3/B1",
            target: Some((">= 2", 2.0, false)),
            value: b1m.map(|c| c.ratio("B3", "B1")),
        },
        Figure {
            key: "nft_bridge_over_portguard_1m",
            what: "Tier B, IPv6, 1M bindings: B4/B1",
            target: Some((">= 3", 3.0, false)),
            value: b1m.map(|c| c.ratio("B4", "B1")),
        },
        Figure {
            key: "scale_1m_over_1",
            what: "Tier A2, IPv6, cold lookups: 1M bindings / 1 binding",
            target: Some(("<= 1.25", 1.25, true)),
            value: scale(v6),
        },
        Figure {
            key: "scale_1m_over_1_v4",
            what: "Tier A2, IPv4, cold lookups: 1M bindings / 1 binding",
            target: Some(("<= 1.25", 1.25, true)),
            value: scale(v4),
        },
        Figure {
            key: "scale_1m_over_map_min",
            what: "Tier A2, IPv6, cold lookups: 1M bindings / smallest binding held in the address map (5 addresses)",
            target: None,
            value: map_scale(v6),
        },
        Figure {
            key: "install_1m_seconds",
            what: "Pinned::bind of 1M IPv6 addresses, seconds",
            target: Some(("< 10", 10.0, true)),
            value: install(v6),
        },
        Figure {
            key: "install_1m_seconds_v4",
            what: "Pinned::bind of 1M IPv4 addresses, seconds",
            target: Some(("< 10", 10.0, true)),
            value: install(v4),
        },
        Figure {
            key: "tcp_default_over_unfiltered_veth",
            what: "Tier D, veth: iperf3 TCP IPv4 1 stream, portguard default attach / unfiltered",
            target: Some((">= 0.95", 0.95, false)),
            value: d_ratio("veth", "tcp_v4_1"),
        },
        Figure {
            key: "tcp_default_over_unfiltered_tap",
            what: "Tier D, tap (virtio-net relay): iperf3 TCP IPv4 1 stream, portguard default attach / unfiltered",
            target: Some((">= 0.95", 0.95, false)),
            value: d_ratio("tap", "tcp_v4_1"),
        },
        Figure {
            key: "udp_pps_default_over_unfiltered",
            what: "Tier D, veth: iperf3 UDP 60-byte frames received per second, portguard default attach / unfiltered",
            target: Some((">= 0.9", 0.9, false)),
            value: d_ratio("veth", "udp_v4_pps"),
        },
        Figure {
            key: "nft_install_1m_seconds",
            what: "nft -f of the same 1M-element IPv6 set, seconds",
            target: None,
            value: nft1m,
        },
    ]
}

fn met(f: &Figure) -> Option<bool> {
    let (_, bound, lower) = f.target?;
    let v = f.value.as_ref()?.median();
    if !v.is_finite() {
        return None;
    }
    Some(if lower { v <= bound } else { v >= bound })
}

pub fn json(o: &Opts, r: &Results) -> Value {
    let figs = figures(r);
    let mut ratios = serde_json::Map::new();
    let mut targets = Vec::new();
    for f in &figs {
        let v = f.value.as_ref().map(|s| s.median()).unwrap_or(f64::NAN);
        ratios.insert(f.key.into(), round(v, 4));
        if let Some((t, _, _)) = f.target {
            targets.push(json!({
                "metric": f.key,
                "what": f.what,
                "target": t,
                "median": round(v, 4),
                "min": f.value.as_ref().map(|s| round(s.min(), 4)),
                "max": f.value.as_ref().map(|s| round(s.max(), 4)),
                "met": met(f),
            }));
        }
    }
    if let Some(f) = &r.fleet {
        ratios.extend(super::fleet::ratios(f));
    }
    json!({
        "machine": r.machine,
        "started": r.started,
        "elapsed_seconds": round(r.elapsed_s, 1),
        "config": {
            "quick": o.quick,
            "cpu": o.cpu,
            "rounds_a": o.rounds,
            "rounds_b": o.rounds_b,
            "tier_a_repeat": o.a_repeat,
            "tier_a2_frames_per_pass": o.a2_frames,
            "tier_b_frames_per_run": o.b_frames,
            "tier_c_seconds_per_case": o.c_seconds,
            "tier_d_seconds_per_run": o.d_seconds,
            "rounds_d": o.rounds_d,
            "tier_d_tests": o.d_tests,
            "sizes": o.sizes,
        },
        "ratios": Value::Object(ratios),
        "targets": targets,
        "tier_a": r.a.as_ref().map(|a| a.json()),
        "tier_a_profile": r.profile.as_ref().map(|p| p.json()),
        "tier_a2": r.a2.iter().map(|s| s.json()).collect::<Vec<_>>(),
        "tier_d": r.d.as_ref().map(|d| d.json()),
        "tier_b": r.b.iter().map(|c| (c.key(), c.json())).collect::<serde_json::Map<_, _>>(),
        "control_plane": {
            "portguard_bind_seconds": r.a2.iter().map(|s| (s.family.name().to_string(), json!(
                s.sizes.iter().map(|x| json!({"bindings": x.bindings, "seconds": round(x.install_s, 4),
                    "build_binding_seconds": round(x.build_s, 4)})).collect::<Vec<_>>()
            ))).collect::<serde_json::Map<_, _>>(),
            "nft_f_seconds_v6": r.nft_install.iter().map(|(n, s)| json!({"elements": n, "seconds": round(*s, 4)})).collect::<Vec<_>>(),
            "breakdown": r.breakdown,
            "lifecycle": r.lifecycle,
        },
        "tier_c": r.c,
        "fleet": r.fleet,
        "notes": r.notes,
    })
}

fn fmt_n(n: u32) -> String {
    match n {
        1_000_000 => "1M".into(),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}Mi", n >> 20),
        n if n >= 1024 && n % 1024 == 0 && n % 1000 != 0 => format!("{}Ki", n >> 10),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

pub fn markdown(o: &Opts, r: &Results, doc: &Value) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# portguard benchmark results\n");
    let _ = writeln!(
        s,
        "{} run started {} on {} ({} CPUs, {} GiB, kernel {}, {}); took {:.0} s; load average {} at start, {} at end. \
         Timed threads pinned to CPU {}. Figures: median (min-max) of {} interleaved rounds (Tier B: {}); \
         ratios are per round, then the median.\n",
        if o.quick { "Quick" } else { "Full" },
        r.started,
        m["cpu_model"].as_str().unwrap_or("?"),
        m["cpus"],
        m["mem_gib"],
        m["kernel"].as_str().unwrap_or("?"),
        m["nft"].as_str().unwrap_or("?"),
        r.elapsed_s,
        m["loadavg_start"].as_str().unwrap_or("?"),
        m["loadavg_end"].as_str().unwrap_or("?"),
        o.cpu,
        o.rounds,
        o.rounds_b,
    );

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(
        s,
        "| metric | what | target | measured median (min-max) | met |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for f in figures(r) {
        let val = f.value.as_ref().map(|v| v.show(2)).unwrap_or_else(|| {
            if o.quick {
                "not in --quick".into()
            } else {
                "not run".into()
            }
        });
        let (t, mt) = match f.target {
            Some((t, _, _)) => (
                t.to_string(),
                match met(&f) {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "-",
                },
            ),
            None => ("-".into(), "-"),
        };
        let _ = writeln!(s, "| {} | {} | {} | {} | {} |", f.key, f.what, t, val, mt);
    }
    let _ = writeln!(s);

    if let Some(a) = &r.a {
        let _ = writeln!(
            s,
            "## Tier A: plain BPF_PROG_TEST_RUN, repeat {} (one frame replayed, warm caches)\n",
            o.a_repeat
        );
        let _ = writeln!(
            s,
            "ns/packet = the timed thread's CPU time over the whole call / repeat (sub-ns resolution); \
             the kernel's own figure (whole ns, truncated) beside it as a cross-check.\n"
        );
        let _ = writeln!(
            s,
            "| case | ns/packet | kernel ns/packet | floor | ratio to floor |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for ((c, ns, ratio), k) in a.cases.iter().zip(&a.kernel) {
            let _ = writeln!(
                s,
                "| {} ({}) | {} | {} | {} | {} |",
                c.name,
                c.what,
                ns.show(2),
                k.show(0),
                c.vs,
                ratio.show(3)
            );
        }
        let _ = writeln!(s);
        for d in a.disagreements() {
            let _ = writeln!(s, "Cross-check failed: {d}\n");
        }
    }

    if let Some(p) = &r.profile {
        let _ = writeln!(
            s,
            "## Tier A profile: portguard's path stage by stage (plain test_run, warm)\n"
        );
        let _ = writeln!(
            s,
            "No-op XDP_PASS floor: {} ns/packet. Program: {}.\n",
            p.floor.show(1),
            p.prog
        );
        let _ = writeln!(s, "| variant | ns/packet |");
        let _ = writeln!(s, "|---|---|");
        for (k, what, v) in &p.variants {
            let _ = writeln!(s, "| {k} ({what}) | {} |", v.show(1));
        }
        let _ = writeln!(s, "\n| stage (difference of medians) | ns |");
        let _ = writeln!(s, "|---|---|");
        for (k, v) in p.stages() {
            let _ = writeln!(s, "| {k} | {v:.1} |");
        }
        let _ = writeln!(s);
    }

    for sc in &r.a2 {
        let _ = writeln!(
            s,
            "## Tier A2: lookup scaling, {} exact entries, cold ({} distinct frames per pass, repeat 1 each)\n",
            if sc.family == Family::V6 { "IPv6" } else { "IPv4" },
            sc.frames
        );
        let _ = writeln!(
            s,
            "No-op XDP_PASS floor, same frames: {} ns/packet.\n",
            sc.floor.show(1)
        );
        let _ = writeln!(
            s,
            "| bindings (map entries) | cold ns/packet | bound sources | unbound sources | ratio to floor | ratio to 1 binding | warm ns/packet | Pinned::bind s |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for x in sc.sizes.iter().chain(&sc.resized) {
            let _ = writeln!(
                s,
                "| {} ({}) | {} | {} | {} | {} | {} | {} | {:.4} |",
                fmt_n(x.bindings),
                fmt_n(x.max_addrs),
                x.all.show(1),
                x.bound.show(1),
                x.unbound.show(1),
                x.ratio_to_floor.show(2),
                x.ratio_to_1.show(2),
                x.warm.show(1),
                x.install_s
            );
        }
        let _ = writeln!(s);
    }

    if !r.b.is_empty() {
        let _ = writeln!(
            s,
            "## Tier B: BPF_PROG_TEST_RUN with xdp_live_frames ({} frames per run; ns per frame)\n",
            o.b_frames
        );
        for (k, what) in live::CASES {
            let _ = writeln!(s, "- {k}: {what}");
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| family, bindings | B0 | B1 | B2 | B3 | B4 | B5 | B1/B0 | B3/B1 | B4/B1 | B5/B2 |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for c in &r.b {
            let _ = write!(
                s,
                "| {}, {} ",
                if c.family == Family::V6 {
                    "IPv6"
                } else {
                    "IPv4"
                },
                fmt_n(c.bindings)
            );
            for (k, _) in live::CASES {
                let _ = write!(s, "| {} ", c.get(k).show(0));
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                c.ratio("B1", "B0").show(2),
                c.ratio("B3", "B1").show(2),
                c.ratio("B4", "B1").show(2),
                c.ratio("B5", "B2").show(2)
            );
        }
        let _ = writeln!(s);
    }

    if let Some(d) = &r.d {
        tier_d_markdown(&mut s, d);
    }

    if !r.a2.is_empty() || !r.nft_install.is_empty() || r.breakdown.is_some() {
        let _ = writeln!(s, "## Control plane: installing N bindings (seconds)\n");
        let _ = writeln!(
            s,
            "| N | Pinned::bind, IPv6 | Pinned::bind, IPv4 | nft -f, IPv6 set |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for &n in o.sizes.iter().filter(|n| **n >= 1_000) {
            let pg = |f: Family| {
                r.a2.iter()
                    .find(|x| x.family == f)
                    .and_then(|x| x.size(n))
                    .map(|x| format!("{:.3}", x.install_s))
                    .unwrap_or_else(|| "-".into())
            };
            let nf = r
                .nft_install
                .iter()
                .find(|x| x.0 == n)
                .map(|x| format!("{:.3}", x.1))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                fmt_n(n),
                pg(Family::V6),
                pg(Family::V4),
                nf
            );
        }
        let _ = writeln!(s);
        if let Some(b) = &r.breakdown {
            let _ = writeln!(
                s,
                "Where the time goes ({} IPv6 addresses on scratch maps): one BPF_MAP_UPDATE_ELEM per address {} s; \
                 walking every key of the map (what a rebind would cost without the ADDR_INDEX) {} s; \
                 the same inserts with BPF_MAP_UPDATE_BATCH (16384 per call) {} s; rebind of the same binding {}.\n",
                b["addresses"],
                b["per_element_update_seconds"],
                b["key_walk_seconds"],
                b["update_batch_seconds"],
                if b["rebind_same_size_seconds"].is_null() {
                    "(not measured in --quick)".to_string()
                } else {
                    format!("{} s", b["rebind_same_size_seconds"])
                }
            );
        }
    }

    if let Some(l) = &r.lifecycle {
        super::lifecycle::markdown(&mut s, l);
    }

    if let Some(c) = &r.c {
        let _ = writeln!(
            s,
            "## Tier C: real veth traffic (receiver NAPI thread CPU time per dropped frame)\n"
        );
        let _ = writeln!(
            s,
            "Generator (AF_PACKET sendmmsg) on CPU {}, the receiving veth's threaded-NAPI kthread on CPU {}; {} s per case, {} round(s). \
             Each frame's receive cost includes veth's skb-to-XDP conversion (a page allocation and copy) and freeing the sender's skb, \
             identical in every case.\n",
            c["generator_cpu"], c["napi_cpu"], c["seconds_per_case"], c["rounds"]
        );
        let _ = writeln!(s, "| case | ns per dropped frame | frames dropped | generator sent | ratio to portguard |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        let show = |v: &Value, p: usize| -> String {
            match (v["median"].as_f64(), v["min"].as_f64(), v["max"].as_f64()) {
                (Some(m), Some(a), Some(b)) => format!("{m:.p$} ({a:.p$}-{b:.p$})"),
                _ => "-".into(),
            }
        };
        if let Some(cases) = c["cases"].as_array() {
            for k in cases {
                let _ = writeln!(
                    s,
                    "| {} {} | {} | {} | {} | {} |",
                    k["case"].as_str().unwrap_or("?"),
                    k["what"].as_str().unwrap_or("?"),
                    show(&k["ns_per_dropped_frame"], 0),
                    k["dropped"],
                    k["sent"],
                    show(&k["ratio_to_portguard"], 2),
                );
            }
        }
        let _ = writeln!(s);
    }
    if let Some(f) = &r.fleet {
        s.push_str(&super::fleet::markdown(f));
    }
    for n in &r.notes {
        let _ = writeln!(s, "Note: {n}\n");
    }
    let _ = doc;
    s
}

fn tier_d_markdown(s: &mut String, d: &super::tier_d::TierD) {
    use super::tier_d::{CASES, TESTS};
    let _ = writeln!(
        s,
        "## Tier D: end-to-end throughput through a bridge (iperf3, {} s per run, {} interleaved rounds)\n",
        d.seconds, d.rounds
    );
    for (k, what) in CASES {
        let _ = writeln!(s, "- {k}: {what}");
    }
    let _ = writeln!(s);
    for t in &d.transports {
        let _ = writeln!(
            s,
            "### {} (default attach chose `{}`)\n",
            if t.name == "tap" {
                "tap, sender behind a userspace virtio-net relay"
            } else {
                "veth"
            },
            t.default_mode
        );
        let _ = write!(s, "| test |");
        for (k, _) in CASES {
            let _ = write!(s, " {k} |");
        }
        let _ = writeln!(s, " default / unfiltered | native / unfiltered | generic / unfiltered | tc / unfiltered | nft / unfiltered |");
        let _ = writeln!(s, "|---|{}", "---|".repeat(CASES.len() + 5));
        for (test, sums) in &t.tests {
            let what = TESTS.iter().find(|x| x.0 == *test).map_or("", |x| x.1);
            let _ = write!(s, "| {test} ({what}) |");
            for v in sums {
                let _ = write!(s, " {} |", v.show(2));
            }
            for c in [
                "pg_default",
                "pg_native",
                "pg_generic",
                "pg_tc",
                "nft_bridge",
            ] {
                let r = t
                    .ratio(test, c)
                    .map(|r| r.show(2))
                    .unwrap_or_else(|| "-".into());
                let _ = write!(s, " {r} |");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\nSender's TCP segmentation offload while attached: {}. Frames the filter dropped (all traffic is legitimate): {}.\n",
            CASES
                .iter()
                .zip(&t.tso)
                .map(|(c, v)| format!("{} {v}", c.0))
                .collect::<Vec<_>>()
                .join(", "),
            CASES
                .iter()
                .zip(&t.drops)
                .map(|(c, v)| format!("{} {v}", c.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some((f, b, g)) = t.relay {
            let _ = writeln!(
                s,
                "The relay wrote {f} frames ({b} bytes) into the tap, {g} of them larger than 1514 bytes (TSO frames crossing whole).\n"
            );
        }
    }
}

/// ns/packet against the number of bindings: portguard (cold lookups, and
/// live-frame drops) and nftables (live-frame drops, netdev and bridge).
/// With Tier D results, a second panel below: each filter's throughput
/// relative to unfiltered, per transport and test.
pub fn svg(path: &Path, r: &Results) -> Result<()> {
    use plotters::prelude::*;

    let series = scaling_series(r);
    let groups = tier_d_groups(r);
    if series.is_empty() && groups.is_empty() {
        return Err(anyhow!("nothing to plot"));
    }
    let top_h = if series.is_empty() { 0 } else { 560 };
    let bottom_h = if groups.is_empty() { 0 } else { 420 };
    let root = SVGBackend::new(path, (900, top_h + bottom_h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let (top, bottom) = root.split_vertically(top_h);
    if !series.is_empty() {
        draw_scaling(&top, series)?;
    }
    if !groups.is_empty() {
        draw_tier_d(&bottom, &groups)?;
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

type Series = (String, Vec<(f64, f64)>, plotters::style::RGBColor);

fn scaling_series(r: &Results) -> Vec<Series> {
    use plotters::prelude::*;
    let mut series: Vec<Series> = Vec::new();
    for sc in &r.a2 {
        series.push((
            format!(
                "portguard, {} cold lookups (plain test_run)",
                if sc.family == Family::V6 {
                    "IPv6"
                } else {
                    "IPv4"
                }
            ),
            sc.sizes
                .iter()
                .map(|x| (x.bindings as f64, x.all.median()))
                .collect(),
            if sc.family == Family::V6 { BLUE } else { CYAN },
        ));
    }
    let bv6: Vec<&live::Config> = r.b.iter().filter(|c| c.family == Family::V6).collect();
    if !bv6.is_empty() {
        for (k, label, color) in [
            (
                "B1",
                "portguard drop, IPv6 (live frames)",
                RGBColor(0, 0, 120),
            ),
            ("B3", "nft netdev drop, IPv6 (live frames)", RED),
            ("B4", "nft bridge drop, IPv6 (live frames)", MAGENTA),
            (
                "B0",
                "no-op XDP_DROP floor (live frames)",
                RGBColor(120, 120, 120),
            ),
        ] {
            series.push((
                label.to_string(),
                bv6.iter()
                    .map(|c| (c.bindings as f64, c.get(k).median()))
                    .collect(),
                color,
            ));
        }
    }
    series
}

type Area<'a> =
    plotters::drawing::DrawingArea<plotters::backend::SVGBackend<'a>, plotters::coord::Shift>;

fn draw_scaling(root: &Area, series: Vec<Series>) -> Result<()> {
    use plotters::prelude::*;
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "portguard: ns per packet vs installed bindings",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((0.5f64..2.0e6f64).log_scale(), 0f64..ymax)
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("bindings (addresses installed, log scale)")
        .y_desc("ns per packet")
        .x_label_formatter(&|v| {
            let n = v.round() as u64;
            match n {
                0..=999 => n.to_string(),
                1000..=999_999 => format!("{}k", n / 1000),
                _ => format!("{}M", n / 1_000_000),
            }
        })
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    for (label, pts, color) in series {
        let pts: Vec<(f64, f64)> = pts.into_iter().filter(|p| p.1.is_finite()).collect();
        let c = color;
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| anyhow!("{e:?}"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// Tier D: (group label, median ratio to unfiltered per filtered case).
fn tier_d_groups(r: &Results) -> Vec<(String, Vec<f64>)> {
    let Some(d) = &r.d else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in &d.transports {
        for (test, _) in &t.tests {
            let v = super::tier_d::CASES[1..]
                .iter()
                .map(|c| t.ratio(test, c.0).map_or(f64::NAN, |s| s.median()))
                .collect();
            out.push((format!("{} {}", t.name, test), v));
        }
    }
    out
}

fn draw_tier_d(root: &Area, groups: &[(String, Vec<f64>)]) -> Result<()> {
    use plotters::prelude::*;
    let colors = [BLUE, RGBColor(0, 0, 120), CYAN, GREEN, MAGENTA];
    let ymax = groups
        .iter()
        .flat_map(|g| g.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.2f64, f64::max)
        * 1.1;
    let n = groups.len();
    let labels: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Tier D: throughput with each filter / unfiltered (iperf3, median)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < labels.len() {
                labels[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc("ratio to unfiltered")
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    let k = super::tier_d::CASES.len() - 1;
    for (j, (case, _)) in super::tier_d::CASES[1..].iter().enumerate() {
        let c = colors[j % colors.len()];
        chart
            .draw_series(groups.iter().enumerate().filter_map(|(i, g)| {
                let v = g.1[j];
                v.is_finite().then(|| {
                    let x0 = i as f64 + 0.1 + 0.8 * j as f64 / k as f64;
                    let x1 = x0 + 0.8 / k as f64 * 0.9;
                    Rectangle::new([(x0, 0.0), (x1, v)], c.filled())
                })
            }))
            .map_err(|e| anyhow!("{e:?}"))?
            .label(*case)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.95), (n as f64, 0.95)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| anyhow!("{e:?}"))?
        .label("target 0.95 (TCP, default attach)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}
