//! Attach modes compared (`cargo run -p portguard-tests --bin modes`): what
//! `--mode native`, `--mode generic` and `--mode tc` cost a tenant's TCP and what they
//! cost per dropped flood frame, on a veth and on a tap. docs/bench.md,
//! "Attach modes", has the figures and how `auto` follows from them.
//!
//! * TCP over veth: one connection VM to VM through the bridge
//!   ([`crate::bigtcp::transfer`]), both ports guarded.
//! * GSO writes into a tap: 60 KB TCP frames with a virtio-net header (what a
//!   guest's TSO gives QEMU), bound source, to a VM on the bridge.
//! * Flood: 64-byte frames from a spoofed source (`ipv4_spoof` drops), sent
//!   as fast as one thread can (AF_PACKET on the veth's VM side; write(2) on
//!   the tap): wall time per frame, drop included.
//!
//! Cases alternate within each round; the median of the rounds is reported.
//! A measurement, not a test: run it on a quiet machine.
use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::{
    bigtcp,
    frames::{self as f, Mac},
    netns::{send_raw, Lab, Vm},
    tap::{tcp_gso_frame, TapPort, TcpFlow, VnetHdr},
};

const MODES: [&str; 4] = ["unfiltered", "native", "generic", "tc"];
const TAP_MAC: Mac = [0x02, 0, 0, 0, 0, 0x0a];
const TAP_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

pub struct Opts {
    pub rounds: usize,
    pub tcp_bytes: u64,
    pub gso_frames: usize,
    pub flood_frames: usize,
}

