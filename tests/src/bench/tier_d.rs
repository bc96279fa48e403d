//! Tier D: end-to-end throughput a tenant sees. iperf3 from a "VM"
//! namespace to another through a Linux bridge, the sender's port
//! unfiltered, guarded by portguard (default `attach`, then each explicit
//! mode, through the CLI as an operator runs it) or by the nftables
//! bridge-family equivalent; the sender's port is a veth, then a tap fed by
//! a userspace virtio-net relay (see relay.rs and docs/bench.md).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::{
    nft,
    progs::VM_MAC,
    relay::Relay,
    stats::Summary,
    sys::{self, Netns, PinDir},
    Opts,
};

/// (key, what).
pub const CASES: [(&str, &str); 6] = [
    ("unfiltered", "no filter on the sender's port"),
    ("pg_default", "portguard, `attach` without --mode"),
    ("pg_native", "portguard, `attach --mode native`"),
    ("pg_generic", "portguard, `attach --mode generic`"),
    ("pg_tc", "portguard, `attach --mode tc`"),
    (
        "nft_bridge",
        "nftables bridge prerouting set filter (same MAC/IPv4/IPv6 binding)",
    ),
];

/// (key, what, destination, parallel streams, UDP).
pub const TESTS: [(&str, &str, &str, u32, bool); 5] = [
    (
        "tcp_v4_1",
        "TCP IPv4, 1 stream, Gbit/s",
        "192.0.2.20",
        1,
        false,
    ),
    (
        "tcp_v4_4",
        "TCP IPv4, 4 streams, Gbit/s",
        "192.0.2.20",
        4,
        false,
    ),
    (
        "tcp_v6_1",
        "TCP IPv6, 1 stream, Gbit/s",
        "2001:db8::20",
        1,
        false,
    ),
    (
        "tcp_v6_4",
        "TCP IPv6, 4 streams, Gbit/s",
        "2001:db8::20",
        4,
        false,
    ),
    (
        "udp_v4_pps",
        "UDP IPv4, 18-byte payloads (60-byte frames), received kpps",
        "192.0.2.20",
        1,
        true,
    ),
];

pub const TRANSPORTS: [&str; 2] = ["veth", "tap"];

const PORT: &str = "pgd1";
const R_MAC: &str = "02:00:5e:10:00:20";

/// One transport's results: per test, per case, a summary of the rounds.
pub struct Transport {
    pub name: &'static str,
    /// What `attach` without --mode chose (`show --json` attach_mode).
    pub default_mode: String,
    /// (test key, per-case summaries in CASES order).
    pub tests: Vec<(&'static str, Vec<Summary>)>,
    /// Per case: TCP segmentation offload on the sender's NIC while attached.
    pub tso: Vec<String>,
    /// Per case: frames the filter dropped (legitimate traffic only: must be 0).
    pub drops: Vec<u64>,
    /// Tap only: frames, bytes and frames over 1514 bytes the relay wrote into the tap.
    pub relay: Option<(u64, u64, u64)>,
}

impl Transport {
    pub fn get(&self, test: &str, case: &str) -> Option<&Summary> {
        let i = CASES.iter().position(|c| c.0 == case)?;
        self.tests.iter().find(|t| t.0 == test).map(|t| &t.1[i])
    }

    /// Per-round ratio case / unfiltered.
    pub fn ratio(&self, test: &str, case: &str) -> Option<Summary> {
        Some(self.get(test, case)?.ratio(self.get(test, "unfiltered")?))
    }

    pub fn json(&self) -> Value {
        let tests: serde_json::Map<String, Value> = self
            .tests
            .iter()
            .map(|(t, s)| {
                let cases: serde_json::Map<String, Value> = CASES
                    .iter()
                    .zip(s)
                    .map(|(c, v)| {
                        (
                            c.0.to_string(),
                            json!({
                                "value": v.json(),
                                "ratio_to_unfiltered": self.ratio(t, c.0).map(|r| r.json()),
                            }),
                        )
                    })
                    .collect();
                let what = TESTS.iter().find(|x| x.0 == *t).map(|x| x.1);
                (t.to_string(), json!({"what": what, "cases": cases}))
            })
            .collect();
        json!({
            "default_mode": self.default_mode,
            "tests": tests,
            "sender_tso": CASES.iter().zip(&self.tso).map(|(c, t)| (c.0.to_string(), json!(t))).collect::<serde_json::Map<_, _>>(),
            "legit_frames_dropped": CASES.iter().zip(&self.drops).map(|(c, d)| (c.0.to_string(), json!(d))).collect::<serde_json::Map<_, _>>(),
            "relay_to_tap": self.relay.map(|(f, b, g)| json!({"frames": f, "bytes": b, "frames_over_1514_bytes": g})),
        })
    }
}

pub struct TierD {
    pub seconds: f64,
    pub rounds: usize,
    pub transports: Vec<Transport>,
}

impl TierD {
    pub fn transport(&self, name: &str) -> Option<&Transport> {
        self.transports.iter().find(|t| t.name == name)
    }

