//! Acceptance tests for storm control (docs/policy.md section 7): VMs in
//! their own network namespaces behind a bridge, the host-side veths guarded
//! by portguard.
//!
//! A flooding VM sends broadcast / multicast / ARP-request frames at about
//! 20k frames/s for 4 s from an AF_PACKET socket; a second VM counts the
//! flood frames that reach it. The measured rate, (received - burst) /
//! flood duration, must be within 10% of the configured rate, every flood
//! frame that did not get through must be counted under the class's
//! `*_limit` reason, and unicast (real `ping`) between the VMs, including
//! from the flooding VM, must see no loss meanwhile. Another test runs
//! ordinary traffic (ping, arping, ndisc6, neighbour-table flushes forcing
//! ARP/ND) with the default limits and expects zero `*_limit` drops.
//!
//! Floods in this binary run one at a time (a process-wide lock) so that two
//! of them never share the 2 CPUs of a CI machine.
//!
//! Needs root (namespaces, XDP). Run e.g.
//! `PORTGUARD_BIN=target/debug/portguard cargo test -p portguard-tests --test integration storm_netns::`.
use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd, OwnedFd},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use portguard_tests::{
    cli::PortCounters,
    frames::{self as f, Mac},
    netns::{enter_netns, packet_socket, send_frame, Lab, Vm, VmSpec},
};

const FLOOD_PPS: u64 = 20_000;
const FLOOD_SECS: f64 = 4.0;
const LIMIT_PPS: u64 = 500;
const LIMIT_BURST: u64 = 50;
/// Nobody owns it: ARP requests for it get no answer.
const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

// ------------------------------------------------------------------ CLI helpers

fn guard(lab: &Lab, vm: &Vm, extra: &[&str]) {
    let m = f::mac_str(&vm.mac());
    let mut args = vec!["bind".to_string(), vm.host_if.clone(), "--mac".into(), m];
    for (a, _) in &vm.spec.v4 {
        args.push("--ip".into());
        args.push(a.to_string());
    }
    if vm.spec.ipv6 {
        for (a, _) in &vm.spec.v6 {
            args.push("--ip".into());
            args.push(a.to_string());
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.pg_ok(&args);
    lab.pg_ok(&["attach", &vm.host_if]);
}

fn delta(before: &PortCounters, after: &PortCounters, reason: &str) -> u64 {
    after.dropped(reason) - before.dropped(reason)
}

// ------------------------------------------------------------------ AF_PACKET (private)

/// Sends one frame; false on an error or a short send (counted as failed).
fn send_one(fd: &OwnedFd, ifindex: i32, frame: &[u8]) -> bool {
    send_frame(fd, ifindex, frame).is_ok_and(|n| n == frame.len())
}

#[derive(Debug, Clone, Copy)]
struct FloodResult {
    sent: u64,
    failed: u64,
    /// From the first to the last frame sent.
    elapsed: Duration,
}

/// Starts sending `frame` from `vm` at `pps` for `secs` (paced every 200 µs).
/// The returned channel fires once the socket is ready and sending begins.
fn start_flood(
    vm: &Vm,
    frame: Vec<u8>,
    pps: u64,
    secs: f64,
) -> (JoinHandle<FloodResult>, mpsc::Receiver<()>) {
    let (ns, iface) = (vm.ns.clone(), vm.iface.clone());
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        enter_netns(&ns).expect("setns");
        let (fd, ifindex) = packet_socket(&iface, 0).expect("AF_PACKET socket");
        let dur = Duration::from_secs_f64(secs);
        let (mut sent, mut failed) = (0u64, 0u64);
        let start = Instant::now();
        let _ = tx.send(());
        let mut last = start;
        loop {
            let el = start.elapsed();
            if el >= dur {
                break;
            }
            let target = (el.as_secs_f64() * pps as f64) as u64 + 1;
            while sent + failed < target {
                if send_one(&fd, ifindex, &frame) {
                    sent += 1;
                } else {
                    failed += 1;
                }
                last = Instant::now();
            }
            thread::sleep(Duration::from_micros(200));
        }
        FloodResult {
            sent,
            failed,
            elapsed: last - start,
        }
    });
    (h, rx)
}

