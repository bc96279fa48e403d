//! `cargo xtask bench`: what portguard costs per packet, against a no-op
//! floor and against nftables, how that scales to 1M bindings, and how fast
//! bindings install. See docs/bench.md for what each tier measures.
//!
//! Timings on a shared machine are noisy, so every figure is the median of
//! several interleaved rounds with its min-max, and every ratio is computed
//! per round (both sides measured in the same round) before taking the median.
use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub mod control;
pub mod fleet;
pub mod lifecycle;
pub mod live;
pub mod nft;
pub mod profile;
pub mod progs;
pub mod report;
pub mod scale;
pub mod stats;
pub mod sys;
pub mod tier_a;
pub mod tier_c;

use progs::Family;

#[derive(Clone, Debug)]
pub struct Opts {
    pub quick: bool,
    pub json: PathBuf,
    pub md: PathBuf,
    pub svg: PathBuf,
    /// Rounds of Tier A and A2.
    pub rounds: usize,
    /// Rounds of Tier B.
    pub rounds_b: usize,
    /// BPF_PROG_TEST_RUN repeat of Tier A.
    pub a_repeat: u32,
    /// Distinct frames per pass of Tier A2.
    pub a2_frames: usize,
    /// Binding sizes of Tier A2 (the first must be 1).
    pub sizes: Vec<u32>,
    pub a2_families: Vec<Family>,
    /// (family, bindings) configurations of Tier B.
    pub b_configs: Vec<(Family, u32)>,
    /// Frames per live run of Tier B.
    pub b_frames: u32,
    /// Seconds of traffic per Tier C case.
    pub c_seconds: f64,
    pub tiers: Vec<String>,
    pub cpu: usize,
}

const USAGE: &str = "usage: bench [--quick] [--json FILE] [--md FILE] [--svg FILE] [--only a,profile,a2,b,c,control,fleet]

Runs portguard's data-path and control-plane benchmarks (root needed) and writes
a markdown table (default bench/results.md), JSON (default bench/results.json)
and a plot (default bench/scaling.svg). --quick finishes in under 3 minutes.";

