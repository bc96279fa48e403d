//! Real tenant traffic (issue 14): which hook and mode `attach --mode auto`
//! picks per device kind, tc mode on paged skbs, tap ports whose "VM" writes
//! frames behind a virtio-net header (GSO frames included), and real TCP with
//! BIG TCP super-frames in every attach mode.
//!
//! Needs root (namespaces, XDP) and tcpdump. Run through `cargo xtask test`.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use portguard_tests::{
    bigtcp,
    cli::{self, assert_deltas, PortCounters},
    frames::{self as f, Mac},
    netns::{frame_matches, must_in, run_in, send_paged, Capture, Lab, Vm, VmSpec},
    proc::{eventually, need_tool, Proc, TmpDir},
    tap::{tcp_gso_frame, TapPort, TcpFlow, VnetHdr},
};
use serde_json::Value;

/// Addresses no VM owns: receivers drop such packets quietly (no replies).
const NOBODY4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
const NOBODY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x250);

/// The tap VM's identity.
const TAP_MAC: Mac = [0x02, 0, 0, 0, 0, 0x0a];
const TAP_IP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const TAP_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

fn show_entry(lab: &Lab, iface: &str) -> Value {
    let all = cli::show_all(&lab.host, &lab.pin_dir);
    cli::entry(&all, iface)
        .unwrap_or_else(|| panic!("{iface} not in show --json: {all}"))
        .clone()
}

fn bind(lab: &Lab, iface: &str, mac: Mac, ips: &[String]) {
    let m = f::mac_str(&mac);
    let mut args = vec!["bind", iface, "--mac", &m];
    for ip in ips {
        args.extend_from_slice(&["--ip", ip]);
    }
    lab.pg_ok(&args);
}

/// `ethtool -k` of the VM side of `vm`: is TSO on?
fn vm_tso_on(vm: &Vm) -> bool {
    let o = run_in(&vm.ns, &["ethtool", "-k", &vm.iface]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l.trim() == "tcp-segmentation-offload: on")
}

// ------------------------------------------------------------------ attach modes

