//! Control plane: ports that come and go (issue #13).
//!
//! The daemon's code path runs in-process: a thread in the bench namespace
//! subscribed to link events, feeding a [`Reconciler`] whose desired state
//! names every interface the bench creates (as `portguard daemon` does from
//! its file; the daemon only adds a channel hop between the two threads).
//!
//! * **Reaction time**: `ip link add` of a veth, 200 times; for each, the
//!   time from the moment the reconciler's thread received the RTM_NEWLINK
//!   to the moment the port was bound and attached (the reconciler's call
//!   returned with the port enforced), and, as an upper bound that includes
//!   `ip`'s own fork/exec, from just before the `ip link add` was spawned.
//! * **Leak**: an orchestrator-like sequence (create the veth with its peer
//!   in a "VM" namespace, join the bridge, `ip link set up`); a sender in
//!   the VM starts spoofing 0 ms or 50 ms after `up` returned and keeps
//!   going for 300 ms; every spoofed frame that reached the bridge (an
//!   AF_PACKET capture on `br0`, which a broadcast frame reaches once the
//!   port's filter let it through) leaked. Not a capture on the port itself:
//!   packet taps there run before tc ingress, so in tc mode they see frames
//!   the filter then drops.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use portguard::{
    lifecycle::{LinkEvent, LinkEvents, Options, PortStatus, Received, Reconciler},
    spec::PortSpec,
    state::{Port, State},
};
use serde_json::{json, Value};

use super::{
    stats::round,
    sys::{self, Netns, PinDir},
    Opts,
};
use crate::{frames as f, netns};

/// Interface creations timed.
const CREATIONS: usize = 200;
/// How long the spoofing sender runs per leak trial.
const SEND_FOR: Duration = Duration::from_millis(300);
const SPOOF: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 99);

/// (interface, when its RTM_NEWLINK was received, when it was enforced).
type Enforced = (String, Instant, Instant);

/// The reconciler thread: desired ports for `names`, fed link events until `stop`.
fn reconciler_thread(
    ns: String,
    pin_dir: std::path::PathBuf,
    audit: std::path::PathBuf,
    names: Vec<String>,
    ready: mpsc::Sender<Result<()>>,
    done: mpsc::Sender<Enforced>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let setup = (|| -> Result<(LinkEvents, Reconciler)> {
            netns::enter_netns(&ns)?;
            let events = LinkEvents::subscribe()?;
            let mut r = Reconciler::new(
                Options {
                    pin_dir,
                    audit_log: audit,
                    prune: false,
                    audit_command: "bench".into(),
                    max_ports: None,
                },
                |_| {},
            );
            let ports = names
                .iter()
                .enumerate()
                .map(|(i, n)| port(n, i))
                .collect::<Result<Vec<_>>>()?;
            r.set_desired(State {
                ports,
                guards: Vec::new(),
            })?;
            Ok((events, r))
        })();
        let (mut events, mut r) = match setup {
            Ok(x) => {
                let _ = ready.send(Ok(()));
                x
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            match events.next(Duration::from_millis(50)) {
                Ok(Received::Events(evs)) => {
                    for ev in &evs {
                        let t_recv = Instant::now();
                        let _ = r.on_event(ev);
                        if let LinkEvent::New(l) = ev {
                            if matches!(r.status(&l.name), Some(PortStatus::Enforced { ifindex, .. }) if ifindex == l.ifindex)
                            {
                                let _ = done.send((l.name.clone(), t_recv, Instant::now()));
                            }
                        }
                    }
                }
                Ok(Received::Overrun) | Err(_) => {
                    let _ = r.resync();
                }
                Ok(Received::Timeout) => {}
            }
        }
    })
}

/// Port number `i`: MAC 02:00:00:02:<i>, 198.51.100.<1+i%200>.
fn port(name: &str, i: usize) -> Result<Port> {
    let spec: PortSpec = serde_json::from_value(json!({
        "iface": name,
        "mac": mac_str(i),
        "ips": [format!("198.51.100.{}", 1 + i % 200)],
    }))?;
    Port::from_spec(&spec, "bench").map_err(|e| anyhow!("{e}"))
}

fn mac(i: usize) -> f::Mac {
    [2, 0, 0, 2, (i >> 8) as u8, i as u8]
}

fn mac_str(i: usize) -> String {
    f::mac_str(&mac(i))
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    let k = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[k.min(s.len() - 1)]
}

