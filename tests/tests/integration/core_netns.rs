//! Acceptance tests for "portguard core": VMs in their own network
//! namespaces behind a bridge, the host-side veths guarded by portguard.
//! Frames are crafted and sent from a VM netns over AF_PACKET; delivery is
//! checked by capturing on another VM's interface; counters are read with
//! `portguard stats --json` (each CLI call is its own process, so every
//! check here also shows that state and enforcement outlive the CLI).
//!
//! Needs root (namespaces, XDP). Run through `cargo xtask test`.
use std::net::Ipv4Addr;

use portguard_tests::{
    cli::{self, PortCounters},
    frames::{self as f, Mac},
    netns::{send_and_count, Lab, Vm, VmSpec},
};
use serde_json::Value;

/// A destination address no VM owns: VMs drop such frames silently
/// (forwarding is off), so sending never provokes replies that would
/// disturb the counters.
const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

fn attach(lab: &Lab, vm: &Vm, mode: &str) {
    lab.pg_ok(&["attach", &vm.host_if, "--mode", mode]);
}

fn bind(lab: &Lab, vm: &Vm, extra: &[&str]) {
    let m = f::mac_str(&vm.mac());
    let ip = vm.ip4().to_string();
    let mut args = vec!["bind", vm.host_if.as_str(), "--mac", &m, "--ip", &ip];
    args.extend_from_slice(extra);
    lab.pg_ok(&args);
}

/// Lab with `n` VMs, each attached in `mode` and bound to its own MAC and IPv4 address.
fn guarded(n: u8, mode: &str) -> Lab {
    let lab = Lab::new(n);
    for vm in &lab.vms {
        attach(&lab, vm, mode);
        bind(&lab, vm, &[]);
    }
    lab
}

/// Unicast UDP from `src` (MAC `smac`, IPv4 `sip`) to vm `to`'s MAC, IP dst NOBODY.
fn udp_frame(smac: Mac, sip: Ipv4Addr, to: &Vm) -> Vec<u8> {
    f::eth(
        to.mac(),
        smac,
        f::ETH_P_IP,
        &f::udp4(sip, NOBODY, 40000, 9, b"portguard test payload"),
    )
}

/// Sends `frames` from vm `a` and returns how many arrived unchanged at vm `b`.
fn deliver(a: &Vm, b: &Vm, frames: &[Vec<u8>]) -> usize {
    send_and_count(&a.ns, &a.iface, &b.ns, &b.iface, frames)
}

fn n_copies(frame: Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    vec![frame; n]
}

/// Every delta of `after - before` except the listed ones must be zero.
fn assert_only(before: &PortCounters, after: &PortCounters, passed: u64, dropped: &[(&str, u64)]) {
    assert_eq!(
        after.passed.0 - before.passed.0,
        passed,
        "passed delta (before {before:?}, after {after:?})"
    );
    for (reason, p, _) in &after.dropped {
        let want = dropped.iter().find(|d| d.0 == reason).map_or(0, |d| d.1);
        assert_eq!(
            p - before.dropped(reason),
            want,
            "dropped.{reason} delta (before {before:?}, after {after:?})"
        );
    }
    for (reason, _) in dropped {
        assert!(
            after.dropped.iter().any(|d| d.0 == *reason),
            "stats --json has no dropped.{reason}"
        );
    }
}

/// Checks one class of bad frames: none delivered, the reason counter of
/// vm1 grows by exactly the number sent, nothing else moves; then a
/// legitimate frame still gets through.
fn expect_drops(lab: &Lab, reason: &str, frames: Vec<Vec<u8>>) {
    let (a, b) = (lab.vm(1), lab.vm(2));
    let before = lab.counters(a);
    let got = deliver(a, b, &frames);
    let after = lab.counters(a);
    assert_eq!(
        got,
        0,
        "{reason}: {got} of {} bad frames were delivered",
        frames.len()
    );
    assert_only(&before, &after, 0, &[(reason, frames.len() as u64)]);
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(
        after.dropped_bytes(reason) - before.dropped_bytes(reason),
        bytes,
        "{reason}: dropped bytes"
    );
    let ok = udp_frame(a.mac(), a.ip4(), b);
    assert_eq!(
        deliver(a, b, &[ok]),
        1,
        "legitimate frame after {reason} drops"
    );
}

