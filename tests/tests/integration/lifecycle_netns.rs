//! Ports that come and go (issue #13): the daemon follows rtnetlink link
//! events. Interfaces created after it starts, deleted and recreated under
//! the same name (veth and tap), renamed, moved to another namespace, 100 at
//! once, changed while the daemon is down, guarded by a pattern: each is
//! enforced (no spoofed frame passes) and `show`/`stats` are exact (one
//! entry per interface, none for a deleted ifindex). Plus the plain CLI:
//! `attach` over a severed link, `show`/`stats` of a deleted interface.
//!
//! Needs root. Run through `cargo xtask test`, or
//! `cargo test -p portguard-tests --test integration lifecycle_netns::`.
use std::{
    fs,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
    thread,
};

use portguard_tests::{
    cli::{self, PortCounters},
    frames::{self as f, Mac},
    netns::{enter_netns, must, send_and_count, Lab, Vm, VmSpec},
    proc::{eventually, Proc, TmpDir},
};
use serde_json::Value;

/// A source address no port is bound to.
const SPOOF: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// A destination no VM owns (no replies disturb counters).
const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

/// A lab, a scratch directory (config, audit log, daemon log) and the daemon.
struct Env {
    lab: Lab,
    tmp: TmpDir,
    daemon: Option<Proc>,
    /// Daemon runs so far (each has its own log).
    runs: usize,
}

impl Env {
    fn new(vms: u8) -> Env {
        let lab = Lab::new(vms);
        let tmp = TmpDir::new(&lab, "lifecycle");
        Env {
            lab,
            tmp,
            daemon: None,
            runs: 0,
        }
    }

    fn config(&self) -> PathBuf {
        self.tmp.path("portguard.toml")
    }

    fn write_config(&self, text: &str) {
        // Through a rename, so the daemon never reads half a file.
        let t = self.tmp.path("portguard.toml.new");
        fs::write(&t, text).unwrap();
        fs::rename(&t, self.config()).unwrap();
    }

    fn pg(&self, args: &[&str]) -> std::process::Output {
        let audit = self.tmp.s("audit.jsonl");
        let mut v = vec!["--audit-log", audit.as_str()];
        v.extend_from_slice(args);
        self.lab.pg(&v)
    }

    fn pg_ok(&self, args: &[&str]) -> String {
        let o = self.pg(args);
        assert!(
            o.status.success(),
            "portguard {args:?} failed: {}{}",
            cli::stdout(&o),
            cli::stderr(&o)
        );
        cli::stdout(&o)
    }

    /// Starts the daemon and waits for its first full sync.
    fn start(&mut self) {
        self.runs += 1;
        let log = self.tmp.path(&format!("daemon{}.log", self.runs));
        let bin = cli::bin().display().to_string();
        let pin = self.lab.pin_dir.display().to_string();
        let audit = self.tmp.s("audit.jsonl");
        let config = self.config().display().to_string();
        let argv = [
            bin.as_str(),
            "--pin-dir",
            &pin,
            "--audit-log",
            &audit,
            "daemon",
            "--config",
            &config,
            "--poll-interval",
            "0.2",
        ];
        self.daemon = Some(Proc::spawn(&self.lab.host, &argv, &log));
        assert!(
            eventually(30, || self.log().contains("applied ")),
            "daemon did not start: {}",
            self.log()
        );
    }

    /// SIGTERM (enforcement stays in place).
    fn stop(&mut self) {
        self.daemon = None;
    }