fn ms_summary(v: &[f64]) -> Value {
    json!({
        "n": v.len(),
        "median": round(percentile(v, 50.0), 3),
        "p99": round(percentile(v, 99.0), 3),
        "min": round(percentile(v, 0.0), 3),
        "max": round(percentile(v, 100.0), 3),
    })
}

fn wait_for(rx: &mpsc::Receiver<Enforced>, name: &str) -> Result<Enforced> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let e = rx
            .recv_timeout(left)
            .map_err(|_| anyhow!("{name} was not enforced within 10 s"))?;
        if e.0 == name {
            return Ok(e);
        }
    }
}

/// Sends spoofed frames from `iface` in `ns`, starting at `start`, for
/// [`SEND_FOR`]; returns how many were sent.
fn spoofer(ns: String, iface: String, frame: Vec<u8>, start: Instant) -> Result<u64> {
    netns::enter_netns(&ns)?;
    let (fd, ifindex) = netns::packet_socket(&iface, 0)?;
    while Instant::now() < start {
        std::hint::spin_loop();
    }
    let end = start + SEND_FOR;
    let mut sent = 0;
    while Instant::now() < end {
        if netns::send_frame(&fd, ifindex, &frame).is_ok() {
            sent += 1;
        }
    }
    Ok(sent)
}