/// Real ping: true once 2 replies arrive within 5 s. A FAILED neighbour
/// entry left by an earlier, filtered attempt is flushed first so the kernel
/// resolves afresh instead of reporting "host unreachable".
fn ping(from: &Vm, to: &str) -> bool {
    from.run(&["ip", "neigh", "flush", "dev", "eth0"]);
    from.run(&["ping", "-c", "2", "-i", "0.2", "-w", "5", to])
        .status
        .success()
}

/// Real ping expected to fail: 3 echo requests, 1 s each.
fn no_ping(from: &Vm, to: &str) -> bool {
    !from
        .run(&["ping", "-c", "3", "-i", "0.3", "-W", "1", to])
        .status
        .success()
}

fn show_entry(lab: &Lab, iface: &str) -> Value {
    let v = cli::show_all(&lab.host, &lab.pin_dir);
    cli::entry(&v, iface)
        .unwrap_or_else(|| panic!("show --json has no {iface}: {v}"))
        .clone()
}

// ------------------------------------------------------------------ tests

#[test]
fn legitimate_ping_and_arp_cross_the_bridge() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    assert!(ping(a, &b.ip4().to_string()), "ping vm1 -> vm2");
    assert!(ping(b, &a.ip4().to_string()), "ping vm2 -> vm1");
    // arping exercises ARP request/reply explicitly.
    let o = a.run(&[
        "arping",
        "-c",
        "2",
        "-w",
        "3",
        "-I",
        "eth0",
        &b.ip4().to_string(),
    ]);
    assert!(
        o.status.success(),
        "arping: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for vm in [a, b] {
        let c = lab.counters(vm);
        assert!(c.passed.0 >= 4, "{}: passed {:?}", vm.host_if, c.passed);
        assert_eq!(c.total_dropped(), 0, "{}: {c:?}", vm.host_if);
    }
}

#[test]
fn ping_from_an_unbound_address_fails() {
    // vm1 uses 192.0.2.1 but is bound to 192.0.2.100: its ARP and IP are spoofed.
    let lab = Lab::new(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    for vm in [a, b] {
        attach(&lab, vm, "auto");
    }
    let m = f::mac_str(&a.mac());
    lab.pg_ok(&["bind", &a.host_if, "--mac", &m, "--ip", "192.0.2.100"]);
    bind(&lab, b, &[]);
    assert!(no_ping(a, &b.ip4().to_string()), "spoofing VM could ping");
    let c = lab.counters(a);
    assert!(c.dropped("arp_spoof") >= 1, "{c:?}");
}

#[test]
fn unbound_port_drops_everything() {
    let lab = Lab::new(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    attach(&lab, a, "auto");
    let frames = vec![
        udp_frame(a.mac(), a.ip4(), b),
        f::arp_frame(f::ARP_REQUEST, a.mac(), a.ip4(), f::ZERO_MAC, b.ip4()),
        f::dhcp_discover(a.mac()),
    ];
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &frames), 0);
    let after = lab.counters(a);
    assert_only(&before, &after, 0, &[("unbound_port", 3)]);
    let e = show_entry(&lab, &a.host_if);
    assert_eq!(e["attached"], Value::Bool(true), "{e}");
    assert_eq!(e["bound"], Value::Bool(false), "{e}");

    // Bound: traffic flows. Unbound again: fail closed.
    bind(&lab, a, &[]);
    assert_eq!(deliver(a, b, &frames[..1]), 1);
    lab.pg_ok(&["unbind", &a.host_if]);
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &frames[..1]), 0);
    let after = lab.counters(a);
    assert_eq!(
        after.dropped("unbound_port") - before.dropped("unbound_port"),
        1
    );
}