/// Sends `frames` once, back to back, from `vm`.
fn send_frames(vm: &Vm, frames: Vec<Vec<u8>>) -> u64 {
    let (ns, iface) = (vm.ns.clone(), vm.iface.clone());
    thread::spawn(move || {
        enter_netns(&ns).expect("setns");
        let (fd, ifindex) = packet_socket(&iface, 0).expect("AF_PACKET socket");
        frames
            .iter()
            .filter(|fr| send_one(&fd, ifindex, fr))
            .count() as u64
    })
    .join()
    .unwrap()
}

const SOL_PACKET: i32 = 263;
const PACKET_STATISTICS: i32 = 6;

#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// Counts frames matching a predicate arriving at an interface, with a large
/// socket buffer; reports frames the socket itself dropped.
struct CountCap {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(u64, u64)>>,
}

impl CountCap {
    fn start(vm: &Vm, pred: impl Fn(&[u8]) -> bool + Send + 'static) -> CountCap {
        let (ns, iface) = (vm.ns.clone(), vm.iface.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            enter_netns(&ns).expect("setns");
            let (fd, ifindex) =
                packet_socket(&iface, libc::ETH_P_ALL as u16).expect("AF_PACKET socket");
            // SAFETY: setsockopt with properly sized values.
            unsafe {
                let big: libc::c_int = 16 << 20;
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &big as *const _ as *const libc::c_void,
                    4,
                );
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 20_000,
                };
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                );
            }
            let _ = tx.send(());
            let mut n = 0u64;
            let mut buf = vec![0u8; 65536];
            loop {
                // SAFETY: valid buffers.
                let (len, sll) = unsafe {
                    let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                    let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    let len = libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        0,
                        &mut sll as *mut _ as *mut libc::sockaddr,
                        &mut sl,
                    );
                    (len, sll)
                };
                if len < 0 {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                if sll.sll_ifindex != ifindex || sll.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                if pred(&buf[..len as usize]) {
                    n += 1;
                }
            }
            let mut st = TpacketStats::default();
            let mut sl = std::mem::size_of::<TpacketStats>() as u32;
            // SAFETY: out-parameter of the right size.
            unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    SOL_PACKET,
                    PACKET_STATISTICS,
                    &mut st as *mut _ as *mut libc::c_void,
                    &mut sl,
                )
            };
            (n, st.tp_drops as u64)
        });
        rx.recv().expect("capture thread died");
        CountCap {
            stop,
            handle: Some(handle),
        }
    }

    /// Waits `settle`, stops, returns (matching frames, frames the socket dropped).
    fn finish(mut self, settle: Duration) -> (u64, u64) {
        thread::sleep(settle);
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("capture thread panicked")
    }
}

impl Drop for CountCap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ------------------------------------------------------------------ processes

/// A command running inside a VM (`ip netns exec`), killed on drop if still running.
struct Bg(Option<Child>, String);