    /// SIGKILL: no chance to tidy anything.
    fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(|d| d.log()).unwrap_or_default()
    }

    fn show(&self) -> Vec<Value> {
        cli::json(&self.pg(&["show", "--json"]))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn stats(&self) -> Vec<Value> {
        cli::json(&self.pg(&["stats", "--json"]))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn ifindex(&self, name: &str) -> Option<u32> {
        self.lab.host_ifindex(name)
    }

    /// The port is bound and attached, on the interface's current ifindex,
    /// with the program really on the interface.
    fn enforced(&self, name: &str) -> bool {
        let Some(i) = self.ifindex(name) else {
            return false;
        };
        self.show().iter().any(|e| {
            e["iface"] == name && e["ifindex"] == i && e["bound"] == true && e["attached"] == true
        }) && self.lab.check_mode(name).is_some()
    }

    fn wait_enforced(&self, name: &str) {
        assert!(
            eventually(30, || self.enforced(name)),
            "{name} not enforced: show {:?}\n{}",
            self.show(),
            self.log()
        );
    }

    /// `show --json` and `stats --json` list exactly `names`, once each, on
    /// their current ifindex, attached unless listed in `detached`: no
    /// duplicate, no stale record, no deleted ifindex reported attached.
    fn assert_exact(&self, names: &[&str]) {
        let mut want: Vec<(String, u32)> = names
            .iter()
            .map(|n| {
                let i = self.ifindex(n).unwrap_or_else(|| panic!("{n} missing"));
                (n.to_string(), i)
            })
            .collect();
        want.sort();
        let ids = |v: &[Value]| {
            let mut got: Vec<(String, u32)> = v
                .iter()
                .map(|e| {
                    (
                        e["iface"].as_str().unwrap().to_string(),
                        e["ifindex"].as_u64().unwrap() as u32,
                    )
                })
                .collect();
            got.sort();
            got
        };
        let show = self.show();
        assert_eq!(ids(&show), want, "show --json: {show:?}\n{}", self.log());
        for e in &show {
            assert_eq!(e["stale"], false, "{e}");
            assert_eq!(e["attached"], true, "{e}");
        }
        let stats = self.stats();
        assert_eq!(ids(&stats), want, "stats --json: {stats:?}");
        assert!(stats.iter().all(|e| e["stale"] == false), "{stats:?}");
    }

    /// Whether `show` and `stats` list exactly `names` (for polling).
    fn lists_exactly(&self, names: &[&str]) -> bool {
        let mut want: Vec<&str> = names.to_vec();
        want.sort();
        let mut got: Vec<String> = self
            .show()
            .iter()
            .map(|e| e["iface"].as_str().unwrap_or("").to_string())
            .collect();
        got.sort();
        got == want
    }

    /// A VM created now, like an orchestrator does it: the host-side veth
    /// `host_if` is created, joined to the bridge, then brought up.
    fn add_vm(&mut self, i: u8, host_if: &str) -> Vm {
        let ns = format!("{}-x{i}", self.lab.id);
        must(&["ip", "netns", "add", &ns]);
        let vm = Vm {
            ns: ns.clone(),
            iface: "eth0".into(),
            host_if: host_if.into(),
            host_ifindex: 0,
            spec: VmSpec::numbered(i),
        };
        // The lab removes it (also on panic).
        self.lab.vms.push(vm.clone());
        for k in ["all", "default"] {
            must(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
            ]);
        }
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        self.plug(&vm);
        vm
    }

    /// (Re)creates `vm`'s veth pair and brings it up on the bridge.
    fn plug(&self, vm: &Vm) {
        let h = &self.lab.host;
        must(&[
            "ip",
            "-n",
            h,
            "link",
            "add",
            &vm.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &vm.ns,
        ]);
        let mac = f::mac_str(&vm.mac());
        must(&["ip", "-n", &vm.ns, "link", "set", "eth0", "address", &mac]);
        let (a, l) = vm.spec.v4[0];
        must(&[
            "ip",
            "-n",
            &vm.ns,
            "addr",
            "add",
            &format!("{a}/{l}"),
            "dev",
            "eth0",
        ]);
        must(&["ip", "-n", h, "link", "set", &vm.host_if, "master", "br0"]);
        must(&["ip", "-n", h, "link", "set", &vm.host_if, "up"]);
        must(&["ip", "-n", &vm.ns, "link", "set", "eth0", "up"]);
    }

    fn counters(&self, host_if: &str) -> PortCounters {
        cli::counters(&self.lab.host, &self.lab.pin_dir, host_if)
    }

    /// From `a` to `b`: a legitimate frame arrives (retried while the bridge
    /// port comes up); 20 spoofed frames do not, and `a`'s port counts them
    /// as `ipv4_spoof`.
    fn assert_no_spoof_passes(&self, a: &Vm, b: &Vm, what: &str) {
        let legit = udp_frame(a.mac(), a.ip4(), b.mac());
        assert!(
            eventually(10, || send_and_count(
                &a.ns,
                &a.iface,
                &b.ns,
                &b.iface,
                std::slice::from_ref(&legit)
            ) == 1),
            "{what}: a legitimate frame from {} does not arrive",
            a.host_if
        );
        let before = self.counters(&a.host_if);
        let spoofed = vec![udp_frame(a.mac(), SPOOF, b.mac()); 20];
        assert_eq!(
            send_and_count(&a.ns, &a.iface, &b.ns, &b.iface, &spoofed),
            0,
            "{what}: spoofed frames from {} were delivered",
            a.host_if
        );
        let after = self.counters(&a.host_if);
        cli::assert_deltas(what, &before, &after, Some(0), &[("ipv4_spoof", 20)]);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The daemon first: it must not react to the lab's teardown.
        self.daemon = None;
    }
}