#[test]
fn mac_spoof() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    expect_drops(
        &lab,
        "mac_spoof",
        vec![
            // another VM's MAC
            udp_frame(b.mac(), a.ip4(), b),
            // a made-up unicast MAC
            udp_frame(f::mac("02:de:ad:be:ef:01"), a.ip4(), b),
            // group bit set in the source
            udp_frame(f::mac("03:00:00:00:00:01"), a.ip4(), b),
            udp_frame(f::BROADCAST, a.ip4(), b),
            // ARP with a spoofed Ethernet source but honest ARP body
            f::eth(
                f::BROADCAST,
                f::mac("02:de:ad:be:ef:02"),
                f::ETH_P_ARP,
                &f::arp(f::ARP_REQUEST, a.mac(), a.ip4(), f::ZERO_MAC, b.ip4()),
            ),
        ],
    );
}

#[test]
fn vlan() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    let ip = f::udp4(a.ip4(), NOBODY, 40000, 9, b"tagged");
    expect_drops(
        &lab,
        "vlan",
        vec![
            f::vlan(b.mac(), a.mac(), 100, f::ETH_P_IP, &ip),
            f::vlan_tpid(b.mac(), a.mac(), f::ETH_P_8021AD, 100, f::ETH_P_IP, &ip),
            f::qinq(b.mac(), a.mac(), f::ETH_P_8021AD, 10, 20, f::ETH_P_IP, &ip),
        ],
    );
    // With --allow-vlan 100, VID 100 passes (inner frame checked), others don't.
    bind(&lab, a, &["--allow-vlan", "100"]);
    let ok = f::vlan(b.mac(), a.mac(), 100, f::ETH_P_IP, &ip);
    let before = lab.counters(a);
    let got = deliver(a, b, &[ok]);
    let after = lab.counters(a);
    assert_only(&before, &after, 1, &[]);
    assert_eq!(got, 1, "allowed VLAN 100");
    let before = lab.counters(a);
    let bad = vec![
        f::vlan(b.mac(), a.mac(), 101, f::ETH_P_IP, &ip),
        f::qinq(b.mac(), a.mac(), f::ETH_P_8021Q, 100, 100, f::ETH_P_IP, &ip),
    ];
    assert_eq!(deliver(a, b, &bad), 0);
    let spoofed_inner = f::vlan(
        b.mac(),
        a.mac(),
        100,
        f::ETH_P_IP,
        &f::udp4(f::v4("192.0.2.99"), NOBODY, 40000, 9, b"tagged"),
    );
    assert_eq!(deliver(a, b, &[spoofed_inner]), 0);
    let after = lab.counters(a);
    assert_only(&before, &after, 0, &[("vlan", 2), ("ipv4_spoof", 1)]);
}

#[test]
fn ipv4_spoof() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    expect_drops(
        &lab,
        "ipv4_spoof",
        vec![
            udp_frame(a.mac(), b.ip4(), b),
            udp_frame(a.mac(), f::v4("192.0.2.99"), b),
            udp_frame(a.mac(), f::v4("203.0.113.1"), b),
            udp_frame(a.mac(), Ipv4Addr::UNSPECIFIED, b),
            f::eth(
                b.mac(),
                a.mac(),
                f::ETH_P_IP,
                &f::icmp4_echo(f::v4("198.51.100.1"), b.ip4(), 1, 1, b"x"),
            ),
            // DHCP-client shape but to the wrong destination port
            f::eth(
                f::BROADCAST,
                a.mac(),
                f::ETH_P_IP,
                &f::udp4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 68, b"x"),
            ),
        ],
    );
}

