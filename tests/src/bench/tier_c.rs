//! Tier C: real traffic over a veth pair between two private namespaces.
//! A generator thread (AF_PACKET, sendmmsg, pinned to one CPU) sends spoofed
//! frames from `pgc0`; on the receiving end `pgc1` the veth's NAPI runs in
//! its own kernel thread (threaded NAPI) pinned to the other CPU. Cost per
//! frame = that thread's CPU time (schedstat) / frames it processed.
//!
//! veth only runs NAPI when an XDP program is attached (GRO would also do,
//! but toggling it needs ethtool), so the nftables cases run behind the
//! no-op XDP_PASS program, like Tier B's B3/B4: every case pays veth's
//! skb-to-XDP conversion alike.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::programs::{xdp::XdpLinkId, Xdp, XdpMode};
use serde_json::{json, Value};

use super::{
    nft,
    progs::{self, Family, Instance},
    stats::Summary,
    sys::{self, Netns},
    Opts,
};

const CASES: [(&str, &str); 4] = [
    ("C0", "no-op XDP_DROP on the receiving veth"),
    ("C1", "portguard dropping spoofed frames"),
    (
        "C2",
        "no-op XDP_PASS + nftables netdev ingress set lookup, drop",
    ),
    (
        "C3",
        "no-op XDP_PASS + bridge + nftables bridge prerouting set lookup, drop",
    ),
];

fn rx_packets(ns: &str, dev: &str) -> Result<u64> {
    let o = sys::ip(ns, &["-s", "-j", "link", "show", "dev", dev])?;
    let v: Value = serde_json::from_slice(&o.stdout)?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .ok_or_else(|| anyhow!("no rx stats for {dev}"))
}

/// The NAPI kernel thread(s) of `dev` ("napi/<dev>-<id>").
fn napi_threads(dev: &str) -> Vec<i32> {
    let prefix = format!("napi/{dev}-");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<i32>() else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
                if comm.trim_end().starts_with(&prefix) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// CPU time (ns) a task has run, from /proc/<pid>/schedstat.
fn runtime_ns(pid: i32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("bad schedstat for {pid}"))
}

fn pin_pid(pid: i32, cpu: usize) -> Result<()> {
    // SAFETY: plain data and syscall.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity({pid}): {}", io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `frame` out of `dev` (in the calling thread's netns) until `stop`.
fn generate(dev: &str, frame: &[u8], stop: &AtomicBool) -> Result<u64> {
    // SAFETY: plain socket syscalls with checked results.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket(AF_PACKET): {}", io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ifindex = portguard::iface::index(dev)? as i32;
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&frame[..6]);
    const BATCH: usize = 64;
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr() as *mut libc::c_void,
        iov_len: frame.len(),
    };
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = &mut sll as *mut _ as *mut libc::c_void;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if r > 0 {
            sent += r as u64;
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOBUFS) && e.raw_os_error() != Some(libc::EAGAIN) {
                bail!("sendmmsg on {dev}: {e}");
            }
        }
    }
    Ok(sent)
}

struct Sample {
    ns_per_frame: f64,
    processed: u64,
    sent: u64,
}