fn udp_frame(smac: Mac, sip: Ipv4Addr, dmac: Mac) -> Vec<u8> {
    f::eth(
        dmac,
        smac,
        f::ETH_P_IP,
        &f::udp4(sip, NOBODY, 40000, 9, b"portguard lifecycle test"),
    )
}

/// One `[[port]]` table for VM number `i` on `iface`.
fn port(iface: &str, i: u8) -> String {
    let s = VmSpec::numbered(i);
    format!(
        "[[port]]\niface = {iface:?}\nmac = \"{}\"\nips = [\"{}\"]\n\n",
        f::mac_str(&s.mac),
        s.v4[0].0
    )
}

/// Writes `frames` into tap `tap` of netns `ns` as the VM behind it would
/// (/dev/net/tun, no packet-info header): they enter the host there.
fn tap_write(ns: &str, tap: &str, frames: &[Vec<u8>]) {
    let (ns, tap, frames) = (ns.to_string(), tap.to_string(), frames.to_vec());
    thread::spawn(move || {
        enter_netns(&ns).unwrap();
        // SAFETY: open/ioctl/write on an fd we own, with a zeroed ifreq.
        unsafe {
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            assert!(
                fd >= 0,
                "open /dev/net/tun: {}",
                std::io::Error::last_os_error()
            );
            let fd = OwnedFd::from_raw_fd(fd);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(tap.as_bytes()) {
                *d = *s as libc::c_char;
            }
            ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
            const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
            assert_eq!(
                libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &ifr),
                0,
                "TUNSETIFF {tap}: {}",
                std::io::Error::last_os_error()
            );
            for fr in &frames {
                let n = libc::write(fd.as_raw_fd(), fr.as_ptr() as *const libc::c_void, fr.len());
                assert_eq!(n, fr.len() as isize, "write to {tap}");
            }
        }
    })
    .join()
    .expect("tap writer");
}

// ------------------------------------------------------------------ the CLI

/// `attach` over a severed link (the tap was deleted and recreated under
/// its name: new ifindex) replaces it, and `show`/`stats` never report the
/// deleted ifindex as attached. Fails on the old code: `attach` stopped
/// with "Link has been severed" and `show` listed the old ifindex attached.
#[test]
fn attach_replaces_a_severed_link_and_show_stats_mark_the_stale_record() {
    let env = Env::new(1);
    let h = env.lab.host.clone();
    let tap = |args: &[&str]| {
        let mut v = vec!["ip", "-n", h.as_str(), "tuntap"];
        v.extend_from_slice(args);
        must(&v);
    };
    tap(&["add", "dev", "tp1", "mode", "tap"]);
    env.pg_ok(&["attach", "tp1"]);
    env.pg_ok(&[
        "bind",
        "tp1",
        "--mac",
        "02:00:00:00:00:07",
        "--ip",
        "192.0.2.7",
    ]);
    let old = env.ifindex("tp1").unwrap();

    // Deleted: its record is stale, listed once with its ifindex, not attached.
    tap(&["del", "dev", "tp1", "mode", "tap"]);
    let show = env.show();
    let e: Vec<&Value> = show.iter().filter(|e| e["iface"] == "tp1").collect();
    assert_eq!(e.len(), 1, "{show:?}");
    assert_eq!(e[0]["ifindex"], old);
    assert_eq!(e[0]["attached"], false, "{}", e[0]);
    assert_eq!(e[0]["attach_mode"], Value::Null, "{}", e[0]);
    assert_eq!(e[0]["stale"], true, "{}", e[0]);
    let text = env.pg_ok(&["show"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("tp1") && l.contains("stale")),
        "{text}"
    );
    let stats = env.stats();
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0]["stale"], true);
    // Metrics: not attached, counted as stale, no per-port series.
    let m = env.pg_ok(&["metrics", "--once"]);
    assert!(m.lines().any(|l| l == "portguard_attached_ports 0"), "{m}");
    assert!(m.lines().any(|l| l == "portguard_stale_records 1"), "{m}");
    assert!(!m.contains("iface=\"tp1\""), "{m}");

    // Recreated under the same name: `attach` replaces the severed link.
    tap(&["add", "dev", "tp1", "mode", "tap"]);
    let new = env.ifindex("tp1").unwrap();
    assert_ne!(new, old);
    let out = env.pg_ok(&["attach", "tp1"]);
    assert!(
        out.contains(&format!("removed the stale record of ifindex {old}")),
        "{out}"
    );
    assert!(
        env.lab.check_mode("tp1").is_some(),
        "no program on the new tp1"
    );
    // The binding is not carried over (vnetN names are reused across VMs):
    // attached, unbound, fail closed.
    let show = env.show();
    assert_eq!(show.len(), 1, "{show:?}");
    assert_eq!(show[0]["ifindex"], new);
    assert_eq!(show[0]["attached"], true);
    assert_eq!(show[0]["bound"], false);
    env.pg_ok(&[
        "bind",
        "tp1",
        "--mac",
        "02:00:00:00:00:07",
        "--ip",
        "192.0.2.7",
    ]);
    env.assert_exact(&["tp1"]);
    let m = env.pg_ok(&["metrics", "--once"]);
    assert!(m.lines().any(|l| l == "portguard_attached_ports 1"), "{m}");
    assert!(m.lines().any(|l| l == "portguard_stale_records 0"), "{m}");
    let series = m
        .lines()
        .filter(|l| l.starts_with("portguard_passed_packets_total{") && l.contains("iface=\"tp1\""))
        .count();
    assert_eq!(series, 1, "{m}");
    // Attaching again is the hitless in-place replacement, as before.
    let out = env.pg_ok(&["attach", "tp1"]);
    assert!(out.contains("replaced in place"), "{out}");
    env.assert_exact(&["tp1"]);
}