#[test]
fn arp_spoof() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    expect_drops(
        &lab,
        "arp_spoof",
        vec![
            // sender hardware address is not the bound MAC
            f::eth(
                f::BROADCAST,
                a.mac(),
                f::ETH_P_ARP,
                &f::arp(f::ARP_REQUEST, b.mac(), a.ip4(), f::ZERO_MAC, b.ip4()),
            ),
            // sender protocol address is somebody else's
            f::arp_frame(f::ARP_REQUEST, a.mac(), b.ip4(), f::ZERO_MAC, b.ip4()),
            f::arp_frame(
                f::ARP_REPLY,
                a.mac(),
                f::v4("192.0.2.254"),
                b.mac(),
                b.ip4(),
            ),
            // a probe (spa 0.0.0.0) is only fine as a request
            f::arp_frame(
                f::ARP_REPLY,
                a.mac(),
                Ipv4Addr::UNSPECIFIED,
                b.mac(),
                b.ip4(),
            ),
        ],
    );
    // Legitimate ARP: request, reply, probe and gratuitous ARP.
    let good = vec![
        f::arp_frame(f::ARP_REQUEST, a.mac(), a.ip4(), f::ZERO_MAC, NOBODY),
        f::arp_frame(f::ARP_REPLY, a.mac(), a.ip4(), b.mac(), b.ip4()),
        f::arp_frame(
            f::ARP_REQUEST,
            a.mac(),
            Ipv4Addr::UNSPECIFIED,
            f::ZERO_MAC,
            f::v4("192.0.2.251"),
        ),
        f::arp_frame(f::ARP_REQUEST, a.mac(), a.ip4(), f::ZERO_MAC, a.ip4()),
    ];
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &good), 4);
    let after = lab.counters(a);
    assert_only(&before, &after, 4, &[]);
}

#[test]
fn ethertype() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    let lldp_like = f::eth(b.mac(), a.mac(), f::ETH_P_LLDP, &[0u8; 46]);
    expect_drops(
        &lab,
        "ethertype",
        vec![
            lldp_like.clone(),
            f::eth(b.mac(), a.mac(), 0x88b5, &[1u8; 46]),
            // 802.3 length field instead of an EtherType
            f::eth(b.mac(), a.mac(), 46, &[0x42u8; 46]),
            f::eth(f::BROADCAST, a.mac(), 0x8863, &[0u8; 46]), // PPPoE discovery
        ],
    );
    bind(&lab, a, &["--allow-ethertype", "0x88cc"]);
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &[lldp_like]), 1, "allowed EtherType 0x88cc");
    assert_eq!(
        deliver(a, b, &[f::eth(b.mac(), a.mac(), 0x88b5, &[1u8; 46])]),
        0
    );
    let after = lab.counters(a);
    assert_only(&before, &after, 1, &[("ethertype", 1)]);
}

#[test]
fn malformed() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    let good = f::udp4(a.ip4(), NOBODY, 40000, 9, b"0123456789");
    let mut bad_version = good.clone();
    bad_version[0] = 0x65;
    let mut short_ihl = good.clone();
    short_ihl[0] = 0x44;
    let mut total_too_long = good.clone();
    total_too_long[2..4].copy_from_slice(&200u16.to_be_bytes());
    f::fix_ipv4_checksum(&mut total_too_long);
    let mut total_below_ihl = good.clone();
    total_below_ihl[2..4].copy_from_slice(&16u16.to_be_bytes());
    f::fix_ipv4_checksum(&mut total_below_ihl);
    // UDP first fragment whose total length leaves no room for the UDP header
    let udp_cut = f::ipv4(a.ip4(), NOBODY, f::IPPROTO_UDP, &[0, 1, 0]);
    let arp_ok = f::arp(f::ARP_REQUEST, a.mac(), a.ip4(), f::ZERO_MAC, b.ip4());
    let mut arp_hlen = arp_ok.clone();
    arp_hlen[4] = 8;
    let mut arp_op = arp_ok.clone();
    arp_op[7] = 3;
    let mut arp_ptype = arp_ok.clone();
    arp_ptype[2..4].copy_from_slice(&0x86ddu16.to_be_bytes());
    expect_drops(
        &lab,
        "malformed",
        vec![
            f::eth(b.mac(), a.mac(), f::ETH_P_IP, &bad_version),
            f::eth(b.mac(), a.mac(), f::ETH_P_IP, &short_ihl),
            f::eth(b.mac(), a.mac(), f::ETH_P_IP, &total_too_long),
            f::eth(b.mac(), a.mac(), f::ETH_P_IP, &total_below_ihl),
            f::eth(b.mac(), a.mac(), f::ETH_P_IP, &udp_cut),
            // IPv4 header cut short (10 of 20 bytes)
            f::eth(b.mac(), a.mac(), f::ETH_P_IP, &good[..10]),
            f::eth(f::BROADCAST, a.mac(), f::ETH_P_ARP, &arp_hlen),
            f::eth(f::BROADCAST, a.mac(), f::ETH_P_ARP, &arp_op),
            f::eth(f::BROADCAST, a.mac(), f::ETH_P_ARP, &arp_ptype),
            f::eth(f::BROADCAST, a.mac(), f::ETH_P_ARP, &arp_ok[..20]),
            // 802.1Q with an allowed... no: VLAN not allowed is `vlan`; a cut tag
            // is only reachable with an allowed VLAN (see verdicts.rs).
        ],
    );
}