/// One traffic run: returns receiver ns per processed frame.
fn traffic(
    o: &Opts,
    tx: &str,
    rx: &str,
    frame: &[u8],
    gen_cpu: usize,
    napi_cpu: usize,
) -> Result<Sample> {
    let pids = napi_threads("pgc1");
    if pids.is_empty() {
        bail!("no NAPI thread for pgc1 (threaded NAPI not enabled?)");
    }
    for &p in &pids {
        pin_pid(p, napi_cpu)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (txn, f, st) = (tx.to_string(), frame.to_vec(), stop.clone());
    let gen = thread::spawn(move || -> Result<u64> {
        sys::enter_netns(&txn)?;
        sys::pin_cpu(gen_cpu)?;
        generate("pgc0", &f, &st)
    });
    // Let the generator ramp up, then measure a window.
    thread::sleep(Duration::from_millis(200));
    let rt0: u64 = pids.iter().map(|&p| runtime_ns(p).unwrap_or(0)).sum();
    let rx0 = rx_packets(rx, "pgc1")?;
    let t = Instant::now();
    thread::sleep(Duration::from_secs_f64(o.c_seconds));
    let rt1: u64 = pids.iter().map(|&p| runtime_ns(p).unwrap_or(0)).sum();
    let rx1 = rx_packets(rx, "pgc1")?;
    let _ = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = gen.join().map_err(|_| anyhow!("generator panicked"))??;
    let processed = rx1 - rx0;
    if processed == 0 {
        bail!("the receiver processed no frames");
    }
    Ok(Sample {
        ns_per_frame: (rt1 - rt0) as f64 / processed as f64,
        processed,
        sent,
    })
}

fn attach(p: &mut Xdp, dev: &str) -> Result<XdpLinkId> {
    p.attach(dev, XdpMode::Default)
        .with_context(|| format!("attaching XDP to {dev}"))
}

pub fn run(o: &Opts) -> Result<Value> {
    if sys::nr_cpus() < 2 {
        bail!("Tier C needs two CPUs");
    }
    let tx = Netns::new("ctx")?;
    let rx = Netns::new("crx")?;
    for ns in [&tx, &rx] {
        sys::must_in(
            &ns.name,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
    }
    sys::ip(
        &tx.name,
        &[
            "link", "add", "pgc0", "type", "veth", "peer", "name", "pgc1", "netns", &rx.name,
        ],
    )?;
    sys::ip(&rx.name, &["link", "add", "pgcbr", "type", "bridge"])?;
    sys::ip(&tx.name, &["link", "set", "pgc0", "up"])?;
    sys::ip(&rx.name, &["link", "set", "pgc1", "up"])?;
    sys::ip(&rx.name, &["link", "set", "pgcbr", "up"])?;
    let napi_cpu = o.cpu;
    let gen_cpu = if o.cpu == 0 { 1 } else { 0 };
    let oc = o.clone();
    let (txn, rxn) = (tx.name.clone(), rx.name.clone());
    // The controller runs in the receiver's netns (attach, counters) on the generator's CPU.
    sys::in_ns(&rx.name, gen_cpu, move || {
        control(&oc, &txn, &rxn, gen_cpu, napi_cpu)
    })
}

fn control(o: &Opts, tx: &str, rx: &str, gen_cpu: usize, napi_cpu: usize) -> Result<Value> {
    let if1 = portguard::iface::index("pgc1")?;
    let mut inst = Instance::new("c")?;
    inst.pinned.bind(
        if1,
        "pgc1",
        &progs::binding(vec![progs::net(std::net::IpAddr::V4(progs::V4_BOUND))])?,
    )?;
    let addrs = super::live::addrs(Family::V4, 1);
    nft::load(rx, "cnd", &nft::netdev_ruleset("pgc1", Family::V4, &addrs))?;
    nft::load(rx, "cbr", &nft::bridge_ruleset("pgc1", Family::V4, &addrs))?;
    let frame = progs::udp_frame(Family::V4.spoof());
    let mut enabled_threaded = false;
    let rounds = if o.quick { 1 } else { 4 };
    let mut res: Vec<(Summary, u64, u64)> = vec![(Summary::new(), 0, 0); CASES.len()];
    let mut checks = serde_json::Map::new();
    for round in 0..rounds {
        for k in 0..CASES.len() {
            // Rotate the order: the first case of a round sees a colder system.
            let c = (k + round) % CASES.len();
            let prog_name = match c {
                0 => "noop_drop",
                1 => "portguard",
                _ => "noop_pass",
            };
            let bridged = c == 3;
            if bridged {
                sys::ip(rx, &["link", "set", "pgc1", "master", "pgcbr"])?;
            }
            let link = {
                let p: &mut Xdp = if c == 1 {
                    inst.pinned.program()?
                } else {
                    inst.floors.program_mut(prog_name).unwrap().try_into()?
                };
                attach(p, "pgc1")?
            };
            // NAPI instances exist once XDP is attached; run them in a kthread.
            let r = sys::must(&[
                "ip",
                "netns",
                "exec",
                rx,
                "sh",
                "-c",
                "echo 1 > /sys/class/net/pgc1/threaded",
            ]);
            if !enabled_threaded {
                r?;
                enabled_threaded = true;
            }
            let before = counts(&inst, rx, if1, c)?;
            let r = traffic(o, tx, rx, &frame, gen_cpu, napi_cpu);
            let after = counts(&inst, rx, if1, c)?;
            {
                let p: &mut Xdp = if c == 1 {
                    inst.pinned.program()?
                } else {
                    inst.floors.program_mut(prog_name).unwrap().try_into()?
                };
                p.detach(link)?;
            }
            if bridged {
                sys::ip(rx, &["link", "set", "pgc1", "nomaster"])?;
            }
            let s = r?;
            if round == 0 && c > 0 {
                // Every frame is spoofed: the filter must have dropped all it processed.
                checks.insert(
                    CASES[c].0.into(),
                    json!({"processed": s.processed, "dropped_by_filter": after - before}),
                );
            }
            res[c].0.push(s.ns_per_frame);
            res[c].1 += s.processed;
            res[c].2 += s.sent;
        }
    }
    nft::delete(rx, "netdev", nft::NETDEV_TABLE);
    nft::delete(rx, "bridge", nft::BRIDGE_TABLE);
    let pg = res[1].0.clone();
    Ok(json!({
        "method": "threaded NAPI kthread of the receiving veth pinned to one CPU, AF_PACKET sendmmsg generator on the other; \
                   ns per frame = kthread CPU time (schedstat) / frames it processed (veth rx packets)",
        "generator_cpu": gen_cpu,
        "napi_cpu": napi_cpu,
        "seconds_per_case": o.c_seconds,
        "rounds": rounds,
        "cases": CASES.iter().enumerate().map(|(i, (k, what))| json!({
            "case": k,
            "what": what,
            "ns_per_dropped_frame": res[i].0.json(),
            "ratio_to_portguard": res[i].0.ratio(&pg).json(),
            "dropped": res[i].1,
            "sent": res[i].2,
        })).collect::<Vec<_>>(),
        "drop_checks": checks,
    }))
}

/// Drops counted by the filter of case `c` (portguard counters or the nft rule counter).
fn counts(inst: &Instance, rx: &str, if1: u32, c: usize) -> Result<u64> {
    Ok(match c {
        1 => inst
            .pinned
            .counters(if1)?
            .dropped
            .iter()
            .map(|x| x.packets)
            .sum(),
        2 => nft::counter(rx, "netdev", nft::NETDEV_TABLE, "ingress")?,
        3 => nft::counter(rx, "bridge", nft::BRIDGE_TABLE, "pre")?,
        _ => 0,
    })
}