// --------------------------------------------------------------- the daemon

/// Interfaces created after the daemon starts, then deleted and recreated
/// under the same name (new ifindex): bound and attached each time, the
/// stale record gone at once.
#[test]
fn daemon_follows_veths_created_deleted_and_recreated() {
    let mut env = Env::new(1);
    env.write_config(&(port("vm1", 1) + &port("vm2", 2)));
    env.start();
    env.wait_enforced("vm1");
    assert!(env.log().contains("! vm2: skipped"), "{}", env.log());

    let vm2 = env.add_vm(2, "vm2");
    env.wait_enforced("vm2");
    let vm1 = env.lab.vm(1).clone();
    env.assert_no_spoof_passes(&vm2, &vm1, "vm2 created after start");
    env.assert_exact(&["vm1", "vm2"]);

    let old = env.ifindex("vm2").unwrap();
    must(&["ip", "-n", &env.lab.host, "link", "del", "vm2"]);
    assert!(
        eventually(20, || env.lists_exactly(&["vm1"])),
        "vm2's stale record not removed: {:?}\n{}",
        env.show(),
        env.log()
    );
    assert!(env
        .log()
        .contains(&format!("- vm2: interface gone (ifindex {old})")));
    env.assert_exact(&["vm1"]);

    env.plug(&vm2);
    assert_ne!(env.ifindex("vm2"), Some(old));
    env.wait_enforced("vm2");
    env.assert_no_spoof_passes(&vm2, &vm1, "vm2 recreated");
    env.assert_exact(&["vm1", "vm2"]);
}