#[test]
fn padded_frames_use_the_ip_length() {
    // Ethernet padding after the IP packet is fine (end of payload = IP length).
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    let small = f::eth(
        b.mac(),
        a.mac(),
        f::ETH_P_IP,
        &f::udp4(a.ip4(), NOBODY, 40000, 9, b""),
    );
    let padded = f::pad_to(small, 60);
    let before = lab.counters(a);
    let got = deliver(a, b, &[padded]);
    let after = lab.counters(a);
    assert_only(&before, &after, 1, &[]);
    assert_eq!(got, 1, "padded frame delivered");
    assert_eq!(
        after.passed.1 - before.passed.1,
        60,
        "bytes = full frame length"
    );
}

#[test]
fn cidr_binding() {
    let mut s1 = VmSpec::numbered(1);
    s1.v4 = vec![(f::v4("198.51.100.5"), 24)];
    let mut s2 = VmSpec::numbered(2);
    s2.v4 = vec![(f::v4("198.51.100.20"), 24)];
    let lab = Lab::with_vms(vec![s1, s2]);
    let (a, b) = (lab.vm(1), lab.vm(2));
    for vm in [a, b] {
        attach(&lab, vm, "auto");
    }
    let m = f::mac_str(&a.mac());
    lab.pg_ok(&[
        "bind",
        &a.host_if,
        "--mac",
        &m,
        "--ip",
        "198.51.100.0/28",
        "--ip",
        "203.0.113.7",
    ]);
    bind(&lab, b, &[]);
    let e = show_entry(&lab, &a.host_if);
    let ips: Vec<&str> = e["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ips.contains(&"198.51.100.0/28"), "{e}");
    assert!(ips.contains(&"203.0.113.7"), "{e}");

    assert!(
        ping(a, "198.51.100.20"),
        "ping from an address inside the bound /28"
    );
    let dst = f::v4("198.51.100.200");
    let udp = |src: &str| {
        f::eth(
            b.mac(),
            a.mac(),
            f::ETH_P_IP,
            &f::udp4(f::v4(src), dst, 40000, 9, b"cidr"),
        )
    };
    let inside: Vec<_> = [
        "198.51.100.0",
        "198.51.100.1",
        "198.51.100.15",
        "203.0.113.7",
    ]
    .iter()
    .map(|s| udp(s))
    .collect();
    let outside: Vec<_> = [
        "198.51.100.16",
        "198.51.100.255",
        "203.0.113.6",
        "203.0.113.8",
        "192.0.2.1",
    ]
    .iter()
    .map(|s| udp(s))
    .collect();
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &inside), inside.len());
    assert_eq!(deliver(a, b, &outside), 0);
    let after = lab.counters(a);
    assert_only(
        &before,
        &after,
        inside.len() as u64,
        &[("ipv4_spoof", outside.len() as u64)],
    );
    // ARP from an address inside the prefix passes; outside is arp_spoof.
    let arp_in = f::arp_frame(
        f::ARP_REQUEST,
        a.mac(),
        f::v4("198.51.100.9"),
        f::ZERO_MAC,
        dst,
    );
    let arp_out = f::arp_frame(
        f::ARP_REQUEST,
        a.mac(),
        f::v4("198.51.100.17"),
        f::ZERO_MAC,
        dst,
    );
    assert_eq!(deliver(a, b, &[arp_in]), 1);
    assert_eq!(deliver(a, b, &[arp_out]), 0);
}

