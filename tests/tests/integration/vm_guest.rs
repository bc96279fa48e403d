//! A real VM behind a tap: a QEMU guest (TCG, virtio-net, no vhost) whose
//! tap port portguard guards with the default `attach`, checked from inside
//! the guest: legit ping, IP spoofing, ARP spoofing, a MAC change, a 60 KB
//! ping (fragments) and a multi-megabyte TCP transfer in 64 KiB TSO frames
//! (repeated with `--mode native` and `--mode generic`), each against the
//! port's counters by reason and what the peer received.
//!
//! Ignored in `cargo test`: it needs the guest image, which
//! `cargo xtask test --vm` builds (cached) before running it with
//! `--ignored`; without the image it fails rather than passing silently.
//! Takes about a minute (guest boot under TCG, 10-25 s, included).
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use portguard_tests::{
    cli::{self, assert_deltas, PortCounters},
    frames,
    netns::{self, Lab, VmSpec},
    vm::Guest,
};

const TAP: &str = "tap1";
const GUEST_MAC: &str = "02:00:00:00:00:01";
const GUEST_IP: &str = "192.0.2.1";
const SPOOF_IP: &str = "203.0.113.66";
const SPOOF_MAC: &str = "02:00:00:00:00:99";
/// Bytes the guest serves over HTTP.
const BLOB: usize = 8 << 20;

struct Port<'a> {
    lab: &'a Lab,
}

impl Port<'_> {
    fn counters(&self) -> PortCounters {
        cli::counters(&self.lab.host, &self.lab.pin_dir, TAP)
    }
}

/// Frames the peer received whose IPv4 source (or ARP sender IP) is `ip`,
/// or whose Ethernet source is `mac`.
fn seen_from(frames_in: &[Vec<u8>], ip: [u8; 4], mac: [u8; 6]) -> usize {
    frames_in
        .iter()
        .filter(|f| {
            f.len() >= 14
                && (f[6..12] == mac
                    || (f[12..14] == [0x08, 0x00] && f.len() >= 30 && f[26..30] == ip)
                    || (f[12..14] == [0x08, 0x06] && f.len() >= 32 && f[28..32] == ip))
        })
        .count()
}

/// HTTP GET of /blob from the guest, from inside the peer's namespace;
/// returns the body length.
fn fetch_blob(peer_ns: &str) -> usize {
    let ns = peer_ns.to_string();
    std::thread::spawn(move || -> usize {
        netns::enter_netns(&ns).expect("enter peer netns");
        let addr: SocketAddr = format!("{GUEST_IP}:80").parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(20)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.write_all(b"GET /blob HTTP/1.0\r\nHost: guest\r\n\r\n")
            .unwrap();
        let mut buf = Vec::with_capacity(BLOB + 1024);
        s.read_to_end(&mut buf).expect("read the HTTP response");
        let head_end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP header end");
        let head = String::from_utf8_lossy(&buf[..head_end]);
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200"),
            "{head}"
        );
        buf.len() - head_end - 4
    })
    .join()
    .expect("fetch thread panicked")
}

/// Fetches the blob from the peer: all of it arrives, nothing is dropped,
/// and the frames that passed average well above 1514 bytes.
fn transfer(port: &Port, peer_ns: &str, what: &str) {
    let c0 = port.counters();
    let got = fetch_blob(peer_ns);
    let c1 = port.counters();
    assert_eq!(got, BLOB, "{what}: the peer received a short body");
    assert_deltas(&format!("TCP transfer, {what}"), &c0, &c1, None, &[]);
    let (pk, by) = (c1.passed.0 - c0.passed.0, c1.passed.1 - c0.passed.1);
    let avg = by as f64 / pk.max(1) as f64;
    eprintln!(
        "vm: TCP transfer, {what}: {got} bytes, {pk} frames passed, {by} bytes, {avg:.0} bytes/frame"
    );
    assert!(
        by >= BLOB as u64,
        "{what}: passed bytes {by} < the body {BLOB}"
    );
    // Without TSO every frame would be <= 1514 bytes: a larger average means
    // the guest's 64 KiB GSO frames reached the program whole and passed.
    assert!(
        avg > 1514.0 * 4.0,
        "{what}: no TSO frames: {avg:.0} bytes per passed frame"
    );
}