/// A tap (libvirt's vnetN) deleted and recreated under its name while the
/// daemon runs: enforced afresh on the new ifindex.
#[test]
fn daemon_follows_a_tap_deleted_and_recreated() {
    let mut env = Env::new(1);
    env.write_config(&port("tp5", 5));
    env.start();
    let h = env.lab.host.clone();
    let create = || {
        must(&["ip", "-n", &h, "tuntap", "add", "dev", "tp5", "mode", "tap"]);
        must(&["ip", "-n", &h, "link", "set", "tp5", "master", "br0"]);
        must(&["ip", "-n", &h, "link", "set", "tp5", "up"]);
    };
    let vm1 = env.lab.vm(1).clone();
    let tap_mac = VmSpec::numbered(5).mac;
    let check = |what: &str| {
        env.wait_enforced("tp5");
        let before = env.counters("tp5");
        let spoofed = vec![udp_frame(tap_mac, SPOOF, vm1.mac()); 10];
        let cap = vm1.capture();
        tap_write(&h, "tp5", &spoofed);
        tap_write(
            &h,
            "tp5",
            &[udp_frame(tap_mac, Ipv4Addr::new(192, 0, 2, 5), vm1.mac())],
        );
        let got = cap.finish();
        assert!(
            !got.iter().any(|g| spoofed.iter().any(|s| g == s)),
            "{what}: a spoofed frame from the tap was delivered"
        );
        let after = env.counters("tp5");
        cli::assert_deltas(what, &before, &after, Some(1), &[("ipv4_spoof", 10)]);
        env.assert_exact(&["tp5"]);
    };
    create();
    check("tap created");
    let old = env.ifindex("tp5").unwrap();
    must(&["ip", "-n", &h, "tuntap", "del", "dev", "tp5", "mode", "tap"]);
    assert!(
        eventually(20, || env.lists_exactly(&[])),
        "{:?}",
        env.show()
    );
    create();
    assert_ne!(env.ifindex("tp5"), Some(old));
    check("tap recreated");
}

/// Renamed: the record and links follow the interface; a binding that was
/// another name's is dropped (fail closed); the desired name binds again
/// when it comes back. Moved to another namespace: the record goes; moved
/// back: enforced again.
#[test]
fn daemon_follows_renames_and_namespace_moves() {
    let mut env = Env::new(2);
    env.write_config(&(port("vm1", 1) + &port("vm2", 2)));
    env.start();
    env.wait_enforced("vm1");
    env.wait_enforced("vm2");
    let (vm1, vm2) = (env.lab.vm(1).clone(), env.lab.vm(2).clone());
    let h = env.lab.host.clone();
    let ip = |args: &[&str]| {
        let mut v = vec!["ip", "-n", h.as_str()];
        v.extend_from_slice(args);
        must(&v);
    };
    let index = env.ifindex("vm1").unwrap();

    // vm1 -> vmz (not in the file): same ifindex, still attached, unbound.
    ip(&["link", "set", "vm1", "down"]);
    ip(&["link", "set", "vm1", "name", "vmz"]);
    ip(&["link", "set", "vmz", "up"]);
    assert!(
        eventually(20, || env.show().iter().any(|e| e["iface"] == "vmz"
            && e["ifindex"] == index
            && e["bound"] == false
            && e["attached"] == true)),
        "rename not followed: {:?}\n{}",
        env.show(),
        env.log()
    );
    env.assert_exact(&["vmz", "vm2"]);
    assert!(env.lab.pin_dir.join("links/vmz").exists());
    assert!(!env.lab.pin_dir.join("links/vm1").exists());
    // Fail closed: nothing from it passes, not even what vm1 could send.
    let before = env.counters("vmz");
    let frames = vec![
        udp_frame(vm1.mac(), vm1.ip4(), vm2.mac()),
        udp_frame(vm1.mac(), SPOOF, vm2.mac()),
    ];
    assert_eq!(
        send_and_count(&vm1.ns, &vm1.iface, &vm2.ns, &vm2.iface, &frames),
        0
    );
    let after = env.counters("vmz");
    cli::assert_deltas(
        "renamed away",
        &before,
        &after,
        Some(0),
        &[("unbound_port", 2)],
    );

    // Back to vm1: bound again from the file.
    ip(&["link", "set", "vmz", "down"]);
    ip(&["link", "set", "vmz", "name", "vm1"]);
    ip(&["link", "set", "vm1", "up"]);
    env.wait_enforced("vm1");
    assert_eq!(env.ifindex("vm1"), Some(index));
    env.assert_no_spoof_passes(&vm1, &vm2, "renamed back");
    env.assert_exact(&["vm1", "vm2"]);

    // Moved to another namespace: gone from here (record and pins), and
    // the program no longer runs on it there.
    let other = format!("{}-mv", env.lab.id);
    must(&["ip", "netns", "add", &other]);
    let _other = NetnsGuard(other.clone());
    ip(&["link", "set", "vm1", "netns", &other]);
    assert!(
        eventually(20, || env.lists_exactly(&["vm2"])),
        "moved interface still listed: {:?}\n{}",
        env.show(),
        env.log()
    );
    env.assert_exact(&["vm2"]);
    assert!(!env.lab.pin_dir.join("links/vm1").exists());
    // Back: enforced again.
    must(&["ip", "-n", &other, "link", "set", "vm1", "netns", &h]);
    ip(&["link", "set", "vm1", "master", "br0"]);
    ip(&["link", "set", "vm1", "up"]);
    env.wait_enforced("vm1");
    env.assert_no_spoof_passes(&vm1, &vm2, "moved back");
    env.assert_exact(&["vm1", "vm2"]);
}

