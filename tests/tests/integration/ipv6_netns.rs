//! Acceptance tests for IPv6 first-hop security (docs/policy.md section 6)
//! with real kernel IPv6 stacks: VMs in their own network namespaces behind
//! a bridge, the host-side veths guarded by portguard.
//!
//! The VMs run real Neighbor Discovery and real Duplicate Address Detection
//! (addresses are added *without* `nodad` after the port is bound, and the
//! link-local address is regenerated with DAD enabled once the port is
//! guarded). Attacks are crafted frames sent over AF_PACKET, or real programs
//! (a squatting kernel answering DAD, a rogue dnsmasq DHCPv6 server). Each
//! attack is checked three ways: the observer VM does not receive it
//! (capture), its state is unchanged (`ip -6 route`, `ip -6 neigh`, DAD), and
//! the attacker's port counts exactly the frames sent under the expected
//! reason. Where it matters, a monitor-mode control run shows that the same
//! attack *does* change the observer's state when it is let through, so these
//! tests can fail.
//!
//! Needs root (namespaces, XDP). Run e.g.
//! `PORTGUARD_BIN=target/debug/portguard cargo test -p portguard-tests --test integration ipv6_netns::`.
use std::{
    fs,
    net::Ipv6Addr,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use portguard_tests::{
    cli::assert_deltas,
    frames::{self as f, Mac},
    netns::{frame_matches, Lab, Vm, VmSpec},
    proc::{eventually, need_tool, Proc, TmpDir},
};
use serde_json::Value;

// ------------------------------------------------------------------ lab setup

/// A lab of `n` VMs with IPv6 enabled but no IPv6 address configured yet
/// (VM i: MAC 02:00:00:00:00:0i, 192.0.2.i/24). Nothing is bound or attached.
fn lab6(n: u8) -> Lab {
    let specs = (1..=n)
        .map(|i| {
            let mut s = VmSpec::numbered(i).with_ipv6();
            s.v6.clear();
            s
        })
        .collect();
    Lab::with_vms(specs)
}

/// Binds the VM's port (its MAC, its IPv4 address and `ips`, plus `extra`
/// flags), then attaches the program to it.
fn guard(lab: &Lab, vm: &Vm, ips: &[&str], extra: &[&str]) {
    bind(lab, vm, ips, extra);
    lab.pg_ok(&["attach", &vm.host_if]);
}

/// (Re)binds the VM's port: MAC, IPv4 address, `ips`, `extra` flags.
fn bind(lab: &Lab, vm: &Vm, ips: &[&str], extra: &[&str]) {
    let m = f::mac_str(&vm.mac());
    let v4 = vm.ip4().to_string();
    let mut args = vec!["bind", vm.host_if.as_str(), "--mac", &m, "--ip", &v4];
    for ip in ips {
        args.push("--ip");
        args.push(ip);
    }
    args.extend_from_slice(extra);
    lab.pg_ok(&args);
}

fn sysctl(vm: &Vm, kv: &str) {
    let o = vm.run(&["sysctl", "-qw", kv]);
    assert!(o.status.success(), "sysctl {kv} in {}: {o:?}", vm.ns);
}

fn ip(vm: &Vm, args: &[&str]) -> String {
    let mut v = vec!["ip", "-n", vm.ns.as_str()];
    v.extend_from_slice(args);
    let o = Command::new(v[0]).args(&v[1..]).output().expect("run ip");
    assert!(
        o.status.success(),
        "{v:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Turns DAD on for the VM's eth0 and bounces the link, so the link-local
/// address is regenerated and goes through real DAD (through the filter,
/// when the port is already guarded). Waits until it is usable.
fn restart_with_dad(vm: &Vm) {
    sysctl(vm, "net.ipv6.conf.eth0.accept_dad=1");
    sysctl(vm, "net.ipv6.conf.eth0.dad_transmits=1");
    ip(vm, &["link", "set", "eth0", "down"]);
    ip(vm, &["link", "set", "eth0", "up"]);
    wait_link_local(vm);
}

/// Waits until eth0 has a link-local address that passed DAD; returns it.
fn wait_link_local(vm: &Vm) -> Ipv6Addr {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = addrs(vm);
        if let Some(ll) = a.iter().find(|a| a.addr.segments()[0] == 0xfe80) {
            assert!(!ll.dadfailed, "{}: link-local {} dadfailed", vm.ns, ll.addr);
            if !ll.tentative {
                return ll.addr;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}: no usable link-local address: {a:?}",
            vm.ns
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Clone)]
struct Addr {
    addr: Ipv6Addr,
    tentative: bool,
    dadfailed: bool,
}

/// IPv6 addresses of the VM's eth0 with their DAD flags.
fn addrs(vm: &Vm) -> Vec<Addr> {
    let out = ip(vm, &["-6", "-j", "addr", "show", "dev", "eth0"]);
    let v: Value = serde_json::from_str(&out).expect("ip -j addr");
    let mut res = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let Some(local) = a["local"].as_str() else {
                continue;
            };
            res.push(Addr {
                addr: local.parse().expect("address"),
                tentative: a["tentative"].as_bool().unwrap_or(false),
                dadfailed: a["dadfailed"].as_bool().unwrap_or(false),
            });
        }
    }
    res
}

#[derive(Debug, PartialEq, Eq)]
enum Dad {
    Ok,
    Failed,
}

/// Waits for the DAD outcome of `addr` on the VM's eth0.
fn wait_dad(vm: &Vm, addr: Ipv6Addr) -> Dad {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = addrs(vm);
        if let Some(a) = all.iter().find(|a| a.addr == addr) {
            if a.dadfailed {
                return Dad::Failed;
            }
            if !a.tentative {
                return Dad::Ok;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}: DAD of {addr} did not finish: {all:?}",
            vm.ns
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Adds `addr/64` to the VM's eth0 WITH duplicate address detection and
/// returns its outcome.
fn add_addr(vm: &Vm, addr: &str) -> Dad {
    ip(
        vm,
        &["-6", "addr", "add", &format!("{addr}/64"), "dev", "eth0"],
    );
    wait_dad(vm, addr.parse().unwrap())
}

/// Adds an address that must pass DAD.
fn add_addr_ok(vm: &Vm, addr: &str) {
    assert_eq!(add_addr(vm, addr), Dad::Ok, "{}: DAD of {addr}", vm.ns);
}

/// `ping -6` from the VM; `src` is an address or interface for `-I`.
fn ping6(vm: &Vm, dst: &str, src: Option<&str>) -> (bool, String) {
    let mut argv = vec!["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2"];
    if let Some(s) = src {
        argv.push("-I");
        argv.push(s);
    }
    argv.push(dst);
    let o = vm.run(&argv);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn assert_ping6(vm: &Vm, dst: &str, src: Option<&str>) {
    let (ok, out) = ping6(vm, dst, src);
    assert!(ok, "{}: ping -6 {dst} (from {src:?}) failed:\n{out}", vm.ns);
    assert!(out.contains(" 0% packet loss"), "{}: loss:\n{out}", vm.ns);
}

/// Link-layer address of `addr` in the VM's neighbour table (`ip -6 neigh`).
fn neigh(vm: &Vm, addr: Ipv6Addr) -> Option<String> {
    let out = ip(vm, &["-6", "-j", "neigh", "show", "dev", "eth0"]);
    let v: Value = serde_json::from_str(&out).expect("ip -j neigh");
    v.as_array()?
        .iter()
        .find(|e| e["dst"].as_str().and_then(|d| d.parse::<Ipv6Addr>().ok()) == Some(addr))
        .and_then(|e| e["lladdr"].as_str().map(str::to_string))
}

fn routes(vm: &Vm) -> String {
    ip(vm, &["-6", "route", "show", "table", "all"])
}

/// Sends `frames` from `from` while capturing on `to`; returns how many of
/// them arrived.
fn deliver(from: &Vm, to: &Vm, frames: &[Vec<u8>]) -> usize {
    let cap = to.capture();
    from.send(frames);
    let got = cap.finish_after(Duration::from_millis(500));
    got.iter()
        .filter(|g| frames.iter().any(|s| frame_matches(g, s)))
        .count()
}

fn ll(vm: &Vm) -> Ipv6Addr {
    f::eui64_ll(vm.mac())
}

fn g(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)
}

fn eth6(dst: Mac, src: Mac, pkt: &[u8]) -> Vec<u8> {
    f::eth_ipv6(dst, src, pkt)
}

/// dhclient hook script: logs every invocation; configures nothing (so it
/// never touches files outside the test's scratch directory).
fn dhclient_script(dir: &TmpDir) -> PathBuf {
    let p = dir.path("dhclient-script");
    let log = dir.path("script.log");
    fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$reason ip6=$new_ip6_address ip4=$new_ip_address\" >> {}\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

// ------------------------------------------------------------------ tests

/// Two bound VMs with real ND and DAD: both link-local (EUI-64, implicit in
/// the binding) and global addresses added after binding pass DAD and ping
/// each other, with no drop at all.
#[test]
fn ping_over_global_and_eui64_link_local_with_real_nd_and_dad() {
    let lab = lab6(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &["2001:db8::1"], &[]);
    guard(&lab, b, &["2001:db8::2"], &[]);
    let before = (lab.counters(a), lab.counters(b));
    restart_with_dad(a);
    restart_with_dad(b);
    assert_eq!(wait_link_local(a), ll(a), "vm1 link-local is EUI-64");
    assert_eq!(wait_link_local(b), ll(b), "vm2 link-local is EUI-64");

    // Add the bound global address after binding: DAD runs through the filter.
    let cap = b.capture();
    add_addr_ok(a, "2001:db8::1");
    let seen = cap.finish();
    let dad_ns = seen.iter().any(|fr| {
        fr.len() >= 14 + 40 + 24
            && fr[12..14] == [0x86, 0xdd]
            && fr[14 + 8..14 + 24] == [0u8; 16] // source ::
            && fr[14 + 6] == f::IPPROTO_ICMPV6
            && fr[14 + 40] == f::ICMPV6_NS
            && fr[14 + 40 + 8..14 + 40 + 24] == g(1).octets()
    });
    assert!(
        dad_ns,
        "vm2 never saw vm1's DAD probe for 2001:db8::1 (DAD did not run or was dropped)"
    );
    add_addr_ok(b, "2001:db8::2");

    assert_ping6(a, "2001:db8::2", None);
    assert_ping6(b, "2001:db8::1", None);
    assert_ping6(a, &format!("{}%eth0", ll(b)), None);
    assert_ping6(b, &format!("{}%eth0", ll(a)), None);
    // Real ND resolved the neighbours to the right MACs.
    assert_eq!(neigh(a, g(2)).as_deref(), Some("02:00:00:00:00:02"));
    assert_eq!(neigh(b, g(1)).as_deref(), Some("02:00:00:00:00:01"));
    assert_eq!(neigh(a, ll(b)).as_deref(), Some("02:00:00:00:00:02"));

    for (vm, before) in [(a, &before.0), (b, &before.1)] {
        let after = lab.counters(vm);
        assert!(
            after.passed.0 > before.passed.0 + 10,
            "{}: {after:?}",
            vm.host_if
        );
        assert_deltas(&vm.host_if, before, &after, None, &[]);
    }
}

/// A neighbour that squats on vm1's bound address (configured on its own
/// interface) answers vm1's DAD probe with an NA: the filter drops it, so
/// vm1's DAD succeeds. Control: with the squatter in monitor mode, the same
/// attack makes vm1's DAD fail.
#[test]
fn dad_of_a_bound_address_survives_a_squatting_neighbour() {
    let lab = lab6(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &["2001:db8::1", "2001:db8::11"], &[]);
    guard(&lab, b, &["2001:db8::2"], &[]);
    restart_with_dad(a);
    restart_with_dad(b);

    // vm2 claims vm1's address (nodad: the attacker does not care).
    ip(
        b,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8::1/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    let before = lab.counters(b);
    assert_eq!(
        add_addr(a, "2001:db8::1"),
        Dad::Ok,
        "vm1's DAD was defeated by the squatter"
    );
    let after = lab.counters(b);
    let stopped = (after.dropped("ipv6_spoof") - before.dropped("ipv6_spoof"))
        + (after.dropped("nd_spoof") - before.dropped("nd_spoof"));
    assert!(
        stopped >= 1,
        "squatter's NA was not counted: {before:?} -> {after:?}"
    );
    // vm1's address is usable: vm1 reaches vm2's link-local from it.
    assert_ping6(a, &format!("{}%eth0", ll(b)), None);

    // Control: the squatter's port in monitor mode. vm1's DAD now fails.
    bind(&lab, b, &["2001:db8::2"], &["--mode", "monitor"]);
    ip(
        b,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8::11/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    let before = lab.counters(b);
    assert_eq!(
        add_addr(a, "2001:db8::11"),
        Dad::Failed,
        "control: without enforcement the squatter should have won DAD"
    );
    let after = lab.counters(b);
    assert!(
        after.would_drop("ipv6_spoof") + after.would_drop("nd_spoof")
            > before.would_drop("ipv6_spoof") + before.would_drop("nd_spoof"),
        "control: no would_drop counted: {after:?}"
    );
}

/// A VM sending Router Advertisements (and a Redirect): nothing reaches the
/// observer, which accepts RAs (accept_ra=2, forwarding=0) and learns no
/// default route, prefix route or SLAAC address. ra_guard counts exactly the
/// frames sent. Control: in monitor mode the observer learns the default route.
#[test]
fn rogue_router_advertisement_is_stopped() {
    let lab = lab6(2);
    let (a, obs) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &["2001:db8::1"], &[]);
    guard(&lab, obs, &["2001:db8::2"], &[]);
    sysctl(obs, "net.ipv6.conf.all.forwarding=0");
    sysctl(obs, "net.ipv6.conf.eth0.forwarding=0");
    sysctl(obs, "net.ipv6.conf.eth0.accept_ra=2");
    sysctl(obs, "net.ipv6.conf.eth0.accept_ra_defrtr=1");
    sysctl(obs, "net.ipv6.conf.eth0.accept_ra_pinfo=1");
    sysctl(obs, "net.ipv6.conf.eth0.autoconf=1");
    restart_with_dad(a);
    restart_with_dad(obs);
    add_addr_ok(a, "2001:db8::1");
    add_addr_ok(obs, "2001:db8::2");
    let routes0 = routes(obs);
    assert!(
        !routes0.contains("default"),
        "observer already has a default route:\n{routes0}"
    );

    let bad_prefix = f::v6("2001:db8:bad::");
    let all_nodes_mac = f::ipv6_mcast_mac(f::ALL_NODES);
    let frames = vec![
        eth6(
            all_nodes_mac,
            a.mac(),
            &f::ra(ll(a), Some(a.mac()), Some(bad_prefix)),
        ),
        eth6(
            all_nodes_mac,
            a.mac(),
            &f::ra(ll(a), Some(a.mac()), Some(bad_prefix)),
        ),
        eth6(all_nodes_mac, a.mac(), &f::ra(ll(a), None, None)),
        // unicast RA straight at the observer
        eth6(
            obs.mac(),
            a.mac(),
            &f::ra(ll(a), Some(a.mac()), Some(bad_prefix)),
        ),
        // Redirect: "reach 2001:db8::99 via me"
        eth6(
            obs.mac(),
            a.mac(),
            &f::redirect(ll(a), ll(obs), ll(a), g(0x99)),
        ),
    ];
    let before = lab.counters(a);
    let got = deliver(a, obs, &frames);
    let after = lab.counters(a);
    assert_eq!(
        got, 0,
        "{got} rogue RA/redirect frames reached the observer"
    );
    assert_deltas(
        "rogue RA",
        &before,
        &after,
        None,
        &[("ra_guard", frames.len() as u64)],
    );
    thread::sleep(Duration::from_millis(500));
    let r = routes(obs);
    assert!(
        !r.contains("default"),
        "observer learned a default route:\n{r}"
    );
    assert!(
        !r.contains("2001:db8:bad"),
        "observer learned the rogue prefix:\n{r}"
    );
    let a_obs = addrs(obs);
    assert!(
        !a_obs.iter().any(|x| x.addr.segments()[2] == 0xbad),
        "observer autoconfigured from the rogue prefix: {a_obs:?}"
    );

    // Control: monitor mode lets the RA through and the observer takes it.
    bind(&lab, a, &["2001:db8::1"], &["--mode", "monitor"]);
    let before = lab.counters(a);
    a.send(&frames[..1]);
    let learned = eventually(5, || {
        routes(obs)
            .lines()
            .any(|l| l.starts_with("default") && l.contains(&ll(a).to_string()))
    });
    assert!(
        learned,
        "control: the observer did not learn a default route from an RA let through \
         (the enforcing part of this test proves nothing):\n{}",
        routes(obs)
    );
    let after = lab.counters(a);
    assert_eq!(
        after.would_drop("ra_guard") - before.would_drop("ra_guard"),
        1
    );
}

/// A VM advertising another VM's addresses (NA with the victim's address as
/// target, its own MAC as target link-layer address) or its own address with
/// the victim's MAC, or soliciting with a foreign source link-layer address:
/// nothing reaches the observer and the observer's neighbour table keeps the
/// right MACs. nd_spoof counts exactly the frames sent. Control: in monitor
/// mode the first NA rewrites the observer's entry.
#[test]
fn spoofed_neighbor_advertisement_is_stopped() {
    let lab = lab6(3);
    let (a, victim, obs) = (lab.vm(1), lab.vm(2), lab.vm(3));
    for (i, vm) in [(1u16, a), (2, victim), (3, obs)] {
        guard(&lab, vm, &[&g(i).to_string()], &[]);
        restart_with_dad(vm);
        add_addr_ok(vm, &g(i).to_string());
    }
    // The observer knows the victim (global and link-local) and vm1.
    assert_ping6(obs, "2001:db8::2", None);
    assert_ping6(obs, &format!("{}%eth0", ll(victim)), None);
    assert_ping6(obs, "2001:db8::1", None);
    let vmac = f::mac_str(&victim.mac());
    let amac = f::mac_str(&a.mac());
    assert_eq!(neigh(obs, g(2)).as_deref(), Some(vmac.as_str()));
    assert_eq!(neigh(obs, ll(victim)).as_deref(), Some(vmac.as_str()));
    assert_eq!(neigh(obs, g(1)).as_deref(), Some(amac.as_str()));

    let all_nodes = f::ipv6_mcast_mac(f::ALL_NODES);
    let o = f::NA_OVERRIDE;
    let mut hop64 = f::nd_na(ll(a), f::ALL_NODES, g(1), o, Some(a.mac()));
    f::set_hop_limit(&mut hop64, 64);
    let frames = vec![
        // unsolicited override NA for the victim's global address
        eth6(
            all_nodes,
            a.mac(),
            &f::nd_na(ll(a), f::ALL_NODES, g(2), o, Some(a.mac())),
        ),
        // the same from vm1's global address, unicast to the observer, "solicited"
        eth6(
            obs.mac(),
            a.mac(),
            &f::nd_na(g(1), g(3), g(2), o | f::NA_SOLICITED, Some(a.mac())),
        ),
        // the victim's link-local address
        eth6(
            all_nodes,
            a.mac(),
            &f::nd_na(ll(a), f::ALL_NODES, ll(victim), o, Some(a.mac())),
        ),
        // the victim's address without a TLLA option (target check alone)
        eth6(
            all_nodes,
            a.mac(),
            &f::nd_na(ll(a), f::ALL_NODES, g(2), o, None),
        ),
        // vm1's own address, but advertising the victim's MAC
        eth6(
            all_nodes,
            a.mac(),
            &f::nd_na(ll(a), f::ALL_NODES, g(1), o, Some(victim.mac())),
        ),
        // an NS whose source link-layer address is the victim's MAC
        eth6(
            obs.mac(),
            a.mac(),
            &f::nd_ns(g(1), g(3), g(3), Some(victim.mac())),
        ),
        // vm1's own address and MAC, but hop limit 64: not a valid ND message
        eth6(all_nodes, a.mac(), &hop64),
    ];
    let before = lab.counters(a);
    let got = deliver(a, obs, &frames);
    let after = lab.counters(a);
    assert_eq!(got, 0, "{got} spoofed ND frames reached the observer");
    assert_deltas(
        "spoofed ND",
        &before,
        &after,
        None,
        &[("nd_spoof", frames.len() as u64)],
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        neigh(obs, g(2)).as_deref(),
        Some(vmac.as_str()),
        "victim's global entry"
    );
    assert_eq!(
        neigh(obs, ll(victim)).as_deref(),
        Some(vmac.as_str()),
        "victim's link-local entry"
    );
    assert_eq!(
        neigh(obs, g(1)).as_deref(),
        Some(amac.as_str()),
        "vm1's entry"
    );
    // The victim is still reachable.
    assert_ping6(obs, "2001:db8::2", None);

    // Control: let the first NA through (monitor mode): the entry is poisoned.
    bind(&lab, a, &["2001:db8::1"], &["--mode", "monitor"]);
    a.send(&frames[..1]);
    let poisoned = eventually(3, || neigh(obs, g(2)).as_deref() == Some(amac.as_str()));
    assert!(
        poisoned,
        "control: the NA let through did not change the observer's entry ({:?}); \
         the enforcing part of this test proves nothing",
        neigh(obs, g(2))
    );
}

/// IPv6 packets from addresses the port is not bound to: the victim's global
/// and link-local addresses, an unbound address in the same /64, a foreign
/// link-local, `::` outside DAD, a non-first fragment. Nothing reaches the
/// observer; ipv6_spoof counts exactly. A real `ping -I` from an unbound
/// address configured in the VM fails, from the bound one it works.
#[test]
fn spoofed_ipv6_source_is_stopped() {
    let lab = lab6(3);
    let (a, victim, obs) = (lab.vm(1), lab.vm(2), lab.vm(3));
    for (i, vm) in [(1u16, a), (2, victim), (3, obs)] {
        guard(&lab, vm, &[&g(i).to_string()], &[]);
        restart_with_dad(vm);
        add_addr_ok(vm, &g(i).to_string());
    }
    let echo = |src: Ipv6Addr| {
        eth6(
            obs.mac(),
            a.mac(),
            &f::icmpv6_echo(src, g(3), 0x77, 1, b"spoof"),
        )
    };
    let frag = f::cat(&[&f::fragment(f::IPPROTO_UDP, 1, false, 7), &[0u8; 16]]);
    let frames = vec![
        echo(g(2)),
        echo(g(0x99)),
        echo(ll(victim)),
        echo(f::v6("fe80::1")),
        echo(f::v6("2001:db8:ffff::1")),
        echo(Ipv6Addr::UNSPECIFIED),
        eth6(obs.mac(), a.mac(), &f::udp6(g(2), g(3), 40000, 9, b"spoof")),
        // NS from :: that is not a DAD probe (destination is not the target's
        // solicited-node group)
        eth6(
            obs.mac(),
            a.mac(),
            &f::nd_ns(Ipv6Addr::UNSPECIFIED, g(3), g(3), None),
        ),
        // non-first fragment from the victim's address
        eth6(
            obs.mac(),
            a.mac(),
            &f::ipv6(g(2), g(3), f::IPPROTO_FRAGMENT, 64, &frag),
        ),
    ];
    let before = lab.counters(a);
    let got = deliver(a, obs, &frames);
    let after = lab.counters(a);
    assert_eq!(got, 0, "{got} spoofed IPv6 frames reached the observer");
    assert_deltas(
        "spoofed source",
        &before,
        &after,
        None,
        &[("ipv6_spoof", frames.len() as u64)],
    );
    // A legitimate packet from the same VM still arrives.
    assert_eq!(
        deliver(a, obs, &[echo(g(1))]),
        1,
        "legitimate echo from vm1"
    );

    // Real programs: an unbound address configured in vm1 cannot be used.
    add_addr_ok(a, "2001:db8::99");
    let before = lab.counters(a);
    let (ok, out) = ping6(a, "2001:db8::3", Some("2001:db8::99"));
    assert!(!ok, "ping from unbound 2001:db8::99 worked:\n{out}");
    let after = lab.counters(a);
    assert!(
        after.dropped("ipv6_spoof") > before.dropped("ipv6_spoof"),
        "ping from an unbound address was not counted: {after:?}"
    );
    assert_ping6(a, "2001:db8::3", Some("2001:db8::1"));
}

/// DHCPv6 server messages (UDP 547 -> 546: Advertise, Reply, multicast) from
/// a VM without --allow-dhcp-server are dropped as dhcp_server, exactly; with
/// it they are delivered.
#[test]
fn dhcpv6_server_messages_are_stopped() {
    let lab = lab6(2);
    let (a, client) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &["2001:db8::1"], &[]);
    guard(&lab, client, &["2001:db8::2"], &[]);
    restart_with_dad(a);
    restart_with_dad(client);
    add_addr_ok(a, "2001:db8::1");

    let mut reply = vec![7, 0x12, 0x34, 0x56]; // REPLY, transaction id
    reply.extend_from_slice(&[0, 13, 0, 2, 0, 0]); // status code: success
    let frames = vec![
        eth6(
            client.mac(),
            a.mac(),
            &f::dhcpv6_advertise(a.mac(), client.mac(), g(0x100)),
        ),
        eth6(
            client.mac(),
            a.mac(),
            &f::udp6(ll(a), ll(client), 547, 546, &reply),
        ),
        eth6(
            f::ipv6_mcast_mac(f::ALL_NODES),
            a.mac(),
            &f::udp6(ll(a), f::ALL_NODES, 547, 546, &reply),
        ),
        eth6(
            client.mac(),
            a.mac(),
            &f::udp6(g(1), ll(client), 547, 546, &reply),
        ),
    ];
    let before = lab.counters(a);
    let got = deliver(a, client, &frames);
    let after = lab.counters(a);
    assert_eq!(got, 0, "{got} DHCPv6 server frames reached the client");
    assert_deltas(
        "DHCPv6 server",
        &before,
        &after,
        None,
        &[("dhcp_server", frames.len() as u64)],
    );

    bind(&lab, a, &["2001:db8::1"], &["--allow-dhcp-server"]);
    let before = lab.counters(a);
    let got = deliver(a, client, &frames);
    let after = lab.counters(a);
    assert_eq!(
        got,
        frames.len(),
        "with --allow-dhcp-server the frames should be delivered"
    );
    assert_deltas("allowed DHCPv6 server", &before, &after, None, &[]);
}

/// A real DHCPv6 exchange: dnsmasq in vm1 (not allowed to serve) and
/// `dhclient -6` in vm2. The Advertise never reaches the client, which gets
/// no lease; with --allow-dhcp-server it does.
#[test]
fn rogue_dnsmasq_dhcpv6_server_is_stopped() {
    need_tool("dnsmasq");
    need_tool("dhclient");
    let lab = lab6(2);
    let (srv, client) = (lab.vm(1), lab.vm(2));
    guard(&lab, srv, &["2001:db8::1"], &[]);
    guard(&lab, client, &["2001:db8::2"], &[]);
    restart_with_dad(srv);
    restart_with_dad(client);
    add_addr_ok(srv, "2001:db8::1");
    let tmp = TmpDir::new(&lab, "dhcp6");
    let mut dnsmasq = Proc::spawn(
        &srv.ns,
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--user=root",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--interface=eth0",
            "--dhcp-range=2001:db8::100,2001:db8::1ff,64,1h",
            &format!("--dhcp-leasefile={}", tmp.path("dnsmasq.leases").display()),
            &format!("--pid-file={}", tmp.path("dnsmasq.pid").display()),
            "--log-dhcp",
        ],
        &tmp.path("dnsmasq.log"),
    );
    thread::sleep(Duration::from_millis(500));
    dnsmasq.assert_running();
    let script = dhclient_script(&tmp);
    fs::write(tmp.path("dhclient.conf"), "timeout 20;\n").unwrap();
    let run_client = |tag: &str, secs: u64| -> (bool, String, Vec<Vec<u8>>) {
        let lease = tmp.path(&format!("{tag}.leases"));
        let cap = client.capture();
        let mut dh = Proc::spawn(
            &client.ns,
            &[
                "dhclient",
                "-6",
                "-d",
                "-1",
                "-v",
                "-cf",
                tmp.path("dhclient.conf").to_str().unwrap(),
                "-lf",
                lease.to_str().unwrap(),
                "-pf",
                tmp.path(&format!("{tag}.pid")).to_str().unwrap(),
                "-sf",
                script.to_str().unwrap(),
                "eth0",
            ],
            &tmp.path(&format!("{tag}.log")),
        );
        let got = eventually(secs, || {
            fs::read_to_string(&lease).is_ok_and(|l| l.contains("iaaddr")) || dh.exited().is_some()
        }) && fs::read_to_string(&lease).is_ok_and(|l| l.contains("iaaddr"));
        let log = dh.log();
        drop(dh);
        let frames = cap.finish();
        let server_frames = frames
            .into_iter()
            .filter(|fr| {
                fr.len() >= 14 + 48
                    && fr[6..12] == srv.mac()
                    && fr[12..14] == [0x86, 0xdd]
                    && fr[14 + 6] == f::IPPROTO_UDP
                    && fr[14 + 40..14 + 44] == [2, 35, 2, 34]
            })
            .collect();
        (got, log, server_frames)
    };

    let before = lab.counters(srv);
    let (leased, log, seen) = run_client("blocked", 8);
    let after = lab.counters(srv);
    assert!(
        !leased,
        "the client got a DHCPv6 lease from the rogue server:\n{log}"
    );
    assert!(
        seen.is_empty(),
        "{} DHCPv6 server frames reached the client",
        seen.len()
    );
    let drops = after.dropped("dhcp_server") - before.dropped("dhcp_server");
    assert!(
        drops >= 1,
        "dnsmasq's answers were not counted as dhcp_server ({before:?} -> {after:?});\ndnsmasq log:\n{}",
        dnsmasq.log()
    );
    assert_deltas(
        "rogue dnsmasq v6",
        &before,
        &after,
        None,
        &[("dhcp_server", drops)],
    );

    bind(&lab, srv, &["2001:db8::1"], &["--allow-dhcp-server"]);
    let (leased, log, seen) = run_client("allowed", 25);
    assert!(
        leased,
        "with --allow-dhcp-server the client should get a lease:\n{log}\ndnsmasq log:\n{}",
        dnsmasq.log()
    );
    assert!(
        !seen.is_empty(),
        "no DHCPv6 server frame captured at the client"
    );
    dnsmasq.assert_running();
}

/// A binding with a prefix (`--ip 2001:db8:1::/64`) allows every address in
/// it (several configured with DAD and used by ping, the first and the last
/// address of the prefix in crafted frames) and nothing outside it.
#[test]
fn prefix_binding_allows_any_address_in_it() {
    let lab = lab6(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &["2001:db8:1::/64"], &[]);
    guard(&lab, b, &["2001:db8:1::2", "2001:db8:2::2"], &[]);
    restart_with_dad(a);
    restart_with_dad(b);
    add_addr_ok(b, "2001:db8:1::2");
    add_addr_ok(b, "2001:db8:2::2");
    for addr in ["2001:db8:1::a", "2001:db8:1::1234:5678:9abc:def0"] {
        add_addr_ok(a, addr);
        assert_ping6(a, "2001:db8:1::2", Some(addr));
        assert_ping6(b, addr, None);
    }

    // Boundaries, crafted.
    let dst = f::v6("2001:db8:1::2");
    let echo = |src: &str| {
        eth6(
            b.mac(),
            a.mac(),
            &f::icmpv6_echo(f::v6(src), dst, 0x55, 1, b"prefix"),
        )
    };
    let inside = vec![
        echo("2001:db8:1::"),
        echo("2001:db8:1::ffff:ffff:ffff:ffff"),
    ];
    let outside = vec![
        echo("2001:db8:1:1::"),
        echo("2001:db8:0:ffff:ffff:ffff:ffff:ffff"),
    ];
    let before = lab.counters(a);
    assert_eq!(deliver(a, b, &inside), 2, "addresses at the prefix edges");
    assert_eq!(
        deliver(a, b, &outside),
        0,
        "addresses just outside the prefix"
    );
    let after = lab.counters(a);
    assert_deltas("prefix edges", &before, &after, None, &[("ipv6_spoof", 2)]);

    // Real programs: an address outside the prefix cannot be used, even
    // though vm2 would answer it (it owns 2001:db8:2::2).
    add_addr_ok(a, "2001:db8:2::1");
    let before = lab.counters(a);
    let (ok, out) = ping6(a, "2001:db8:2::2", Some("2001:db8:2::1"));
    assert!(
        !ok,
        "ping from 2001:db8:2::1 (outside the bound prefix) worked:\n{out}"
    );
    let after = lab.counters(a);
    assert!(
        after.dropped("ipv6_spoof") > before.dropped("ipv6_spoof"),
        "{after:?}"
    );
}

/// A VM whose link-local address is RFC 7217 stable-privacy (not EUI-64):
/// unbound, it cannot use it; bound explicitly (`--ip fe80::...`), real ND
/// and ping over it work.
#[test]
fn explicitly_bound_stable_privacy_link_local_is_allowed() {
    let lab = lab6(2);
    let (a, b) = (lab.vm(1), lab.vm(2));
    guard(&lab, a, &["2001:db8::1"], &[]);
    guard(&lab, b, &["2001:db8::2"], &[]);
    // RFC 7217 addresses for vm1: a stable secret switches addr_gen_mode to
    // stable_privacy; bouncing the link regenerates the link-local with DAD.
    sysctl(a, "net.ipv6.conf.eth0.stable_secret=2001:db8:7217::1");
    restart_with_dad(a);
    restart_with_dad(b);
    let x = wait_link_local(a);
    assert_ne!(x, ll(a), "vm1's link-local should not be EUI-64");
    assert!(
        !addrs(a).iter().any(|e| e.addr == ll(a)),
        "vm1 should have no EUI-64 link-local: {:?}",
        addrs(a)
    );
    let target = format!("{x}%eth0");

    // Not bound: the address is unusable (vm1's NA and echo replies from it are spoofs).
    let before = lab.counters(a);
    let (ok, out) = ping6(b, &target, None);
    assert!(
        !ok,
        "ping to vm1's unbound stable-privacy link-local worked:\n{out}"
    );
    let after = lab.counters(a);
    assert!(
        after.dropped("ipv6_spoof") > before.dropped("ipv6_spoof"),
        "{after:?}"
    );

    // Bound explicitly: it works both ways.
    let xs = x.to_string();
    bind(&lab, a, &["2001:db8::1", &xs], &[]);
    // vm2's entry for x is FAILED from the blocked attempt above; start resolution afresh.
    b.run(&["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    let before = lab.counters(a);
    assert_ping6(b, &target, None);
    assert_ping6(a, &format!("{}%eth0", ll(b)), None);
    let after = lab.counters(a);
    assert_deltas(
        "bound stable-privacy link-local",
        &before,
        &after,
        None,
        &[],
    );
    assert_eq!(neigh(b, x).as_deref(), Some("02:00:00:00:00:01"));

    // SLAAC with the kernel's own address configuration: a router (dnsmasq
    // sending RAs on the lab bridge) announces 2001:db8:1::/64; vm1, bound to
    // that prefix, forms an RFC 7217 stable-privacy address in it, whose DAD
    // probe (NS from :: for a target inside the bound prefix) passes, and uses it.
    need_tool("dnsmasq");
    bind(&lab, a, &["2001:db8::1", &xs, "2001:db8:1::/64"], &[]);
    let host = |args: &[&str]| {
        let o = Command::new("ip")
            .arg("-n")
            .arg(&lab.host)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "ip {args:?}: {o:?}");
    };
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.host,
            "sysctl",
            "-qw",
            "net.ipv6.conf.br0.disable_ipv6=0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    host(&[
        "-6",
        "addr",
        "add",
        "2001:db8:1::fe/64",
        "dev",
        "br0",
        "nodad",
    ]);
    let tmp = TmpDir::new(&lab, "ra");
    let mut router = Proc::spawn(
        &lab.host,
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--user=root",
            "--group=root",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--interface=br0",
            "--enable-ra",
            "--dhcp-range=2001:db8:1::,ra-only,64",
            "--ra-param=br0,3",
            &format!("--pid-file={}", tmp.path("ra.pid").display()),
            "--log-facility=-",
        ],
        &tmp.path("ra.log"),
    );
    for kv in [
        "net.ipv6.conf.eth0.accept_ra=2",
        "net.ipv6.conf.eth0.autoconf=1",
        "net.ipv6.conf.eth0.router_solicitations=3",
    ] {
        sysctl(a, kv);
    }
    let before = lab.counters(a);
    restart_with_dad(a);
    let in_prefix = |e: &Addr| e.addr.segments()[..4] == [0x2001, 0xdb8, 1, 0];
    let ok = eventually(20, || {
        addrs(a)
            .iter()
            .any(|e| in_prefix(e) && !e.tentative && !e.dadfailed)
    });
    let all = addrs(a);
    assert!(
        ok,
        "no SLAAC address in 2001:db8:1::/64: {all:?}
router:
{}",
        router.log()
    );
    let slaac = all.iter().find(|e| in_prefix(e)).unwrap().addr;
    let iid = &slaac.octets()[8..];
    assert!(
        !(iid[3] == 0xff && iid[4] == 0xfe),
        "{slaac} is EUI-64, not RFC 7217"
    );
    assert_ping6(a, "2001:db8:1::fe", Some(&slaac.to_string()));
    let after = lab.counters(a);
    assert_deltas("SLAAC with RFC 7217", &before, &after, None, &[]);
    router.assert_running();
}