pub fn run(o: &Opts) -> Result<Value> {
    let host = Netns::new("lc")?;
    let vm = Netns::new("lcvm")?;
    for ns in [&host.name, &vm.name] {
        sys::must_in(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        sys::must_in(
            ns,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        )?;
    }
    sys::ip(
        &host.name,
        &["link", "add", "br0", "type", "bridge", "forward_delay", "0"],
    )?;
    sys::ip(&host.name, &["link", "set", "br0", "up"])?;
    let trials = if o.quick { 5 } else { 20 };
    // (sender delay after `up`, whole sequence in one `ip -batch`).
    let delays = [(0u64, false), (50, false), (0, true)];
    let lat_names: Vec<String> = (0..CREATIONS).map(|i| format!("lc{i}")).collect();
    let leak_names: Vec<String> = (0..trials * delays.len())
        .map(|i| format!("lk{i}"))
        .collect();
    let pin = PinDir::new("lifecycle")?;
    // The audit log on tmpfs: the daemon's fsync of it comes after the port
    // is enforced; it would only delay the next event.
    let audit = std::path::PathBuf::from(format!(
        "/dev/shm/{}-{}-audit.jsonl",
        sys::PREFIX,
        std::process::id()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let all: Vec<String> = lat_names.iter().chain(&leak_names).cloned().collect();
    let handle = reconciler_thread(
        host.name.clone(),
        pin.path.clone(),
        audit.clone(),
        all,
        ready_tx,
        done_tx,
        stop.clone(),
    );
    let result = (|| -> Result<Value> {
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .context("reconciler did not start")??;

        // 1. Reaction time over CREATIONS interface creations.
        let (mut react, mut end_to_end) = (Vec::new(), Vec::new());
        for n in &lat_names {
            let t0 = Instant::now();
            sys::ip(
                &host.name,
                &[
                    "link",
                    "add",
                    n,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &format!("q{n}"),
                ],
            )?;
            let (_, t_recv, t_done) = wait_for(&done_rx, n)?;
            react.push((t_done - t_recv).as_secs_f64() * 1e3);
            end_to_end.push((t_done - t0).as_secs_f64() * 1e3);
        }
        let batch = lat_names
            .iter()
            .map(|n| format!("link del {n}\n"))
            .collect::<String>();
        let bf = std::env::temp_dir().join(format!("{}-{}-del", sys::PREFIX, std::process::id()));
        std::fs::write(&bf, batch)?;
        let del = sys::ip(&host.name, &["-batch", &bf.display().to_string()]);
        let _ = std::fs::remove_file(&bf);
        del?;

        // 2. Leaks with a sender starting `delay` ms after `ip link set up`.
        let mut leak = Vec::new();
        let mut k = 0;
        for &(delay, batched) in &delays {
            let (mut sent, mut leaked, mut before_up) = (0u64, 0u64, Vec::new());
            for _ in 0..trials {
                let n = &leak_names[k];
                let i = lat_names.len() + k;
                k += 1;
                let peer = format!("v{k}");
                // The "VM" end: its own namespace, or (batched) the host's,
                // so that one `ip` process does everything.
                let sender_ns = if batched { &host.name } else { &vm.name };
                if batched {
                    let bf = std::env::temp_dir().join(format!(
                        "{}-{}-up",
                        sys::PREFIX,
                        std::process::id()
                    ));
                    std::fs::write(
                        &bf,
                        format!(
                            "link add {n} type veth peer name {peer} address {}\n\
                             link set {peer} up\nlink set {n} master br0\nlink set {n} up\n",
                            mac_str(i)
                        ),
                    )?;
                    let r = sys::ip(&host.name, &["-batch", &bf.display().to_string()]);
                    let _ = std::fs::remove_file(&bf);
                    r?;
                } else {
                    sys::ip(
                        &host.name,
                        &[
                            "link", "add", n, "type", "veth", "peer", "name", &peer, "netns",
                            &vm.name,
                        ],
                    )?;
                    sys::ip(
                        &vm.name,
                        &["link", "set", &peer, "address", &mac_str(i), "up"],
                    )?;
                    sys::ip(&host.name, &["link", "set", n, "master", "br0"])?;
                    sys::ip(&host.name, &["link", "set", n, "up"])?;
                }
                let t_up = Instant::now();
                // Bound after `up` (a socket bound to a down interface reports
                // ENETDOWN); the sender starts after this returns.
                let cap = netns::Capture::start(&host.name, "br0")?;
                let frame = f::eth(
                    [0xff; 6],
                    mac(i),
                    f::ETH_P_IP,
                    &f::udp4(
                        SPOOF,
                        std::net::Ipv4Addr::new(198, 51, 100, 250),
                        4000,
                        9,
                        b"pg-leak",
                    ),
                );
                let (vm_ns, peer2, fr) = (sender_ns.clone(), peer.clone(), frame.clone());
                let start = t_up + Duration::from_millis(delay);
                let s = thread::spawn(move || spoofer(vm_ns, peer2, fr, start))
                    .join()
                    .map_err(|_| anyhow!("sender panicked"))??;
                let got = cap.finish_after(Duration::from_millis(100));
                let (_, _, t_done) = wait_for(&done_rx, n)?;
                // Positive: enforced before the link was up.
                before_up.push(if t_done <= t_up {
                    (t_up - t_done).as_secs_f64() * 1e3
                } else {
                    -((t_done - t_up).as_secs_f64() * 1e3)
                });
                sent += s;
                leaked += got
                    .iter()
                    .filter(|g| netns::frame_matches(g, &frame))
                    .count() as u64;
                sys::ip(&host.name, &["link", "del", n])?;
            }
            leak.push(json!({
                "delay_ms": delay,
                "one_ip_batch": batched,
                "trials": trials,
                "spoofed_sent": sent,
                "spoofed_leaked": leaked,
                "enforced_before_up_ms": ms_summary(&before_up),
            }));
        }
        Ok(json!({
            "creations": CREATIONS,
            "newlink_to_enforced_ms": ms_summary(&react),
            "ip_link_add_to_enforced_ms": ms_summary(&end_to_end),
            "leak": leak,
        }))
    })();
    stop.store(true, Ordering::SeqCst);
    let _ = handle.join();
    let _ = std::fs::remove_file(&audit);
    drop(pin);
    result
}

/// The markdown section (figures in ms).
pub fn markdown(s: &mut String, v: &Value) {
    use std::fmt::Write;
    let _ = writeln!(s, "## Control plane: ports that come and go\n");
    let r = &v["newlink_to_enforced_ms"];
    let e = &v["ip_link_add_to_enforced_ms"];
    let _ = writeln!(
        s,
        "{} veth creations: RTM_NEWLINK received -> bound and attached: median {} ms, p99 {} ms (max {}); \
         from spawning `ip link add`: median {} ms, p99 {} ms.\n",
        v["creations"], r["median"], r["p99"], r["max"], e["median"], e["p99"]
    );
    let _ = writeln!(
        s,
        "| sender starts after `ip link set up` | trials | spoofed frames sent | leaked | enforced before `up` (median ms) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for l in v["leak"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} ms{} | {} | {} | {} | {} |",
            l["delay_ms"],
            if l["one_ip_batch"] == true {
                " (create, bridge, up in one `ip -batch`)"
            } else {
                ""
            },
            l["trials"],
            l["spoofed_sent"],
            l["spoofed_leaked"],
            l["enforced_before_up_ms"]["median"]
        );
    }
    let _ = writeln!(s);
}