#[test]
fn dhcp_discover_passes_and_server_replies_are_blocked() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    let before = lab.counters(a);
    assert_eq!(
        deliver(a, b, &[f::dhcp_discover(a.mac())]),
        1,
        "DHCPDISCOVER"
    );
    let after = lab.counters(a);
    assert_only(&before, &after, 1, &[]);

    // A rogue DHCP server on vm1 (offer from its own, bound address).
    let offer = f::dhcp_offer(a.mac(), a.ip4(), b.mac(), f::v4("192.0.2.77"));
    expect_drops(&lab, "dhcp_server", vec![offer.clone()]);
    bind(&lab, a, &["--allow-dhcp-server"]);
    assert_eq!(deliver(a, b, &[offer]), 1, "offer with --allow-dhcp-server");
}

#[test]
fn detach_restores_traffic() {
    let lab = Lab::new(3);
    let (a, b) = (lab.vm(1), lab.vm(2));
    // vm3 stays attached so detaching vm1 is not the last port.
    attach(&lab, lab.vm(3), "auto");
    bind(&lab, lab.vm(3), &[]);
    attach(&lab, a, "auto");
    // Bound to another address: its real traffic is spoofed.
    let m = f::mac_str(&a.mac());
    lab.pg_ok(&["bind", &a.host_if, "--mac", &m, "--ip", "192.0.2.111"]);
    let frame = udp_frame(a.mac(), a.ip4(), b);
    assert_eq!(deliver(a, b, std::slice::from_ref(&frame)), 0);
    assert!(no_ping(a, &b.ip4().to_string()));
    assert!(lab.check_mode(&a.host_if).is_some());

    lab.pg_ok(&["detach", &a.host_if]);
    assert_eq!(
        lab.check_mode(&a.host_if),
        None,
        "XDP still attached after detach"
    );
    assert_eq!(deliver(a, b, std::slice::from_ref(&frame)), 1);
    assert!(ping(a, &b.ip4().to_string()), "ping after detach");
    let e = show_entry(&lab, &a.host_if);
    assert_eq!(e["attached"], Value::Bool(false), "{e}");

    // Detaching the last port removes everything; traffic flows, nothing pinned.
    lab.pg_ok(&["detach", &lab.vm(3).host_if]);
    assert_eq!(lab.check_mode(&lab.vm(3).host_if), None);
    assert!(ping(lab.vm(3), &b.ip4().to_string()));
}

#[test]
fn state_survives_cli_exit() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    // Every CLI process above has exited; the program is still attached,
    // pinned, and enforcing the binding written by a process that is gone.
    for vm in [a, b] {
        assert!(
            lab.check_mode(&vm.host_if).is_some(),
            "{} not attached",
            vm.host_if
        );
        assert!(
            lab.pin_dir.join("links").join(&vm.host_if).exists(),
            "link pin for {} missing",
            vm.host_if
        );
    }
    let e = show_entry(&lab, &a.host_if);
    assert_eq!(e["mac"], Value::String(f::mac_str(&a.mac())), "{e}");
    assert_eq!(e["ips"], serde_json::json!([a.ip4().to_string()]), "{e}");
    assert_eq!(e["attached"], Value::Bool(true), "{e}");
    assert_eq!(e["mode"], Value::String("enforce".into()), "{e}");
    assert_eq!(deliver(a, b, &[udp_frame(a.mac(), b.ip4(), b)]), 0);
    assert_eq!(deliver(a, b, &[udp_frame(a.mac(), a.ip4(), b)]), 1);
    assert!(ping(a, &b.ip4().to_string()));
    // Counters accumulate across CLI invocations.
    let c = lab.counters(a);
    assert_eq!(c.dropped("ipv4_spoof"), 1, "{c:?}");
}