/// Deletes a network namespace on drop.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// 100 interfaces created at once (one `ip -batch`), then deleted at once.
#[test]
fn daemon_hundred_interfaces_at_once() {
    let mut env = Env::new(0);
    let n = 100;
    let name = |i: usize| format!("pp{i}");
    let mut config = String::new();
    for i in 0..n {
        config.push_str(&format!(
            "[[port]]\niface = \"{}\"\nmac = \"02:00:00:01:00:{i:02x}\"\nips = [\"198.51.100.{}\"]\n\n",
            name(i),
            i + 1
        ));
    }
    env.write_config(&config);
    env.start();
    let batch = env.tmp.path("add.batch");
    let mut add = String::new();
    let mut del = String::new();
    for i in 0..n {
        add.push_str(&format!("link add {} type veth peer name pq{i}\n", name(i)));
        add.push_str(&format!("link set pq{i} up\n"));
        add.push_str(&format!("link set {} up\n", name(i)));
        del.push_str(&format!("link del {}\n", name(i)));
    }
    fs::write(&batch, &add).unwrap();
    must(&[
        "ip",
        "-n",
        &env.lab.host,
        "-batch",
        &batch.display().to_string(),
    ]);
    let names: Vec<String> = (0..n).map(name).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(
        eventually(60, || {
            let show = env.show();
            show.len() == n
                && show
                    .iter()
                    .all(|e| e["bound"] == true && e["attached"] == true)
        }),
        "not all {n} enforced: {} listed\n{}",
        env.show().len(),
        env.log()
    );
    env.assert_exact(&refs);
    // Spoofed frames into a few of them (from the peer end) are dropped.
    for i in [0, 57, 99] {
        let before = env.counters(&name(i));
        let mac = [2, 0, 0, 1, 0, i as u8];
        let frames = vec![udp_frame(mac, SPOOF, [2, 0, 0, 0, 0, 0xfe]); 5];
        portguard_tests::netns::send_raw(&env.lab.host, &format!("pq{i}"), &frames).unwrap();
        assert!(eventually(10, || {
            let after = env.counters(&name(i));
            after.dropped("ipv4_spoof") - before.dropped("ipv4_spoof") == 5
                && after.passed == before.passed
        }));
    }
    fs::write(&batch, &del).unwrap();
    must(&[
        "ip",
        "-n",
        &env.lab.host,
        "-batch",
        &batch.display().to_string(),
    ]);
    assert!(
        eventually(60, || env.lists_exactly(&[])),
        "stale records left: {}\n{}",
        env.show().len(),
        env.log()
    );
}

/// The daemon is killed, interfaces change while it is down (one deleted
/// and recreated: new ifindex; one created; one deleted), and it starts
/// again: everything converges, nothing stale is left.
#[test]
fn daemon_restarted_while_interfaces_change() {
    let mut env = Env::new(2);
    env.write_config(&(port("vm1", 1) + &port("vm2", 2) + &port("vm3", 3)));
    env.start();
    env.wait_enforced("vm1");
    env.wait_enforced("vm2");
    env.kill();
    let (vm1, vm2) = (env.lab.vm(1).clone(), env.lab.vm(2).clone());
    let old1 = env.ifindex("vm1").unwrap();
    must(&["ip", "-n", &env.lab.host, "link", "del", "vm1"]);
    env.plug(&vm1);
    let vm3 = env.add_vm(3, "vm3");
    must(&["ip", "-n", &env.lab.host, "link", "del", "vm2"]);
    // While down: the recreated vm1 is not enforced, its old record is stale.
    assert!(env
        .show()
        .iter()
        .any(|e| e["ifindex"] == old1 && e["stale"] == true && e["attached"] == false));

    env.start();
    env.wait_enforced("vm1");
    env.wait_enforced("vm3");
    assert_ne!(env.ifindex("vm1"), Some(old1));
    env.assert_exact(&["vm1", "vm3"]);
    env.assert_no_spoof_passes(&vm1, &vm3, "vm1 after restart");
    env.assert_no_spoof_passes(&vm3, &vm1, "vm3 after restart");
    // And it keeps following: vm2 comes back.
    env.plug(&vm2);
    env.wait_enforced("vm2");
    env.assert_exact(&["vm1", "vm2", "vm3"]);
    env.stop();
}