impl Opts {
    pub fn quick() -> Opts {
        Opts {
            rounds: 3,
            tcp_bytes: 256 << 20,
            gso_frames: 2_000,
            flood_frames: 100_000,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Puts `iface` in `mode` ("unfiltered" = detached), bound to `mac`/`ip`.
fn set_mode(lab: &Lab, iface: &str, mode: &str, mac: Mac, ip: Ipv4Addr) -> Result<()> {
    let _ = lab.pg(&["detach", iface]);
    if mode == "unfiltered" {
        return Ok(());
    }
    let o = lab.pg(&["attach", iface, "--mode", mode]);
    anyhow::ensure!(o.status.success(), "attach {iface} {mode}: {o:?}");
    let m = f::mac_str(&mac);
    let ip = ip.to_string();
    let o = lab.pg(&["bind", iface, "--mac", &m, "--ip", &ip]);
    anyhow::ensure!(o.status.success(), "bind {iface}: {o:?}");
    Ok(())
}

fn tcp_gbps(a: &Vm, b: &Vm, bytes: u64) -> Result<f64> {
    let t = Instant::now();
    let got = bigtcp::transfer(
        &a.ns,
        &b.ns,
        IpAddr::V4(b.ip4()),
        bytes,
        Duration::from_secs(30),
    )?;
    anyhow::ensure!(got == bytes, "received {got} of {bytes}");
    Ok(bytes as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9)
}

fn gso_gbps(tap: &TapPort, rx: &Vm, n: usize) -> Result<f64> {
    let flow = TcpFlow {
        src_mac: TAP_MAC,
        dst_mac: rx.mac(),
        sport: 40000,
        dport: 7001,
        seq: 1,
    };
    let (hdr, frame) = tcp_gso_frame(
        &flow,
        IpAddr::V4(TAP_IP),
        IpAddr::V4(NOBODY),
        &[0x37; 60_000],
        1448,
    );
    let t = Instant::now();
    for _ in 0..n {
        tap.write(&hdr, &frame).context("tap write")?;
    }
    Ok((n * frame.len()) as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9)
}

fn spoofed(src_mac: Mac, to: &Vm) -> Vec<u8> {
    f::eth(
        to.mac(),
        src_mac,
        f::ETH_P_IP,
        &f::udp4(Ipv4Addr::new(192, 0, 2, 66), NOBODY, 40000, 9, &[0; 18]),
    )
}

/// ns per spoofed frame sent out of `vm`'s VM side (veth).
fn veth_flood_ns(vm: &Vm, to: &Vm, n: usize) -> Result<f64> {
    let frames = vec![spoofed(vm.mac(), to); n];
    let t = Instant::now();
    send_raw(&vm.ns, &vm.iface, &frames)?;
    Ok(t.elapsed().as_nanos() as f64 / n as f64)
}

fn tap_flood_ns(tap: &TapPort, to: &Vm, n: usize) -> Result<f64> {
    let frame = spoofed(TAP_MAC, to);
    let hdr = VnetHdr::default();
    let t = Instant::now();
    for _ in 0..n {
        tap.write(&hdr, &frame).context("tap write")?;
    }
    Ok(t.elapsed().as_nanos() as f64 / n as f64)
}

/// Runs every case; returns the JSON document (medians and samples).
pub fn run(o: &Opts) -> Result<Value> {
    let lab = Lab::new(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    let tap = TapPort::add(&lab, "tap1", TAP_MAC);
    let mut samples: Vec<(String, String, f64)> = Vec::new();
    for round in 0..o.rounds {
        for k in 0..MODES.len() {
            let mode = MODES[(k + round) % MODES.len()];
            for vm in [a, b] {
                set_mode(&lab, &vm.host_if, mode, vm.mac(), vm.ip4())?;
            }
            set_mode(&lab, &tap.name, mode, TAP_MAC, TAP_IP)?;
            let tso = crate::netns::run_in(&a.ns, &["ethtool", "-k", "eth0"]);
            let tso = String::from_utf8_lossy(&tso.stdout)
                .lines()
                .any(|l| l.trim() == "tcp-segmentation-offload: on");
            samples.push((mode.into(), "veth_tso".into(), if tso { 1.0 } else { 0.0 }));
            samples.push((
                mode.into(),
                "veth_tcp_gbps".into(),
                tcp_gbps(a, b, o.tcp_bytes)?,
            ));
            samples.push((
                mode.into(),
                "tap_gso_gbps".into(),
                gso_gbps(&tap, b, o.gso_frames)?,
            ));
            if mode != "unfiltered" {
                samples.push((
                    mode.into(),
                    "veth_flood_ns".into(),
                    veth_flood_ns(a, b, o.flood_frames)?,
                ));
                samples.push((
                    mode.into(),
                    "tap_flood_ns".into(),
                    tap_flood_ns(&tap, b, o.flood_frames)?,
                ));
            }
            eprintln!("modes: round {round} {mode} done");
        }
    }
    let mut doc = json!({});
    for mode in MODES {
        for what in [
            "veth_tso",
            "veth_tcp_gbps",
            "tap_gso_gbps",
            "veth_flood_ns",
            "tap_flood_ns",
        ] {
            let v: Vec<f64> = samples
                .iter()
                .filter(|s| s.0 == mode && s.1 == what)
                .map(|s| s.2)
                .collect();
            if !v.is_empty() {
                doc[mode][what] = json!({"median": median(v.clone()), "samples": v});
            }
        }
    }
    Ok(doc)
}

/// The markdown table of [`run`]'s document.
pub fn markdown(doc: &Value) -> String {
    let get = |m: &str, w: &str| doc[m][w]["median"].as_f64();
    let cell = |m: &str, w: &str, digits: usize| {
        get(m, w).map_or("-".to_string(), |v| format!("{v:.digits$}"))
    };
    let mut s = String::from(
        "| mode | veth: TSO on the VM side | veth: TCP Gbit/s | tap: 60 KB GSO writes Gbit/s | veth: ns per dropped flood frame | tap: ns per dropped flood frame |\n|---|---|---|---|---|---|\n",
    );
    for m in MODES {
        s.push_str(&format!(
            "| {m} | {} | {} | {} | {} | {} |\n",
            match get(m, "veth_tso") {
                Some(v) if v >= 0.5 => "on",
                Some(_) => "off",
                None => "-",
            },
            cell(m, "veth_tcp_gbps", 1),
            cell(m, "tap_gso_gbps", 1),
            cell(m, "veth_flood_ns", 0),
            cell(m, "tap_flood_ns", 0),
        ));
    }
    s
}