#[test]
#[ignore = "boots a QEMU guest: run by `cargo xtask test --vm`"]
fn qemu_guest_on_a_tap() {
    netns::must(&["sh", "-c", "command -v qemu-system-x86_64"]);
    // Fail before creating anything when the image is missing.
    portguard_tests::vm::image();
    // The peer ("VM2") on a veth of the same bridge, unguarded.
    let lab = Lab::with_vms(vec![VmSpec::numbered(2)]);
    let peer = lab.vm(1);
    let peer_mac = frames::mac_str(&peer.mac());
    // The guest's port: a persistent tap with virtio-net headers (what
    // libvirt creates), on the bridge, guarded before the VM starts.
    netns::must(&[
        "ip", "-n", &lab.host, "tuntap", "add", "dev", TAP, "mode", "tap", "vnet_hdr",
    ]);
    netns::must(&["ip", "-n", &lab.host, "link", "set", TAP, "master", "br0"]);
    netns::must(&["ip", "-n", &lab.host, "link", "set", TAP, "up"]);
    lab.pg_ok(&["bind", TAP, "--mac", GUEST_MAC, "--ip", GUEST_IP]);
    let attach = lab.pg_ok(&["attach", TAP]);
    eprintln!(
        "vm: default attach on a tap: {}",
        format!("{}{}", cli::stdout(&attach), cli::stderr(&attach)).trim()
    );
    let show = cli::show_all(&lab.host, &lab.pin_dir);
    let mode = cli::entry(&show, TAP).expect("tap in show")["attach_mode"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    eprintln!("vm: attach_mode {mode}");
    // The peer never needs ARP for the guest (keeps ARP out of the counts).
    peer.run(&[
        "ip",
        "neigh",
        "replace",
        GUEST_IP,
        "lladdr",
        GUEST_MAC,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);

    let mut g = Guest::boot(&lab.host, TAP, GUEST_MAC, &lab.id);
    let port = Port { lab: &lab };
    g.ok(
        &format!(
            "ip link set eth0 up && ip addr add {GUEST_IP}/24 dev eth0 && arp -s 192.0.2.2 {peer_mac}"
        ),
        20,
    );

    // 1. Legit ping: passes, nothing dropped.
    let c0 = port.counters();
    let out = g.ok("ping -c 3 -W 10 192.0.2.2", 60);
    let c1 = port.counters();
    assert_deltas("legit ping", &c0, &c1, None, &[]);
    assert!(c1.passed.0 - c0.passed.0 >= 3, "legit ping: {c0:?} {c1:?}");
    eprintln!("vm: legit ping ok\n{out}");

    // 2. A 60 KB ping: 41 fragments per echo request, all legitimate.
    let c0 = port.counters();
    g.ok("ping -c 2 -W 20 -s 60000 192.0.2.2", 90);
    let c1 = port.counters();
    assert_deltas("60 KB ping", &c0, &c1, None, &[]);
    assert!(
        c1.passed.0 - c0.passed.0 >= 2 * 41,
        "60 KB ping: fewer passed frames than fragments: {c0:?} {c1:?}"
    );
    eprintln!("vm: 60 KB ping ok");

    // 3. A multi-megabyte TCP transfer from the guest (busybox httpd sends
    // full 64 KiB TSO frames through virtio-net and the tap).
    g.ok(
        &format!(
            "dd if=/dev/zero of=/www/blob bs=65536 count={} 2>/dev/null && httpd -p 80 -h /www",
            BLOB / 65536
        ),
        60,
    );
    transfer(&port, &peer.ns, &format!("default attach ({mode})"));
    // The same in each explicit mode (re-attached; the binding stays).
    for m in ["native", "generic"] {
        lab.pg_ok(&["detach", TAP]);
        lab.pg_ok(&["attach", TAP, "--mode", m]);
        let show = cli::show_all(&lab.host, &lab.pin_dir);
        assert_eq!(
            cli::entry(&show, TAP).expect("tap in show")["attach_mode"],
            m,
            "attach --mode {m}"
        );
        transfer(&port, &peer.ns, m);
    }
    lab.pg_ok(&["detach", TAP]);
    lab.pg_ok(&["attach", TAP]);

    // 4. IP spoofing: the guest adds a foreign address and pings from it.
    let spoof_ip: [u8; 4] = frames::v4(SPOOF_IP).octets();
    let spoof_mac = frames::mac(SPOOF_MAC);
    g.ok(&format!("ip addr add {SPOOF_IP}/32 dev eth0"), 20);
    let cap = peer.capture();
    let c0 = port.counters();
    let (rc, _) = g.run(&format!("ping -c 3 -W 2 -I {SPOOF_IP} 192.0.2.2"), 60);
    let c1 = port.counters();
    assert_ne!(rc, 0, "a ping from a spoofed source got answers");
    assert_deltas("IP spoof", &c0, &c1, None, &[("ipv4_spoof", 3)]);

    // 5. ARP spoofing: requests claiming the foreign address.
    let c0 = port.counters();
    let (rc, _) = g.run(
        &format!("arping -c 2 -w 3 -I eth0 -s {SPOOF_IP} 192.0.2.2"),
        60,
    );
    let c1 = port.counters();
    assert_ne!(rc, 0, "a spoofed ARP request got a reply");
    assert_deltas("ARP spoof", &c0, &c1, None, &[("arp_spoof", 2)]);
    let got = cap.finish();
    assert_eq!(
        seen_from(&got, spoof_ip, spoof_mac),
        0,
        "the peer received spoofed frames"
    );
    g.ok(&format!("ip addr del {SPOOF_IP}/32 dev eth0"), 20);

    // 6. MAC change inside the guest: everything it sends is mac_spoof.
    let cap = peer.capture();
    let c0 = port.counters();
    g.ok(&format!("ip link set eth0 address {SPOOF_MAC}"), 20);
    let (rc, _) = g.run("ping -c 3 -W 2 192.0.2.2", 60);
    let c1 = port.counters();
    assert_ne!(rc, 0, "pings from a changed MAC got answers");
    assert_deltas("MAC change", &c0, &c1, None, &[("mac_spoof", 3)]);
    let got = cap.finish();
    assert_eq!(
        seen_from(&got, [0; 4], spoof_mac),
        0,
        "the peer received frames from the changed MAC"
    );

    // Back to the bound MAC: traffic flows again.
    g.ok(&format!("ip link set eth0 address {GUEST_MAC}"), 20);
    let c0 = port.counters();
    g.ok("ping -c 2 -W 10 192.0.2.2", 60);
    let c1 = port.counters();
    assert_deltas("ping after restoring the MAC", &c0, &c1, None, &[]);
    eprintln!("vm: all checks passed");
    drop(g);
}