/// `[[guard]]` patterns: a matching veth or tap is attached fail-closed
/// (`unbound_port`, shown as guarded-unbound) the moment it appears; a
/// port added to the file later opens it.
#[test]
fn daemon_guard_pattern_fail_closed_then_opened_by_a_binding() {
    let mut env = Env::new(1);
    let guards = "[[guard]]\niface = \"gv*\"\n\n[[guard]]\niface = \"tg?\"\n\n";
    env.write_config(guards);
    env.start();
    let h = env.lab.host.clone();
    let gv4 = env.add_vm(4, "gv4");
    must(&["ip", "-n", &h, "tuntap", "add", "dev", "tg1", "mode", "tap"]);
    let guarded = |name: &str| {
        env.show().iter().any(|e| {
            e["iface"] == name
                && e["ifindex"] == env.ifindex(name).unwrap_or(0)
                && e["attached"] == true
                && e["bound"] == false
                && e["guarded"] == true
                && e["status"] == "guarded-unbound"
        }) && env.lab.check_mode(name).is_some()
    };
    assert!(
        eventually(30, || guarded("gv4") && guarded("tg1")),
        "not guarded: {:?}\n{}",
        env.show(),
        env.log()
    );
    let text = env.pg_ok(&["show"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("gv4") && l.contains("guarded-unbound")),
        "{text}"
    );
    env.assert_exact(&["gv4", "tg1"]);
    // Fail closed: nothing passes, legitimate or not.
    let vm1 = env.lab.vm(1).clone();
    let before = env.counters("gv4");
    let frames = vec![
        udp_frame(gv4.mac(), gv4.ip4(), vm1.mac()),
        udp_frame(gv4.mac(), SPOOF, vm1.mac()),
    ];
    assert_eq!(
        send_and_count(&gv4.ns, &gv4.iface, &vm1.ns, &vm1.iface, &frames),
        0
    );
    let after = env.counters("gv4");
    cli::assert_deltas("guarded", &before, &after, Some(0), &[("unbound_port", 2)]);

    // A binding arrives (the file names the port now): open, and enforced.
    env.write_config(&(guards.to_string() + &port("gv4", 4)));
    env.wait_enforced("gv4");
    assert!(env
        .show()
        .iter()
        .any(|e| e["iface"] == "gv4" && e["guarded"] == false && e["status"] == "enforce"));
    env.assert_no_spoof_passes(&gv4, &vm1, "guarded port bound");
    env.assert_exact(&["gv4", "tg1"]);
}