impl Bg {
    fn spawn(vm: &Vm, argv: &[&str]) -> Bg {
        let child = Command::new("ip")
            .args(["netns", "exec", &vm.ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        Bg(Some(child), format!("{argv:?} in {}", vm.ns))
    }

    fn wait(mut self) -> (Output, String) {
        let o = self.0.take().unwrap().wait_with_output().expect("wait");
        (o, self.1.clone())
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `ping` that must have lost nothing.
fn assert_no_loss(p: Bg) {
    let (o, what) = p.wait();
    let t = text(&o);
    assert!(
        o.status.success() && t.contains(" 0% packet loss"),
        "{what}: loss during the flood:\n{t}"
    );
}

fn ping_bg(from: &Vm, to: Ipv4Addr, count: u32) -> Bg {
    let c = count.to_string();
    Bg::spawn(
        from,
        &["ping", "-c", &c, "-i", "0.25", "-W", "3", &to.to_string()],
    )
}

/// One ping each way so ARP entries exist before a flood starts.
fn warm_up(vms: &[&Vm]) {
    for a in vms {
        for b in vms {
            if a.ns != b.ns {
                let o = a.run(&["ping", "-c", "1", "-W", "3", &b.ip4().to_string()]);
                assert!(
                    o.status.success(),
                    "warm-up ping {} -> {}: {}",
                    a.ns,
                    b.ip4(),
                    text(&o)
                );
            }
        }
    }
}

// ------------------------------------------------------------------ flood scenario

struct Flood<'a> {
    /// Limit flags for the flooding VM's binding.
    flags: &'a [&'a str],
    /// The flood frame (sent by vm1).
    frame: Vec<u8>,
    /// The drop reason flood frames over the limit must be counted under.
    reason: &'a str,
    /// Recognizes a flood frame at the receiver.
    is_flood: fn(&[u8]) -> bool,
    /// A frame of the same class vm2 sends during the flood: its own budget
    /// must be untouched by vm1's flood.
    neighbour_frame: fn(&Vm) -> Vec<u8>,
    is_neighbour: fn(&[u8]) -> bool,
}

/// vm1 floods, vm3 counts; vm2 <-> vm3 and vm1 -> vm2 ping meanwhile; vm2
/// sends a few frames of the same class that must all reach vm3.
fn run_flood(sc: Flood) {
    let _serial = portguard_tests::serial::heavy();
    let lab = Lab::new(3);
    let (a, b, c) = (lab.vm(1), lab.vm(2), lab.vm(3));
    guard(&lab, a, sc.flags);
    guard(&lab, b, &[]);
    guard(&lab, c, &[]);
    warm_up(&[a, b, c]);

    let before = lab.counters(a);
    let cap = CountCap::start(c, sc.is_flood);
    let ncap = CountCap::start(c, sc.is_neighbour);
    let (flood, started) = start_flood(a, sc.frame.clone(), FLOOD_PPS, FLOOD_SECS);
    started.recv().expect("flood thread died");
    thread::sleep(Duration::from_millis(200));
    let pings = [
        ping_bg(b, c.ip4(), 12),
        ping_bg(c, b.ip4(), 12),
        ping_bg(a, b.ip4(), 12),
    ];
    thread::sleep(Duration::from_millis(500));
    let neighbour_frames: Vec<Vec<u8>> = (0..20).map(|_| (sc.neighbour_frame)(b)).collect();
    let n_sent = send_frames(b, neighbour_frames);
    let res = flood.join().expect("flood thread panicked");
    let (got, sock_drops) = cap.finish(Duration::from_millis(500));
    let (n_got, _) = ncap.finish(Duration::from_millis(0));
    for p in pings {
        assert_no_loss(p);
    }
    let after = lab.counters(a);

    let secs = res.elapsed.as_secs_f64();
    let rate = (got as f64 - LIMIT_BURST as f64) / secs;
    let limited = delta(&before, &after, sc.reason);
    eprintln!(
        "{}: sent {} ({} failed, {:.0}/s over {secs:.2}s), received {got} (socket drops {sock_drops}), \
         measured {rate:.1}/s, {} = {limited}",
        sc.reason,
        res.sent,
        res.failed,
        res.sent as f64 / secs,
        sc.reason
    );
    assert_eq!(
        sock_drops, 0,
        "the receiver's capture socket dropped frames; the count is not reliable"
    );
    // The limit is only tested if the offered load is far above it (a busy
    // CI machine may not reach FLOOD_PPS; 10x the limit is plenty).
    assert!(
        res.sent as f64 >= 10.0 * LIMIT_PPS as f64 * secs,
        "the flood was too weak to test anything: {res:?}"
    );
    assert!(
        (rate - LIMIT_PPS as f64).abs() <= 0.1 * LIMIT_PPS as f64,
        "{}: {got} flood frames reached the receiver in {secs:.2}s: (got - burst {LIMIT_BURST}) / s = {rate:.1}, \
         want {LIMIT_PPS} +- 10%",
        sc.reason
    );
    // Every flood frame the program saw either passed (and reached the
    // receiver) or was counted under the class's limit. A frame can only
    // go missing before the hook (veth queue), never be double counted.
    assert!(
        limited + got <= res.sent,
        "{}: {limited} limited + {got} received > {} sent",
        sc.reason,
        res.sent
    );
    assert!(
        (limited + got) as f64 >= 0.99 * res.sent as f64,
        "{}: only {limited} limited + {got} received of {} sent",
        sc.reason,
        res.sent
    );
    for r in ["bcast_limit", "mcast_limit", "arp_limit"] {
        if r != sc.reason {
            assert_eq!(
                delta(&before, &after, r),
                0,
                "{r} moved during a {} flood: {after:?}",
                sc.reason
            );
        }
    }
    // Nothing else of vm1's was dropped (its pings and ARP went through).
    assert_eq!(
        after.total_dropped() - before.total_dropped(),
        limited,
        "vm1 dropped more than the flood: {before:?} -> {after:?}"
    );
    // The neighbour's own frames of the same class were not limited by vm1's flood.
    assert_eq!(n_sent, 20);
    assert_eq!(
        n_got, 20,
        "vm2's {} frames sent during vm1's flood: only {n_got} of 20 arrived",
        sc.reason
    );
    let b_after = lab.counters(b);
    assert_eq!(b_after.total_dropped(), 0, "vm2: {b_after:?}");
}

fn has_marker(fr: &[u8], marker: &[u8]) -> bool {
    fr.windows(marker.len()).any(|w| w == marker)
}

const VM1: Mac = [0x02, 0, 0, 0, 0, 1];
const VM2: Mac = [0x02, 0, 0, 0, 0, 2];

fn udp_to(dst_mac: Mac, src: &Vm, dst: Ipv4Addr, marker: &[u8]) -> Vec<u8> {
    f::eth(
        dst_mac,
        src.mac(),
        f::ETH_P_IP,
        &f::udp4(src.ip4(), dst, 40000, 9, marker),
    )
}

const MCAST_GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);

// ------------------------------------------------------------------ tests

/// Broadcast flood at ~20k/s for 4 s with `--broadcast-pps 500
/// --broadcast-burst 50`: about 500/s reach the neighbour, the rest are
/// bcast_limit; pings (also from the flooding VM) lose nothing.
#[test]
fn broadcast_flood_is_cut_to_the_configured_rate() {
    let lab_vm1 = VmSpec::numbered(1);
    let frame = f::eth(
        f::BROADCAST,
        lab_vm1.mac,
        f::ETH_P_IP,
        &f::udp4(
            lab_vm1.v4[0].0,
            Ipv4Addr::BROADCAST,
            40000,
            9,
            b"pgt-flood-bcast",
        ),
    );
    run_flood(Flood {
        flags: &["--broadcast-pps", "500", "--broadcast-burst", "50"],
        frame,
        reason: "bcast_limit",
        is_flood: |fr| fr[6..12] == VM1 && has_marker(fr, b"pgt-flood-bcast"),
        neighbour_frame: |b| udp_to(f::BROADCAST, b, Ipv4Addr::BROADCAST, b"pgt-neigh-bcast"),
        is_neighbour: |fr| fr[6..12] == VM2 && has_marker(fr, b"pgt-neigh-bcast"),
    });
}

/// Multicast flood (IPv4 239.1.2.3) with `--multicast-pps 500
/// --multicast-burst 50`: cut to ~500/s, the rest mcast_limit.
#[test]
fn multicast_flood_is_cut_to_the_configured_rate() {
    let s = VmSpec::numbered(1);
    let frame = f::eth(
        f::ipv4_mcast_mac(MCAST_GROUP),
        s.mac,
        f::ETH_P_IP,
        &f::udp4(s.v4[0].0, MCAST_GROUP, 40000, 9, b"pgt-flood-mcast"),
    );
    run_flood(Flood {
        flags: &["--multicast-pps", "500", "--multicast-burst", "50"],
        frame,
        reason: "mcast_limit",
        is_flood: |fr| fr[6..12] == VM1 && has_marker(fr, b"pgt-flood-mcast"),
        neighbour_frame: |b| {
            udp_to(
                f::ipv4_mcast_mac(MCAST_GROUP),
                b,
                MCAST_GROUP,
                b"pgt-neigh-mcast",
            )
        },
        is_neighbour: |fr| fr[6..12] == VM2 && has_marker(fr, b"pgt-neigh-mcast"),
    });
}

/// ARP-request flood (who-has 192.0.2.250) with `--arp-pps 500
/// --arp-burst 50`: cut to ~500/s, the rest arp_limit.
#[test]
fn arp_request_flood_is_cut_to_the_configured_rate() {
    let s = VmSpec::numbered(1);
    let frame = f::arp_frame(f::ARP_REQUEST, s.mac, s.v4[0].0, f::ZERO_MAC, NOBODY);
    fn is_arp_for(fr: &[u8], sha: Mac, tpa: Ipv4Addr) -> bool {
        fr.len() >= 42
            && fr[12..14] == [0x08, 0x06]
            && fr[14 + 8..14 + 14] == sha
            && fr[14 + 24..14 + 28] == tpa.octets()
    }
    run_flood(Flood {
        flags: &["--arp-pps", "500", "--arp-burst", "50"],
        frame,
        reason: "arp_limit",
        is_flood: |fr| is_arp_for(fr, VM1, NOBODY),
        neighbour_frame: |b| {
            f::arp_frame(
                f::ARP_REQUEST,
                b.mac(),
                b.ip4(),
                f::ZERO_MAC,
                Ipv4Addr::new(192, 0, 2, 251),
            )
        },
        is_neighbour: |fr| is_arp_for(fr, VM2, Ipv4Addr::new(192, 0, 2, 251)),
    });
}

/// With the default limits, ordinary traffic never trips storm control:
/// IPv4 and IPv6 pings between three VMs, arping, ndisc6, and neighbour
/// tables flushed every half second to force ARP and ND (broadcast ARP
/// requests, multicast NS) for about 5 s. No drop of any kind.
#[test]
fn default_limits_never_trip_under_normal_use() {
    for tool in ["ping", "arping", "ndisc6"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is not installed (apt-get install -y iputils-ping arping ndisc6)"
        );
    }
    let lab = Lab::with_vms((1..=3).map(|i| VmSpec::numbered(i).with_ipv6()).collect());
    let vms: Vec<&Vm> = lab.vms.iter().collect();
    for vm in &vms {
        guard(&lab, vm, &[]);
    }
    let before: Vec<PortCounters> = vms.iter().map(|vm| lab.counters(vm)).collect();
    let mut bg = Vec::new();
    for (i, a) in vms.iter().enumerate() {
        let b = vms[(i + 1) % vms.len()];
        bg.push(ping_bg(a, b.ip4(), 20));
        bg.push(Bg::spawn(
            a,
            &[
                "ping",
                "-6",
                "-c",
                "20",
                "-i",
                "0.25",
                "-W",
                "3",
                &b.ip6().to_string(),
            ],
        ));
        bg.push(Bg::spawn(
            a,
            &[
                "arping",
                "-c",
                "5",
                "-w",
                "8",
                "-I",
                "eth0",
                &b.ip4().to_string(),
            ],
        ));
    }
    let start = Instant::now();
    let mut nd = 0;
    while start.elapsed() < Duration::from_secs(5) {
        for (i, a) in vms.iter().enumerate() {
            let b = vms[(i + 2) % vms.len()];
            let _ = a.run(&["ip", "neigh", "flush", "dev", "eth0"]);
            let _ = a.run(&["ip", "-6", "neigh", "flush", "dev", "eth0"]);
            let o = a.run(&[
                "ndisc6",
                "-q",
                "-r",
                "3",
                "-w",
                "1000",
                &b.ip6().to_string(),
                "eth0",
            ]);
            if o.status.success() {
                nd += 1;
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    for p in bg {
        let (o, what) = p.wait();
        assert!(o.status.success(), "{what} failed:\n{}", text(&o));
    }
    assert!(nd > 0, "ndisc6 never got an answer");
    for (vm, before) in vms.iter().zip(&before) {
        let after = lab.counters(vm);
        for r in ["bcast_limit", "mcast_limit", "arp_limit"] {
            assert_eq!(
                delta(before, &after, r),
                0,
                "{}: {r} under normal use: {after:?}",
                vm.host_if
            );
        }
        assert_eq!(
            after.total_dropped(),
            before.total_dropped(),
            "{}: drops under normal use: {before:?} -> {after:?}",
            vm.host_if
        );
        assert!(
            after.passed.0 > before.passed.0 + 50,
            "{}: {after:?}",
            vm.host_if
        );
    }
}