#[test]
fn auto_mode_picks_by_device_kind() {
    let lab = Lab::new(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    let tap = TapPort::add(&lab, "tap1", TAP_MAC);
    assert!(vm_tso_on(a), "TSO off on {} before attach", a.iface);

    // veth: tc (native XDP would clear TSO on the VM side, generic XDP
    // copies every TCP super-frame).
    let out = cli::stdout(&lab.pg_ok(&["attach", &a.host_if]));
    assert!(
        out.contains("tc mode") && out.contains("veth"),
        "attach message: {out}"
    );
    assert_eq!(lab.xdp_mode(&a.host_if), None, "tc mode attached XDP");
    // The checks alone on tcx ingress: they police metadata VLAN tags too.
    assert_eq!(lab.tcx_ingress(&a.host_if), ["portguard_skb"]);
    let e = show_entry(&lab, &a.host_if);
    assert_eq!(e["attach_mode"], "tc", "{e}");
    assert_eq!(e["attach_reason"], "auto_veth", "{e}");
    assert!(vm_tso_on(a), "auto attach cleared TSO on {}", a.iface);
    // A re-attach in the other hook's mode switches over (the new link is
    // attached before the old one goes), and back.
    let out = cli::stdout(&lab.pg_ok(&["attach", &a.host_if, "--mode", "generic"]));
    assert!(out.contains("generic mode"), "{out}");
    assert_eq!(lab.xdp_mode(&a.host_if).as_deref(), Some("generic"));
    assert_eq!(lab.tcx_ingress(&a.host_if), ["portguard_vlan"]);
    assert_eq!(show_entry(&lab, &a.host_if)["attach_mode"], "generic");
    lab.pg_ok(&["attach", &a.host_if]);
    assert_eq!(
        lab.xdp_mode(&a.host_if),
        None,
        "the generic XDP link stayed"
    );
    assert_eq!(lab.tcx_ingress(&a.host_if), ["portguard_skb"]);
    assert_eq!(show_entry(&lab, &a.host_if)["attach_mode"], "tc");

    // tap (tun driver): native.
    let out = cli::stdout(&lab.pg_ok(&["attach", &tap.name]));
    assert!(
        out.contains("native mode") && out.contains("tap"),
        "attach message: {out}"
    );
    assert_eq!(lab.xdp_mode(&tap.name).as_deref(), Some("native"));
    let e = show_entry(&lab, &tap.name);
    assert_eq!(
        (&e["attach_mode"], &e["attach_reason"]),
        (&Value::from("native"), &Value::from("auto_tap")),
        "{e}"
    );

    // xdp-loader's names; an explicit mode says so, and native on a veth warns.
    let out = cli::stdout(&lab.pg_ok(&["attach", &b.host_if, "--mode", "drv"]));
    assert!(out.contains("native mode") && out.contains("TSO"), "{out}");
    assert_eq!(lab.xdp_mode(&b.host_if).as_deref(), Some("native"));
    assert_eq!(show_entry(&lab, &b.host_if)["attach_reason"], "requested");
    assert!(
        !vm_tso_on(b),
        "native XDP on a veth is expected to clear TSO on its peer"
    );
    lab.pg_ok(&["detach", &b.host_if]);
    lab.pg_ok(&["attach", &b.host_if, "--mode", "skb"]);
    assert_eq!(lab.xdp_mode(&b.host_if).as_deref(), Some("generic"));
    // A re-attach replaces the program in place; the link keeps its mode and says so.
    let out = cli::stdout(&lab.pg_ok(&["attach", &b.host_if, "--mode", "native"]));
    assert!(
        out.contains("replaced in place") && out.contains("stays generic, not native"),
        "{out}"
    );
    assert_eq!(lab.xdp_mode(&b.host_if).as_deref(), Some("generic"));

    // The table says it too.
    let table = cli::stdout(&lab.pg_ok(&["show"]));
    let row = |i: &str| {
        table
            .lines()
            .find(|l| l.starts_with(i))
            .unwrap_or_else(|| panic!("{i} not in:\n{table}"))
            .to_string()
    };
    assert!(row(&a.host_if).contains("tc (auto: veth"), "{table}");
    assert!(row(&tap.name).contains("native (auto: tap"), "{table}");
    assert!(row(&b.host_if).contains("generic (requested"), "{table}");
}

// ------------------------------------------------------------------ tc mode

/// tc mode reaches only an skb's linear part directly. Frames whose headers
/// lie in page fragments (a packet socket asking for a 14-byte linear part)
/// must get the verdict of the whole frame: legit ones pass, a spoofed one
/// is dropped for its real reason, none as `malformed`.
#[test]
fn tc_mode_judges_paged_headers() {
    let lab = Lab::new(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    // Jumbo MTU: a packet socket sends a frame of a page or more (the size
    // at which it builds a paged skb) only under the MTU.
    for (ns, dev) in [
        (&a.ns, &a.iface),
        (&lab.host, &a.host_if),
        (&lab.host, &b.host_if),
        (&b.ns, &b.iface),
    ] {
        must_in(ns, &["ip", "link", "set", dev, "mtu", "9000"]);
    }
    lab.pg_ok(&["attach", &a.host_if, "--mode", "tc"]);
    bind(&lab, &a.host_if, a.mac(), &[a.ip4().to_string()]);
    let legit = udp4_frame(a.mac(), a.ip4(), b, 5000);
    let spoof = udp4_frame(a.mac(), Ipv4Addr::new(192, 0, 2, 66), b, 5000);
    let before = lab.counters(a);
    let cap = b.capture();
    send_paged(
        &a.ns,
        &a.iface,
        &[legit.clone(), spoof.clone(), legit.clone()],
        14,
    )
    .expect("paged send");
    let got = cap.finish_after(Duration::from_millis(500));
    let after = lab.counters(a);
    assert_deltas("paged frames", &before, &after, None, &[("ipv4_spoof", 1)]);
    assert!(
        after.passed.0 - before.passed.0 >= 2,
        "{before:?} {after:?}"
    );
    let n = |want: &[u8]| got.iter().filter(|g| frame_matches(g, want)).count();
    assert_eq!(n(&legit), 2, "legit paged frames delivered");
    assert_eq!(n(&spoof), 0, "spoofed paged frame delivered");
}

/// A veth an older portguard attached by `auto` in generic mode (its record
/// says `auto_veth`): the next `apply` re-attaches it, which moves it to tc,
/// with the generic link gone only once the tc one is pinned; then nothing
/// is left to do.
#[test]
fn apply_moves_auto_veths_to_tc() {
    let lab = Lab::new(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    lab.pg_ok(&["attach", &a.host_if, "--mode", "generic"]);
    bind(&lab, &a.host_if, a.mac(), &[a.ip4().to_string()]);
    let ifindex = lab.host_ifindex(&a.host_if).expect("ifindex");
    let mut p = portguard::pinned::Pinned::open(&lab.pin_dir).expect("open pins");
    p.set_attach_reason(ifindex, portguard::attach::AttachReason::AutoVeth as u8)
        .expect("record an older auto choice");
    drop(p);
    let tmp = TmpDir::new(&lab, "state");
    let file = tmp.path("portguard.toml");
    std::fs::write(
        &file,
        format!(
            "[[port]]\niface = {:?}\nmac = \"{}\"\nips = [\"{}\"]\n",
            a.host_if,
            f::mac_str(&a.mac()),
            a.ip4()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = cli::stdout(&lab.pg_ok(&["apply", "-f", file]));
    assert!(out.contains("re-attach"), "{out}");
    assert_eq!(lab.xdp_mode(&a.host_if), None, "{out}");
    assert_eq!(lab.tcx_ingress(&a.host_if), ["portguard_skb"]);
    let e = show_entry(&lab, &a.host_if);
    assert_eq!(
        (&e["attach_mode"], &e["attach_reason"]),
        (&"tc".into(), &"auto_veth".into()),
        "{e}"
    );
    let out = cli::stdout(&lab.pg_ok(&["apply", "-f", file]));
    assert!(out.contains("nothing to do"), "{out}");
    // Enforcing all along: a spoofed frame is dropped, a legit one is not.
    let before = lab.counters(a);
    a.send(&[
        udp4_frame(a.mac(), a.ip4(), b, 64),
        udp4_frame(a.mac(), Ipv4Addr::new(192, 0, 2, 66), b, 64),
    ]);
    assert!(
        eventually(5, || lab.counters(a).dropped("ipv4_spoof")
            > before.dropped("ipv4_spoof")),
        "spoofed frame not dropped after the move"
    );
    let after = lab.counters(a);
    assert_deltas(
        "after the move",
        &before,
        &after,
        None,
        &[("ipv4_spoof", 1)],
    );
    assert!(after.passed.0 > before.passed.0, "{before:?} {after:?}");
}

// ------------------------------------------------------------------ tap ports

/// TCP payload bytes of flow `dport` in `frames` (whole GSO frames or segments).
fn tcp_payload_bytes(frames: &[Vec<u8>], dport: u16) -> usize {
    let mut n = 0;
    for fr in frames {
        let Some(&[e0, e1]) = fr.get(12..14) else {
            continue;
        };
        let (l4, ip_end) = match u16::from_be_bytes([e0, e1]) {
            f::ETH_P_IP if fr.len() >= 34 => {
                let ihl = usize::from(fr[14] & 0x0f) * 4;
                if fr[23] != f::IPPROTO_TCP {
                    continue;
                }
                (
                    14 + ihl,
                    14 + usize::from(u16::from_be_bytes([fr[16], fr[17]])),
                )
            }
            f::ETH_P_IPV6 if fr.len() >= 54 => {
                if fr[20] != f::IPPROTO_TCP {
                    continue;
                }
                (54, 54 + usize::from(u16::from_be_bytes([fr[18], fr[19]])))
            }
            _ => continue,
        };
        let Some(tcp) = fr.get(l4..l4 + 20) else {
            continue;
        };
        if u16::from_be_bytes([tcp[2], tcp[3]]) != dport {
            continue;
        }
        n += ip_end.saturating_sub(l4 + usize::from(tcp[12] >> 4) * 4);
    }
    n
}

fn udp4_frame(smac: Mac, sip: Ipv4Addr, to: &Vm, body: usize) -> Vec<u8> {
    f::eth(
        to.mac(),
        smac,
        f::ETH_P_IP,
        &f::udp4(sip, NOBODY4, 40000, 9, &vec![0x42; body]),
    )
}

fn tap_port_judged_like_veth(mode: &str) {
    let lab = Lab::new(1);
    let rx = lab.vm(1);
    let tap = TapPort::add(&lab, "tap1", TAP_MAC);
    lab.pg_ok(&["attach", &tap.name, "--mode", mode]);
    bind(
        &lab,
        &tap.name,
        TAP_MAC,
        &[TAP_IP4.to_string(), TAP_IP6.to_string()],
    );
    let other4 = Ipv4Addr::new(192, 0, 2, 66);
    let other6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66);
    let legit = udp4_frame(TAP_MAC, TAP_IP4, rx, 64);
    let ip_spoof = udp4_frame(TAP_MAC, other4, rx, 64);
    let mac_spoof = udp4_frame(f::mac("02:66:66:66:66:66"), TAP_IP4, rx, 64);
    // Over the 1500-byte MTU without GSO: judged (a QEMU guest could write
    // one), then the bridge drops it as too big for the out port.
    let oversized = udp4_frame(TAP_MAC, TAP_IP4, rx, 4000);
    let oversized_spoof = udp4_frame(TAP_MAC, other4, rx, 4000);
    let flow = |dport| TcpFlow {
        src_mac: TAP_MAC,
        dst_mac: rx.mac(),
        sport: 40000,
        dport,
        seq: 1,
    };
    // 64 KiB-class TSO frames, as a virtio-net guest writes them.
    let payload = vec![0x37u8; 60_000];
    let gso4 = tcp_gso_frame(
        &flow(7001),
        IpAddr::V4(TAP_IP4),
        IpAddr::V4(NOBODY4),
        &payload,
        1448,
    );
    let gso6 = tcp_gso_frame(
        &flow(7002),
        IpAddr::V6(TAP_IP6),
        IpAddr::V6(NOBODY6),
        &payload[..30_000],
        1428,
    );
    let gso4_spoof = tcp_gso_frame(
        &flow(7003),
        IpAddr::V4(other4),
        IpAddr::V4(NOBODY4),
        &payload,
        1448,
    );
    let gso6_spoof = tcp_gso_frame(
        &flow(7004),
        IpAddr::V6(other6),
        IpAddr::V6(NOBODY6),
        &payload[..30_000],
        1428,
    );

    let before = cli::counters(&lab.host, &lab.pin_dir, &tap.name);
    let cap = Capture::start(&rx.ns, &rx.iface).expect("capture");
    let plain = VnetHdr::default();
    let mut sent: Vec<(&VnetHdr, &Vec<u8>, usize)> = vec![
        (&plain, &legit, 5),
        (&plain, &ip_spoof, 3),
        (&plain, &mac_spoof, 2),
        (&plain, &oversized, 1),
        (&plain, &oversized_spoof, 1),
    ];
    sent.extend([
        (&gso4.0, &gso4.1, 4),
        (&gso6.0, &gso6.1, 2),
        (&gso4_spoof.0, &gso4_spoof.1, 2),
        (&gso6_spoof.0, &gso6_spoof.1, 1),
    ]);
    for (hdr, frame, n) in &sent {
        for _ in 0..*n {
            let w = tap.write(hdr, frame).expect("write to tap");
            assert_eq!(w, frame.len(), "{mode}: short write to the tap");
        }
    }
    let mut after = before.clone();
    let want_passed = 5 + 1 + 4 + 2;
    assert!(
        eventually(10, || {
            after = cli::counters(&lab.host, &lab.pin_dir, &tap.name);
            after.passed.0 - before.passed.0 >= want_passed
                && after.total_dropped() - before.total_dropped() >= 9
        }),
        "{mode}: counters did not move\nbefore {before:?}\nafter  {after:?}"
    );
    let got = cap.finish_after(Duration::from_millis(500));
    assert_deltas(
        &format!("tap, {mode}"),
        &before,
        &after,
        Some(want_passed),
        &[
            ("ipv4_spoof", 3 + 1 + 2),
            ("mac_spoof", 2),
            ("ipv6_spoof", 1),
        ],
    );
    // Each GSO frame is judged whole, before segmentation: counted once, in full.
    let want_bytes = 5 * legit.len() + oversized.len() + 4 * gso4.1.len() + 2 * gso6.1.len();
    assert_eq!(
        (after.passed.1 - before.passed.1) as usize,
        want_bytes,
        "{mode}: passed bytes"
    );
    let delivered = |fr: &Vec<u8>| {
        got.iter()
            .filter(|g| portguard_tests::netns::frame_matches(g, fr))
            .count()
    };
    assert_eq!(delivered(&legit), 5, "{mode}: legit frames delivered");
    for (what, fr) in [
        ("ip spoof", &ip_spoof),
        ("mac spoof", &mac_spoof),
        ("oversized", &oversized),
        ("oversized spoof", &oversized_spoof),
    ] {
        assert_eq!(delivered(fr), 0, "{mode}: {what} delivered");
    }
    assert_eq!(
        tcp_payload_bytes(&got, 7001),
        4 * 60_000,
        "{mode}: TCPv4 GSO payload"
    );
    assert_eq!(
        tcp_payload_bytes(&got, 7002),
        2 * 30_000,
        "{mode}: TCPv6 GSO payload"
    );
    assert_eq!(
        tcp_payload_bytes(&got, 7003),
        0,
        "{mode}: spoofed TCPv4 GSO"
    );
    assert_eq!(
        tcp_payload_bytes(&got, 7004),
        0,
        "{mode}: spoofed TCPv6 GSO"
    );
}

#[test]
fn tap_port_auto_native() {
    tap_port_judged_like_veth("auto");
}

#[test]
fn tap_port_generic() {
    tap_port_judged_like_veth("generic");
}

// ------------------------------------------------------------------ BIG TCP

/// Bytes per transfer: a few MB, so that a dropped super-frame stalls it.
const TRANSFER: u64 = 16 << 20;

/// Runs tcpdump on the VM side of `vm`, stopping at the first frame longer
/// than 65600 bytes (a BIG TCP super-frame of `family`).
fn watch_super_frames(vm: &Vm, tmp: &TmpDir, family: &str) -> Proc {
    let filter = format!("{family} and greater 65600");
    let p = Proc::spawn(
        &vm.ns,
        &[
            "tcpdump",
            "-ni",
            &vm.iface,
            "-Q",
            "out",
            "-s",
            "96",
            "-c",
            "1",
            "-w",
            "/dev/null",
            &filter,
        ],
        &tmp.path(&format!("tcpdump-{family}.log")),
    );
    // tcpdump says "listening on" once its socket is up.
    let _ = eventually(5, || p.log().contains("listening on"));
    p
}

fn big_tcp(mode: &str) {
    need_tool("tcpdump");
    let lab = Lab::with_vms(vec![
        VmSpec::numbered(1).with_ipv6(),
        VmSpec::numbered(2).with_ipv6(),
    ]);
    let (a, b) = (lab.vm(1), lab.vm(2));
    for vm in [a, b] {
        bigtcp::enable(&vm.ns, &vm.iface, 185_000).expect("BIG TCP on the VM side");
        bigtcp::enable(&lab.host, &vm.host_if, 185_000).expect("BIG TCP on the host side");
        lab.pg_ok(&["attach", &vm.host_if, "--mode", mode]);
        bind(
            &lab,
            &vm.host_if,
            vm.mac(),
            &[vm.ip4().to_string(), vm.ip6().to_string()],
        );
    }
    // Native XDP on a veth clears TSO on its peer: no super-frames to see there.
    let supers_expected = vm_tso_on(a);
    assert_eq!(
        supers_expected,
        lab.xdp_mode(&a.host_if).as_deref() != Some("native"),
        "{mode}: TSO on the VM side"
    );
    if mode == "auto" {
        assert_eq!(show_entry(&lab, &a.host_if)["attach_mode"], "tc");
    }
    let before: Vec<PortCounters> = [a, b].iter().map(|vm| lab.counters(vm)).collect();
    let tmp = TmpDir::new(&lab, "tcpdump");
    for (family, dst) in [("ip6", IpAddr::V6(b.ip6())), ("ip", IpAddr::V4(b.ip4()))] {
        let mut watch = watch_super_frames(a, &tmp, family);
        let received = bigtcp::transfer(&a.ns, &b.ns, dst, TRANSFER, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{mode} {family}: {e:#}"));
        assert_eq!(received, TRANSFER, "{mode} {family}: bytes received");
        if supers_expected {
            assert!(
                eventually(5, || watch.exited().is_some()),
                "{mode} {family}: no BIG TCP super-frame (> 65600 bytes) seen on the VM side"
            );
        }
    }
    for (vm, before) in [a, b].iter().zip(&before) {
        let after = lab.counters(vm);
        assert_deltas(
            &format!("{mode}: {}", vm.host_if),
            before,
            &after,
            None,
            &[],
        );
        assert!(after.passed.0 > before.passed.0, "{mode}: nothing passed");
    }
}

#[test]
fn big_tcp_generic() {
    big_tcp("generic");
}

#[test]
fn big_tcp_native() {
    big_tcp("native");
}

/// auto = tc on a veth.
#[test]
fn big_tcp_auto() {
    big_tcp("auto");
}