/// The library API a fleet agent drives: desired state as a whole, one
/// port upserted or removed, pending / enforced / error per port, fed with
/// link events in-process.
#[test]
fn reconciler_api() {
    use portguard::{
        lifecycle::{Guard, LinkEvents, Options, PortStatus, Received, Reconciler},
        spec::PortSpec,
        state::{Port, State},
    };
    let env = Env::new(0);
    let host = env.lab.host.clone();
    must(&[
        "ip", "-n", &host, "tuntap", "add", "dev", "tn1", "mode", "tun",
    ]);
    let port = |name: &str, ip: &str| {
        let spec: PortSpec = serde_json::from_value(serde_json::json!({
            "iface": name, "mac": "02:00:00:00:00:31", "ips": [ip],
        }))
        .unwrap();
        Port::from_spec(&spec, "test").unwrap()
    };
    let opts = Options {
        pin_dir: env.lab.pin_dir.clone(),
        audit_log: env.tmp.path("audit.jsonl"),
        prune: true,
        audit_command: "test".into(),
        max_ports: None,
    };
    let ip = |args: &[&str]| {
        let mut v = vec!["ip", "-n", host.as_str()];
        v.extend_from_slice(args);
        must(&v);
    };
    let show = || env.show();
    thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&host).unwrap();
            let mut events = LinkEvents::subscribe().unwrap();
            let mut r = Reconciler::new(opts, |m| eprintln!("reconciler: {m}"));
            // Feeds link events until `done` (or 20 s).
            let mut pump = |r: &mut Reconciler, done: &dyn Fn(&Reconciler) -> bool| {
                let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while !done(r) {
                    assert!(
                        std::time::Instant::now() < end,
                        "timed out: {:?}",
                        r.ports()
                    );
                    match events.next(std::time::Duration::from_millis(100)).unwrap() {
                        Received::Events(evs) => {
                            for ev in &evs {
                                let _ = r.on_event(ev);
                            }
                        }
                        Received::Overrun => {
                            let _ = r.resync();
                        }
                        Received::Timeout => {}
                    }
                }
            };
            let st = State {
                ports: vec![port("ra1", "192.0.2.31"), port("tn1", "192.0.2.32")],
                guards: vec![Guard::new("rg*").unwrap()],
            };
            // tn1 is a tun (no Ethernet): that port fails, the others converge.
            assert!(r.set_desired(st).is_err());
            assert_eq!(r.pending(), ["ra1"]);
            let errs = r.errors();
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(errs[0].1.contains("not an Ethernet device"), "{errs:?}");

            ip(&["link", "add", "ra1", "type", "veth", "peer", "name", "rb1"]);
            pump(&mut r, &|r| !r.enforced().is_empty());
            let (name, ifindex, mode) = r.enforced()[0].clone();
            assert_eq!(name, "ra1");
            assert_eq!(ifindex, portguard::iface::index("ra1").unwrap());
            assert!(mode.is_some());
            assert_eq!(
                r.status("ra1"),
                Some(PortStatus::Enforced {
                    ifindex,
                    attach_mode: mode
                })
            );

            // One port changed.
            r.upsert_port(port("ra1", "192.0.2.41")).unwrap();
            let e = show();
            let ra1 = e.iter().find(|e| e["iface"] == "ra1").unwrap();
            assert_eq!(ra1["ips"], serde_json::json!(["192.0.2.41"]));

            // A guarded interface appears; then a port for it; then it is removed again.
            ip(&["link", "add", "rg1", "type", "veth", "peer", "name", "rh1"]);
            pump(&mut r, &|_| {
                show()
                    .iter()
                    .any(|e| e["iface"] == "rg1" && e["status"] == "guarded-unbound")
            });
            r.upsert_port(port("rg1", "192.0.2.42")).unwrap();
            assert!(matches!(r.status("rg1"), Some(PortStatus::Enforced { .. })));
            r.remove_port("rg1").unwrap();
            assert_eq!(r.status("rg1"), None);
            let e = show();
            let rg1 = e.iter().find(|e| e["iface"] == "rg1").unwrap();
            assert_eq!(
                (
                    rg1["bound"].clone(),
                    rg1["attached"].clone(),
                    rg1["guarded"].clone()
                ),
                (false.into(), true.into(), true.into()),
                "{rg1}"
            );
            // Not guarded, with prune: unbound and detached.
            r.remove_port("ra1").unwrap();
            assert!(!show().iter().any(|e| e["iface"] == "ra1"));
            assert!(!env.lab.pin_dir.join("links/ra1").exists());

            // Deleted: its record goes.
            ip(&["link", "del", "rg1"]);
            pump(&mut r, &|_| show().is_empty());
        });
    });
}

/// Bad daemon input: a one-line error naming the problem, non-zero exit,
/// nothing started.
#[test]
fn daemon_refuses_bad_guards_and_intervals() {
    let env = Env::new(0);
    env.write_config("[[guard]]\niface = \"vnet*\"\n\n[[guard]]\niface = \"*\"\n");
    let config = env.config().display().to_string();
    let o = env.pg(&["daemon", "--config", &config]);
    assert!(!o.status.success());
    assert!(cli::one_line_error(&o), "{}", cli::stderr(&o));
    let e = cli::stderr(&o);
    assert!(
        e.contains("line 4")
            && e.contains("guard[1].iface")
            && e.contains("matches every interface"),
        "{e}"
    );
    env.write_config("[[guard]]\niface = \"vnet*\"\n");
    let o = env.pg(&["daemon", "--config", &config, "--resync-interval", "0"]);
    assert!(!o.status.success());
    assert!(cli::one_line_error(&o), "{}", cli::stderr(&o));
    assert!(
        cli::stderr(&o).contains("--resync-interval"),
        "{}",
        cli::stderr(&o)
    );
    assert!(
        !env.lab.pin_dir.join("maps").exists(),
        "something was created"
    );
}