fn mode_test(mode: &str, kernel_mode: &str) {
    let lab = guarded(2, mode);
    let (a, b) = (lab.vm(1), lab.vm(2));
    for vm in [a, b] {
        assert_eq!(
            lab.check_mode(&vm.host_if).as_deref(),
            Some(kernel_mode),
            "{} attach mode per the kernel",
            vm.host_if
        );
        let e = show_entry(&lab, &vm.host_if);
        assert_eq!(e["attach_mode"], Value::String(mode.into()), "{e}");
    }
    assert!(ping(a, &b.ip4().to_string()), "{mode}: ping");
    let good = n_copies(udp_frame(a.mac(), a.ip4(), b), 5);
    let bad = vec![
        udp_frame(a.mac(), b.ip4(), b),
        udp_frame(b.mac(), a.ip4(), b),
        f::arp_frame(f::ARP_REQUEST, a.mac(), b.ip4(), f::ZERO_MAC, b.ip4()),
    ];
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &good), 5, "{mode}: good frames");
    assert_eq!(deliver(a, b, &bad), 0, "{mode}: bad frames");
    let after = lab.counters(a);
    assert_only(
        &before,
        &after,
        5,
        &[("ipv4_spoof", 1), ("mac_spoof", 1), ("arp_spoof", 1)],
    );
}

#[test]
fn native_mode() {
    mode_test("native", "native");
}

#[test]
fn generic_mode() {
    mode_test("generic", "generic");
}

#[test]
fn tc_mode() {
    mode_test("tc", "tc");
}

#[test]
fn counters_increase_by_exactly_the_frames_sent() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    let good = udp_frame(a.mac(), a.ip4(), b);
    let spoof = udp_frame(a.mac(), f::v4("192.0.2.66"), b);
    let mac = udp_frame(f::mac("02:66:66:66:66:66"), a.ip4(), b);
    let before = lab.counters(a);
    let mut frames = n_copies(good.clone(), 37);
    frames.extend(n_copies(spoof.clone(), 11));
    frames.extend(n_copies(mac.clone(), 5));
    assert_eq!(deliver(a, b, &frames), 37);
    let after = lab.counters(a);
    assert_only(&before, &after, 37, &[("ipv4_spoof", 11), ("mac_spoof", 5)]);
    assert_eq!(after.passed.1 - before.passed.1, 37 * good.len() as u64);
    assert_eq!(
        after.dropped_bytes("ipv4_spoof") - before.dropped_bytes("ipv4_spoof"),
        11 * spoof.len() as u64
    );
    assert_eq!(
        after.dropped_bytes("mac_spoof") - before.dropped_bytes("mac_spoof"),
        5 * mac.len() as u64
    );
    // vm2 sent nothing: its counters did not move.
    let c2 = lab.counters(b);
    assert_eq!(c2.passed.0, 0, "{c2:?}");
    assert_eq!(c2.total_dropped(), 0, "{c2:?}");

    // stats --json shape: one object per port, every reason named.
    let all = cli::stats_all(&lab.host, &lab.pin_dir);
    let arr = all.as_array().expect("stats --json is an array");
    assert_eq!(arr.len(), 2, "{all}");
    let e = cli::entry(&all, &a.host_if).unwrap();
    assert_eq!(e["ifindex"].as_u64(), Some(a.host_ifindex as u64), "{e}");
    for reason in filter_common::Reason::DROPS.map(filter_common::Reason::name) {
        assert!(
            e["dropped"].get(reason).is_some(),
            "dropped.{reason} missing: {e}"
        );
        assert!(
            e["would_drop"].get(reason).is_some(),
            "would_drop.{reason} missing: {e}"
        );
    }
}