impl Opts {
    fn parse(args: Vec<String>) -> Result<Opts> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|p| p.join("bench"))
            .unwrap_or_else(|| PathBuf::from("bench"));
        let mut quick = false;
        let mut json = root.join("results.json");
        let mut md = root.join("results.md");
        let mut svg = root.join("scaling.svg");
        let mut tiers: Vec<String> = ["a", "profile", "a2", "b", "c", "control", "fleet"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| -> Result<String> {
                it.next()
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            match a.as_str() {
                "--quick" => quick = true,
                "--json" => json = PathBuf::from(val("--json")?),
                "--md" => md = PathBuf::from(val("--md")?),
                "--svg" => svg = PathBuf::from(val("--svg")?),
                "--only" => {
                    tiers = val("--only")?
                        .split(',')
                        .map(|s| s.trim().to_lowercase())
                        .collect()
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        // 1 address sits in the port record; MAX_INLINE_ADDRS + 1 is the
        // smallest binding whose addresses live in the address map.
        let sizes = vec![
            1,
            filter_common::MAX_INLINE_ADDRS as u32 + 1,
            1_000,
            100_000,
            1_000_000,
        ];
        let b_configs = if quick {
            // Loading 1M-element sets with nft takes ~15-25 s each: the quick
            // run stops at 100k; the full run goes to 1M.
            vec![(Family::V4, 1), (Family::V6, 1), (Family::V6, 100_000)]
        } else {
            vec![
                (Family::V4, 1),
                (Family::V6, 1),
                (Family::V6, 1_000),
                (Family::V6, 100_000),
                (Family::V6, 1_000_000),
            ]
        };
        Ok(Opts {
            quick,
            json,
            md,
            svg,
            rounds: if quick { 5 } else { 9 },
            rounds_b: if quick { 3 } else { 7 },
            a_repeat: if quick { 500_000 } else { 2_000_000 },
            a2_frames: if quick { 20_000 } else { 100_000 },
            sizes,
            a2_families: vec![Family::V6, Family::V4],
            b_configs,
            b_frames: if quick { 500_000 } else { 2_000_000 },
            c_seconds: if quick { 1.5 } else { 4.0 },
            tiers,
            cpu: sys::bench_cpu(),
        })
    }

    fn tier(&self, t: &str) -> bool {
        self.tiers.iter().any(|x| x == t)
    }
}

/// Everything measured, for the report.
#[derive(Default)]
pub struct Results {
    pub machine: Value,
    pub started: String,
    pub elapsed_s: f64,
    pub a: Option<tier_a::TierA>,
    pub profile: Option<profile::Profile>,
    pub a2: Vec<scale::Scale>,
    pub b: Vec<live::Config>,
    pub breakdown: Option<Value>,
    pub nft_install: Vec<(u32, f64)>,
    pub c: Option<Value>,
    pub fleet: Option<Value>,
    /// Ports that come and go (control tier).
    pub lifecycle: Option<Value>,
    pub notes: Vec<String>,
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let o = Opts::parse(args)?;
    if !sys::is_root() {
        bail!("the benchmarks need root (BPF, network namespaces, nftables)");
    }
    sys::cleanup_stale();
    sys::ensure_bpffs()?;
    let t0 = Instant::now();
    let mut r = Results {
        machine: sys::machine(),
        started: sys::run(&["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        ..Default::default()
    };
    eprintln!(
        "bench: {} run, timed threads pinned to CPU {}",
        if o.quick { "quick" } else { "full" },
        o.cpu
    );

    if o.tier("a") || o.tier("a2") || o.tier("profile") {
        let ns = sys::Netns::new("a")?;
        sys::ip(
            &ns.name,
            &[
                "link", "add", "pgbd0", "type", "veth", "peer", "name", "pgbd1",
            ],
        )?;
        let dummy = ns.ifindex("pgbd0")?;
        if o.tier("a") {
            eprintln!("bench: Tier A (plain test_run, repeat {})", o.a_repeat);
            let oc = o.clone();
            r.a = Some(sys::in_ns(&ns.name, o.cpu, move || tier_a::run(&oc))?);
        }
        if o.tier("profile") {
            eprintln!("bench: Tier A profile (variants of the portguard path)");
            let oc = o.clone();
            r.profile = Some(sys::in_ns(&ns.name, o.cpu, move || {
                profile::run(&oc, dummy)
            })?);
        }
        if o.tier("a2") {
            for &f in &o.a2_families {
                eprintln!(
                    "bench: Tier A2 {} (cold lookups, {} frames/pass)",
                    f.name(),
                    o.a2_frames
                );
                let oc = o.clone();
                r.a2.push(sys::in_ns(&ns.name, o.cpu, move || scale::run(&oc, f))?);
            }
        }
    }
    if o.tier("b") {
        let ns = sys::Netns::new("b")?;
        live::setup(&ns)?;
        for &(f, n) in &o.b_configs {
            eprintln!(
                "bench: Tier B {}_{n} (xdp_live_frames, {} frames/run)",
                f.name(),
                o.b_frames
            );
            let oc = o.clone();
            let name = ns.name.clone();
            r.b.push(sys::in_ns(&ns.name, o.cpu, move || {
                live::run(&oc, &name, f, n)
            })?);
        }
    }
    if o.tier("control") {
        let n = if o.quick {
            100_000
        } else {
            *o.sizes.last().unwrap()
        };
        eprintln!("bench: control plane breakdown ({n} addresses)");
        let oc = o.clone();
        r.breakdown = Some(control::breakdown(&oc, n)?);
        let covered: Vec<u32> =
            r.b.iter()
                .filter(|c| c.family == Family::V6)
                .map(|c| c.bindings)
                .collect();
        let todo: Vec<u32> = o
            .sizes
            .iter()
            .copied()
            .filter(|n| *n >= 1_000 && !covered.contains(n) && !(o.quick && *n > 100_000))
            .collect();
        eprintln!("bench: nft -f install times for {todo:?}");
        r.nft_install = control::nft_install(&todo)?;
        for c in &r.b {
            if c.family == Family::V6 {
                r.nft_install.push((c.bindings, c.install_nft_netdev_s));
            }
        }
        r.nft_install.sort_by_key(|x| x.0);
    }
    if o.tier("control") || o.tier("lifecycle") {
        eprintln!("bench: ports that come and go (RTM_NEWLINK -> enforced, leaks)");
        r.lifecycle = Some(lifecycle::run(&o)?);
    }
    if o.tier("c") {
        eprintln!(
            "bench: Tier C (real veth traffic, {} s per case)",
            o.c_seconds
        );
        match tier_c::run(&o) {
            Ok(v) => r.c = Some(v),
            Err(e) => {
                eprintln!("bench: Tier C failed: {e:#}");
                r.notes.push(format!("Tier C failed: {e:#}"));
            }
        }
    }
    if o.tier("fleet") {
        eprintln!("bench: fleet (etcd + portguard agent)");
        match fleet::run(o.quick) {
            Ok(v) => r.fleet = Some(v),
            Err(e) => r.notes.push(format!("fleet failed: {e:#}")),
        }
    }
    r.elapsed_s = t0.elapsed().as_secs_f64();
    r.machine["loadavg_end"] = json!(sys::loadavg());

    let doc = report::json(&o, &r);
    let md = report::markdown(&o, &r, &doc);
    println!("{md}");
    write(&o.md, md.as_bytes())?;
    write(&o.json, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    if let Err(e) = report::svg(&o.svg, &r) {
        eprintln!("bench: plot not written: {e:#}");
    }
    eprintln!(
        "bench: done in {:.0?}; wrote {}, {}, {}",
        Duration::from_secs_f64(r.elapsed_s),
        o.md.display(),
        o.json.display(),
        o.svg.display()
    );
    Ok(())
}

fn write(path: &std::path::Path, data: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        if !d.as_os_str().is_empty() {
            std::fs::create_dir_all(d)?;
        }
    }
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}