    pub fn json(&self) -> Value {
        json!({
            "method": "iperf3 from the sender namespace to the receiver's through a Linux bridge; each round runs every case \
                       in a rotated order and every test within it; values are per-run receiver figures, ratios per round",
            "seconds_per_run": self.seconds,
            "rounds": self.rounds,
            "cases": CASES.iter().map(|c| json!({"case": c.0, "what": c.1})).collect::<Vec<_>>(),
            "transports": self.transports.iter().map(|t| (t.name.to_string(), t.json())).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// The portguard CLI the bench drives: `$PORTGUARD_BIN`, else the release
/// build, else the debug build.
fn portguard_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTGUARD_BIN") {
        return PathBuf::from(p);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let rel = ws.join("target/release/portguard");
    if rel.exists() {
        rel
    } else {
        ws.join("target/debug/portguard")
    }
}

/// One topology: host netns with the bridge, sender S, receiver R.
struct Lab {
    h: Netns,
    s: Netns,
    r: Netns,
    pins: PinDir,
    audit: PathBuf,
    relay: Option<Relay>,
    server: Option<Child>,
}

impl Lab {
    fn new(kind: &str) -> Result<Lab> {
        let h = Netns::new(&format!("d{kind}h"))?;
        let s = Netns::new(&format!("d{kind}s"))?;
        let r = Netns::new(&format!("d{kind}r"))?;
        let pins = PinDir::new(&format!("d{kind}"))?;
        let audit = std::env::temp_dir().join(format!(
            "{}-{}-d{kind}.audit.jsonl",
            sys::PREFIX,
            std::process::id()
        ));
        let mut lab = Lab {
            h,
            s,
            r,
            pins,
            audit,
            relay: None,
            server: None,
        };
        lab.build(kind)?;
        Ok(lab)
    }

    fn build(&mut self, kind: &str) -> Result<()> {
        let (h, s, r) = (&self.h.name, &self.s.name, &self.r.name);
        sys::must_in(
            h,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        for ns in [s, r] {
            sys::must_in(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.default.router_solicitations=0",
                ],
            )?;
        }
        sys::ip(
            h,
            &[
                "link",
                "add",
                "pgdbr",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        )?;
        sys::ip(h, &["link", "set", "pgdbr", "up"])?;
        sys::ip(
            h,
            &[
                "link", "add", "pgd2", "type", "veth", "peer", "name", "eth0", "netns", r,
            ],
        )?;
        match kind {
            "veth" => {
                sys::ip(
                    h,
                    &[
                        "link", "add", PORT, "type", "veth", "peer", "name", "eth0", "netns", s,
                    ],
                )?;
            }
            _ => {
                sys::ip(
                    h,
                    &["tuntap", "add", "dev", PORT, "mode", "tap", "vnet_hdr"],
                )?;
                sys::ip(
                    s,
                    &[
                        "link", "add", "eth0", "type", "veth", "peer", "name", "pgr0",
                    ],
                )?;
                sys::must_in(s, &["sysctl", "-qw", "net.ipv6.conf.pgr0.disable_ipv6=1"])?;
                sys::ip(s, &["link", "set", "pgr0", "up"])?;
            }
        }
        let vm_mac = mac_str(&VM_MAC);
        for (ns, mac, me, peer, peer_mac) in [
            (s, vm_mac.as_str(), "10", "20", R_MAC),
            (r, R_MAC, "20", "10", vm_mac.as_str()),
        ] {
            sys::ip(ns, &["link", "set", "eth0", "address", mac])?;
            sys::ip(
                ns,
                &["addr", "add", &format!("192.0.2.{me}/24"), "dev", "eth0"],
            )?;
            sys::ip(
                ns,
                &[
                    "addr",
                    "add",
                    &format!("2001:db8::{me}/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ],
            )?;
            sys::ip(ns, &["link", "set", "eth0", "up"])?;
            // Permanent neighbours: no ARP/ND in the measured traffic (the
            // nftables equivalent filters IP only).
            for a in [format!("192.0.2.{peer}"), format!("2001:db8::{peer}")] {
                sys::ip(
                    ns,
                    &[
                        "neigh",
                        "replace",
                        &a,
                        "lladdr",
                        peer_mac,
                        "dev",
                        "eth0",
                        "nud",
                        "permanent",
                    ],
                )?;
            }
        }
        for p in [PORT, "pgd2"] {
            sys::ip(h, &["link", "set", p, "master", "pgdbr"])?;
            sys::ip(h, &["link", "set", p, "up"])?;
        }
        if kind == "tap" {
            self.relay = Some(Relay::start(s, "pgr0", h, PORT)?);
        }
        self.pg(&[
            "bind",
            PORT,
            "--mac",
            &vm_mac,
            "--ip",
            "192.0.2.10",
            "--ip",
            "2001:db8::10",
        ])?;
        Ok(())
    }

    /// `portguard --pin-dir <scratch> ARGS` in the host netns.
    /// A fresh one-test iperf3 server in the receiver (a server that a UDP
    /// flood left wedged never serves the next run).
    fn restart_server(&mut self) -> Result<()> {
        self.stop_server();
        self.server = Some(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.r.name))
                // Dies with the bench even if it is killed (nsenter execs).
                .args(["setpriv", "--pdeathsig", "KILL", "iperf3", "-s", "-1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting iperf3 -s")?,
        );
        Ok(())
    }

    fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pg(&self, args: &[&str]) -> Result<Output> {
        let o = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.h.name))
            .arg(portguard_bin())
            .arg("--pin-dir")
            .arg(&self.pins.path)
            .args(args)
            .env("PORTGUARD_AUDIT_LOG", &self.audit)
            .env_remove("RUST_LOG")
            .output()
            .context("running portguard")?;
        if !o.status.success() {
            bail!(
                "portguard {args:?} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(o)
    }

    fn attach_mode(&self) -> Result<String> {
        let o = self.pg(&["show", PORT, "--json"])?;
        let v: Value = serde_json::from_slice(&o.stdout)?;
        let e = v
            .as_array()
            .and_then(|a| a.iter().find(|e| e["iface"] == PORT))
            .unwrap_or(&v);
        Ok(e["attach_mode"].as_str().unwrap_or("?").to_string())
    }

    fn pg_drops(&self) -> Result<u64> {
        let o = self.pg(&["stats", PORT, "--json"])?;
        let v: Value = serde_json::from_slice(&o.stdout)?;
        let e = v
            .as_array()
            .and_then(|a| a.iter().find(|e| e["iface"] == PORT))
            .unwrap_or(&v);
        Ok(e["dropped"]
            .as_object()
            .map(|m| m.values().filter_map(|c| c["packets"].as_u64()).sum())
            .unwrap_or(0))
    }

    fn sender_tso(&self) -> String {
        sys::must_in(&self.s.name, &["ethtool", "-k", "eth0"])
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("tcp-segmentation-offload: "))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into())
    }

    /// Puts case `c` on the sender's port.
    fn apply(&self, c: &str) -> Result<()> {
        match c {
            "unfiltered" => {}
            "pg_default" => {
                self.pg(&["attach", PORT])?;
            }
            "pg_native" => {
                self.pg(&["attach", PORT, "--mode", "native"])?;
            }
            "pg_generic" => {
                self.pg(&["attach", PORT, "--mode", "generic"])?;
            }
            "pg_tc" => {
                self.pg(&["attach", PORT, "--mode", "tc"])?;
            }
            "nft_bridge" => {
                let v4 = ["192.0.2.10".parse()?];
                let v6 = [
                    "2001:db8::10".parse()?,
                    std::net::IpAddr::V6(crate::frames::eui64_ll(VM_MAC)),
                ];
                nft::load(&self.h.name, "d", &nft::bridge_ruleset_dual(PORT, &v4, &v6))?;
            }
            _ => bail!("unknown case {c}"),
        }
        Ok(())
    }

    /// The drop counter of case `c`'s filter (cumulative: portguard's
    /// counters live as long as the binding).
    fn drops(&self, c: &str) -> Result<u64> {
        match c {
            "pg_default" | "pg_native" | "pg_generic" | "pg_tc" => self.pg_drops(),
            "nft_bridge" => nft::counter_total(&self.h.name, "bridge", nft::BRIDGE_TABLE, "pre"),
            _ => Ok(0),
        }
    }

    /// Takes case `c` off again.
    fn remove(&self, c: &str) -> Result<()> {
        match c {
            "pg_default" | "pg_native" | "pg_generic" | "pg_tc" => {
                self.pg(&["detach", PORT])?;
            }
            "nft_bridge" => nft::delete(&self.h.name, "bridge", nft::BRIDGE_TABLE),
            _ => {}
        }
        Ok(())
    }

    /// One iperf3 run; Gbit/s (TCP) or received kpps (UDP).
    fn iperf(&mut self, dst: &str, streams: u32, udp: bool, secs: f64) -> Result<f64> {
        let t = format!("{}", secs.max(1.0).round() as u64);
        let p = streams.to_string();
        let mut argv = vec![
            "iperf3",
            "-c",
            dst,
            "-t",
            &t,
            "-P",
            &p,
            "-J",
            "--connect-timeout",
            "5000",
        ];
        if udp {
            argv.extend(["-u", "-b", "0", "-l", "18"]);
        }
        let mut last = anyhow!("no run");
        // A run can fail because the fresh server is not listening yet, or
        // a UDP flood broke the control connection: retry with a new server.
        for _ in 0..6 {
            self.restart_server()?;
            std::thread::sleep(Duration::from_millis(200));
            match sys::must_in(&self.s.name, &argv) {
                Ok(o) => match parse_iperf(&o.stdout, udp) {
                    Ok(v) => return Ok(v),
                    Err(e) => last = e,
                },
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_server();
        drop(self.relay.take());
        nft::delete(&self.h.name, "bridge", nft::BRIDGE_TABLE);
        let _ = std::fs::remove_file(&self.audit);
        crate::cli::remove_lock_files(&self.pins.path);
        // The pin dir (its Drop) unpins the links: the program detaches.
    }
}

fn mac_str(m: &[u8; 6]) -> String {
    crate::frames::mac_str(m)
}

fn parse_iperf(out: &[u8], udp: bool) -> Result<f64> {
    let v: Value = serde_json::from_slice(out).context("iperf3 -J output")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    let end = &v["end"];
    if udp {
        let s = &end["sum"];
        let (p, l, t) = (
            s["packets"].as_f64(),
            s["lost_packets"].as_f64(),
            s["seconds"].as_f64(),
        );
        match (p, l, t) {
            (Some(p), Some(l), Some(t)) if t > 0.0 => Ok((p - l) / t / 1e3),
            _ => bail!("iperf3 UDP output without packets/lost_packets/seconds"),
        }
    } else {
        end["sum_received"]["bits_per_second"]
            .as_f64()
            .map(|b| b / 1e9)
            .ok_or_else(|| anyhow!("iperf3 TCP output without sum_received"))
    }
}

pub fn run(o: &Opts) -> Result<TierD> {
    for tool in ["iperf3", "ethtool"] {
        if sys::run(&["sh", "-c", &format!("command -v {tool}")])
            .map(|x| !x.status.success())
            .unwrap_or(true)
        {
            bail!("Tier D needs {tool} (`cargo xtask setup` installs it)");
        }
    }
    if let Some(k) = o
        .d_tests
        .iter()
        .find(|k| !TESTS.iter().any(|t| t.0 == k.as_str()))
    {
        bail!(
            "unknown Tier D test {k:?} (known: {})",
            TESTS.map(|t| t.0).join(", ")
        );
    }
    let tests: Vec<_> = TESTS
        .iter()
        .filter(|t| o.d_tests.iter().any(|k| k == t.0))
        .collect();
    if tests.is_empty() {
        bail!("no Tier D test selected");
    }
    let mut out = Vec::new();
    for kind in TRANSPORTS {
        eprintln!("bench: Tier D on {kind}");
        let mut lab = Lab::new(kind)?;
        let mut res: Vec<Vec<Summary>> = tests
            .iter()
            .map(|_| vec![Summary::new(); CASES.len()])
            .collect();
        let mut tso = vec![String::new(); CASES.len()];
        let mut drops = vec![0u64; CASES.len()];
        let mut default_mode = String::new();
        // Warm-up (server up, caches, neighbours): one short unfiltered run.
        let _ = lab.iperf(tests[0].2, 1, false, 1.0);
        for round in 0..o.rounds_d {
            for k in 0..CASES.len() {
                let c = (k + round) % CASES.len();
                let case = CASES[c].0;
                lab.apply(case)?;
                if case == "pg_default" {
                    default_mode = lab.attach_mode()?;
                }
                tso[c] = lab.sender_tso();
                let d0 = lab.drops(case)?;
                for (i, t) in tests.iter().enumerate() {
                    let v = lab.iperf(t.2, t.3, t.4, o.d_seconds);
                    match v {
                        Ok(v) => res[i][c].push(v),
                        Err(e) => {
                            eprintln!("bench: Tier D {kind} {case} {}: {e:#}", t.0);
                            res[i][c].push(f64::NAN);
                        }
                    }
                }
                drops[c] += lab.drops(case)?.saturating_sub(d0);
                lab.remove(case)?;
            }
        }
        let relay = lab.relay.as_ref().map(|r| {
            let ld =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            let (f, b, g) = (ld(&r.frames[0]), ld(&r.bytes[0]), ld(&r.gso[0]));
            eprintln!(
                "bench: relay moved {f} frames ({g} over 1514 bytes) to the tap, {} back",
                ld(&r.frames[1])
            );
            (f, b, g)
        });
        out.push(Transport {
            name: kind,
            default_mode,
            tests: tests.iter().map(|t| t.0).zip(res).collect(),
            tso,
            drops,
            relay,
        });
    }
    Ok(TierD {
        seconds: o.d_seconds,
        rounds: o.rounds_d,
        transports: out,
    })
}