#[test]
fn monitor_mode_counts_but_delivers() {
    let lab = Lab::new(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    attach(&lab, a, "auto");
    bind(&lab, a, &["--mode", "monitor", "--tenant", "acme"]);
    let bad = vec![
        udp_frame(a.mac(), f::v4("192.0.2.66"), b),
        udp_frame(f::mac("02:66:66:66:66:66"), a.ip4(), b),
    ];
    let good = udp_frame(a.mac(), a.ip4(), b);
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &bad), 2, "monitor mode delivers");
    assert_eq!(deliver(a, b, &[good]), 1);
    let after = lab.counters(a);
    assert_only(&before, &after, 3, &[]);
    assert_eq!(
        after.would_drop("ipv4_spoof") - before.would_drop("ipv4_spoof"),
        1
    );
    assert_eq!(
        after.would_drop("mac_spoof") - before.would_drop("mac_spoof"),
        1
    );
    let all = cli::stats_all(&lab.host, &lab.pin_dir);
    let e = cli::entry(&all, &a.host_if).unwrap();
    assert_eq!(e["tenant"], Value::String("acme".into()), "{e}");
}

#[test]
fn rebind_changes_enforcement_immediately() {
    let lab = guarded(2, "auto");
    let (a, b) = (lab.vm(1), lab.vm(2));
    let from_new = udp_frame(a.mac(), f::v4("192.0.2.42"), b);
    let from_old = udp_frame(a.mac(), a.ip4(), b);
    assert_eq!(deliver(a, b, std::slice::from_ref(&from_new)), 0);
    let m = f::mac_str(&a.mac());
    lab.pg_ok(&["bind", &a.host_if, "--mac", &m, "--ip", "192.0.2.42"]);
    assert_eq!(deliver(a, b, std::slice::from_ref(&from_new)), 1);
    assert_eq!(deliver(a, b, std::slice::from_ref(&from_old)), 0);
}

#[test]
fn legitimate_ipv6_ping_with_kernel_neighbor_discovery() {
    // Real kernel NS/NA (with SLLA/TLLA options), MLD reports and echo
    // traffic from bound IPv6 addresses and EUI-64 link-locals all pass.
    let lab = Lab::with_vms(vec![
        VmSpec::numbered(1).with_ipv6(),
        VmSpec::numbered(2).with_ipv6(),
    ]);
    let (a, b) = (lab.vm(1), lab.vm(2));
    // Bind first: attached but unbound, the kernel's own ND/MLD frames would
    // (rightly) be dropped as unbound_port and spoil the zero-drop check.
    for vm in [a, b] {
        let ip6 = vm.ip6().to_string();
        bind(&lab, vm, &["--ip", &ip6]);
        attach(&lab, vm, "auto");
    }
    let ping6 = |from: &Vm, to: &str| {
        from.run(&["ping", "-6", "-c", "2", "-i", "0.2", "-w", "5", to])
            .status
            .success()
    };
    assert!(ping6(a, &b.ip6().to_string()), "ping6 vm1 -> vm2");
    let ll_b = format!("{}%eth0", f::eui64_ll(b.mac()));
    assert!(ping6(a, &ll_b), "ping6 to link-local");
    for vm in [a, b] {
        let c = lab.counters(vm);
        assert_eq!(c.total_dropped(), 0, "{}: {c:?}", vm.host_if);
        assert!(c.passed.0 >= 4, "{}: {c:?}", vm.host_if);
    }
    // Pinging from an address that is configured but not bound fails.
    a.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8::99/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let o = a.run(&[
        "ping",
        "-6",
        "-c",
        "2",
        "-i",
        "0.3",
        "-W",
        "1",
        "-I",
        "2001:db8::99",
        "2001:db8::2",
    ]);
    assert!(!o.status.success(), "ping6 from an unbound address worked");
    let c = lab.counters(a);
    assert!(c.dropped("ipv6_spoof") >= 2, "{c:?}");
}
