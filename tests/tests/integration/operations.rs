//! Acceptance tests for "safe operation": declarative state (`apply`,
//! `--dry-run`, `--prune`, invalid files), monitor -> enforce, hitless
//! upgrade under traffic, layout-version refusal, SIGKILL in the middle of
//! `apply`, and the daemon (start, SIGHUP, file change, metrics, events log,
//! SIGTERM leaving enforcement in place).
//!
//! Needs root (namespaces, XDP). Run through `cargo xtask test`, or
//! `PORTGUARD_BIN=... cargo test -p portguard-tests --test integration operations::`.
use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use portguard_tests::{
    cli::{self, PortCounters},
    frames::{self as f, Mac},
    netns::{frame_matches, send_and_count, send_raw, Lab, Vm},
    // The upgrade and SIGKILL tests time things and load the CPUs: one at a
    // time, and never next to another suite's heavy test.
    serial::heavy,
};
use serde_json::Value;

/// A destination no VM owns (VMs drop it silently: no replies disturb counters).
const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
/// A source no port is ever bound to.
const SPOOF: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

/// A lab plus a scratch directory (state files, audit log, daemon logs).
struct Ops {
    dir: PathBuf,
    lab: Lab,
}

impl Drop for Ops {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Ops {
    fn new(n: u8) -> Ops {
        let lab = Lab::new(n);
        let dir = std::env::temp_dir().join(format!("{}-ops", lab.id));
        fs::create_dir_all(&dir).unwrap();
        Ops { dir, lab }
    }

    fn vm(&self, i: usize) -> &Vm {
        self.lab.vm(i)
    }

    fn audit_path(&self) -> String {
        self.dir.join("audit.jsonl").display().to_string()
    }

    fn audit_lines(&self) -> Vec<Value> {
        fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// The CLI with this test's audit log.
    fn pg(&self, args: &[&str]) -> Output {
        let audit = self.audit_path();
        let mut v = vec!["--audit-log", audit.as_str()];
        v.extend_from_slice(args);
        self.lab.pg(&v)
    }

    fn pg_ok(&self, args: &[&str]) -> Output {
        let o = self.pg(args);
        assert!(
            o.status.success(),
            "portguard {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            cli::stdout(&o),
            cli::stderr(&o)
        );
        o
    }

    fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    /// `apply -f FILE EXTRA...`, which must succeed; returns stdout.
    fn apply(&self, file: &str, extra: &[&str]) -> String {
        let mut v = vec!["apply", "-f", file];
        v.extend_from_slice(extra);
        cli::stdout(&self.pg_ok(&v))
    }

    fn show(&self) -> Value {
        cli::show_all(&self.lab.host, &self.lab.pin_dir)
    }

    fn counters(&self, vm: &Vm) -> PortCounters {
        cli::counters(&self.lab.host, &self.lab.pin_dir, &vm.host_if)
    }

    /// The id of the program judging a host-side interface: XDP, or the tc program in tc mode.
    fn prog_id(&self, iface: &str) -> Option<u64> {
        let o = Command::new("ip")
            .args([
                "-n",
                &self.lab.host,
                "-d",
                "-j",
                "link",
                "show",
                "dev",
                iface,
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        let xdp = v.get(0).and_then(|v| v.get("xdp")).and_then(|x| {
            x.get("prog")
                .and_then(|p| p.get("id"))
                .or_else(|| x.get("attached")?.get(0)?.get("prog")?.get("id"))
                .and_then(Value::as_u64)
        });
        // tc mode (the default on a veth): the checks on tcx ingress.
        xdp.or_else(|| {
            self.lab
                .tcx_ingress_progs(iface)
                .into_iter()
                .find(|(_, name)| name == "portguard_skb")
                .map(|(id, _)| u64::from(id))
        })
    }
}

/// One `[[port]]` table.
fn port_toml(iface: &str, mac: &Mac, ips: &[&str], extra: &str) -> String {
    let ips: Vec<String> = ips.iter().map(|i| format!("{i:?}")).collect();
    format!(
        "[[port]]\niface = {iface:?}\nmac = \"{}\"\nips = [{}]\n{extra}\n",
        f::mac_str(mac),
        ips.join(", ")
    )
}

/// Unicast UDP from (`smac`, `sip`) to vm `to`'s MAC, IP destination NOBODY.
fn udp_frame(smac: Mac, sip: Ipv4Addr, to: &Vm) -> Vec<u8> {
    f::eth(
        to.mac(),
        smac,
        f::ETH_P_IP,
        &f::udp4(sip, NOBODY, 40000, 9, b"portguard operations test"),
    )
}

fn deliver(a: &Vm, b: &Vm, frames: &[Vec<u8>]) -> usize {
    send_and_count(&a.ns, &a.iface, &b.ns, &b.iface, frames)
}

/// Legitimate frames from vm `a` reach `b`; spoofed ones (source SPOOF) do not.
fn assert_enforced(a: &Vm, b: &Vm, what: &str) {
    assert_eq!(
        deliver(a, b, &[udp_frame(a.mac(), a.ip4(), b)]),
        1,
        "{what}: legitimate frame from {}",
        a.host_if
    );
    assert_eq!(
        deliver(a, b, &vec![udp_frame(a.mac(), SPOOF, b); 5]),
        0,
        "{what}: spoofed frames from {} were delivered",
        a.host_if
    );
}

fn entry<'a>(show: &'a Value, iface: &str) -> &'a Value {
    cli::entry(show, iface).unwrap_or_else(|| panic!("show --json has no {iface}: {show}"))
}

fn ips_of(e: &Value) -> Vec<String> {
    let mut v: Vec<String> = e["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

// ------------------------------------------------------------------ apply

#[test]
fn apply_dry_run_and_prune_with_real_traffic() {
    let ops = Ops::new(3);
    let (a, b, c) = (ops.vm(1), ops.vm(2), ops.vm(3));
    let state1 = format!(
        "{}{}",
        port_toml(
            "vm1",
            &a.mac(),
            &["192.0.2.1", "198.51.100.0/28"],
            "tenant = \"acme\""
        ),
        port_toml("vm2", &b.mac(), &["192.0.2.2"], "")
    );
    let file = ops.write("state.toml", &state1);

    // Dry run on a fresh host: the exact plan, and nothing is created.
    let out = ops.apply(&file, &["--dry-run"]);
    assert_eq!(
        out,
        "+ vm1: bind mac 02:00:00:00:00:01 ips [192.0.2.1, 198.51.100.0/28] mode enforce tenant acme; attach\n\
         + vm2: bind mac 02:00:00:00:00:02 ips [192.0.2.2] mode enforce; attach\n\
         dry run: 2 to add, 0 to change, 0 to remove, 0 unchanged; nothing changed\n"
    );
    assert!(
        !ops.lab.pin_dir.join("maps").exists(),
        "dry run created state"
    );
    assert_eq!(ops.lab.check_mode("vm1"), None);
    assert!(ops.audit_lines().is_empty(), "dry run wrote the audit log");

    ops.apply(&file, &[]);
    let show = ops.show();
    for (vm, ips) in [
        (a, vec!["192.0.2.1", "198.51.100.0/28"]),
        (b, vec!["192.0.2.2"]),
    ] {
        let e = entry(&show, &vm.host_if);
        assert_eq!(e["attached"], true, "{e}");
        assert_eq!(e["mode"], "enforce", "{e}");
        assert_eq!(ips_of(e), ips, "{e}");
    }
    assert_eq!(entry(&show, "vm1")["tenant"], "acme");
    assert_enforced(a, b, "after apply");
    assert_enforced(b, a, "after apply");
    // Audit: one line per changed port.
    let audit = ops.audit_lines();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit
        .iter()
        .all(|l| l["command"] == "apply" && l["result"] == "ok" && l["before"].is_null()));

    // Applying the same file again touches nothing: no rebind, no re-attach.
    let ids = (ops.prog_id("vm1"), ops.prog_id("vm2"));
    let before = ops.counters(a);
    let out = ops.apply(&file, &[]);
    assert!(
        out.contains("nothing to do: 0 to add, 0 to change, 0 to remove, 2 unchanged"),
        "{out}"
    );
    assert_eq!((ops.prog_id("vm1"), ops.prog_id("vm2")), ids);
    assert_eq!(ops.counters(a), before, "counters moved without traffic");
    assert_eq!(ops.audit_lines().len(), 2, "an unchanged apply was audited");
    // The same state as JSON is the same state.
    let json = serde_json::json!({"port": [
        {"iface": "vm1", "mac": "02:00:00:00:00:01", "ips": ["198.51.100.0/28", "192.0.2.1"], "tenant": "acme"},
        {"iface": "vm2", "mac": "02:00:00:00:00:02", "ips": ["192.0.2.2"], "mode": "enforce", "attach": true},
    ]});
    let jfile = ops.write("state.json", &json.to_string());
    assert!(ops.apply(&jfile, &[]).contains("2 unchanged"));

    // A change to one port: the exact diff, only that port is rebound.
    let state2 = format!(
        "{}{}",
        port_toml(
            "vm1",
            &a.mac(),
            &["192.0.2.1", "192.0.2.99"],
            "tenant = \"acme\"\nbroadcast_pps = 50"
        ),
        port_toml("vm2", &b.mac(), &["192.0.2.2"], "")
    );
    let file2 = ops.write("state2.toml", &state2);
    let out = ops.apply(&file2, &["--dry-run"]);
    assert_eq!(
        out,
        "~ vm1: broadcast 200/400 -> 50/100; ips +192.0.2.99 -198.51.100.0/28\n\
         = vm2: unchanged\n\
         dry run: 0 to add, 1 to change, 0 to remove, 1 unchanged; nothing changed\n"
    );
    let dry: Value = serde_json::from_str(&ops.apply(&file2, &["--dry-run", "--json"])).unwrap();
    let p1 = &dry["ports"][0];
    assert_eq!(p1["action"], "change");
    assert_eq!(p1["ips_added"], serde_json::json!(["192.0.2.99"]));
    assert_eq!(p1["ips_removed"], serde_json::json!(["198.51.100.0/28"]));
    assert_eq!(p1["fields"][0]["field"], "broadcast");
    assert_eq!(dry["ports"][1]["action"], "unchanged");
    // Still the old binding: SPOOF (192.0.2.99) is dropped.
    assert_eq!(deliver(a, b, &[udp_frame(a.mac(), SPOOF, b)]), 0);

    let vm2_before = ops.counters(b);
    let out = ops.apply(&file2, &[]);
    assert!(out.contains("~ vm1:") && !out.contains("vm2"), "{out}");
    assert_eq!(ops.prog_id("vm1"), ids.0, "a rebind re-attached");
    assert_eq!(ops.counters(b), vm2_before, "vm2 was touched");
    assert_eq!(
        deliver(a, b, &[udp_frame(a.mac(), SPOOF, b)]),
        1,
        "new address"
    );
    let e = entry(&ops.show(), "vm1").clone();
    assert_eq!(e["broadcast_pps"], 50);
    assert_eq!(e["broadcast_burst"], 100);
    let audit = ops.audit_lines();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[2]["iface"], "vm1");
    assert_eq!(audit[2]["before"]["broadcast_pps"], 200);
    assert_eq!(audit[2]["after"]["broadcast_pps"], 50);

    // vm3 is guarded by hand, outside the file: kept without --prune ...
    ops.pg_ok(&["attach", "vm3"]);
    ops.pg_ok(&[
        "bind",
        "vm3",
        "--mac",
        "02:00:00:00:00:03",
        "--ip",
        "192.0.2.3",
    ]);
    let out = ops.apply(&file2, &[]);
    assert!(out.contains("? vm3: not in the file: kept"), "{out}");
    assert!(entry(&ops.show(), "vm3")["bound"] == true);
    assert_enforced(c, a, "unmanaged vm3");
    // ... removed with it.
    let out = ops.apply(&file2, &["--prune", "--dry-run"]);
    assert!(out.contains("- vm3: unbind; detach\n"), "{out}");
    assert!(
        out.contains("0 to add, 0 to change, 1 to remove, 2 unchanged"),
        "{out}"
    );
    ops.apply(&file2, &["--prune"]);
    assert!(cli::entry(&ops.show(), "vm3").is_none());
    assert_eq!(ops.lab.check_mode("vm3"), None);
    // vm3 is no longer filtered at all: even its spoofed frames pass.
    assert_eq!(deliver(c, a, &[udp_frame(c.mac(), SPOOF, a)]), 1);

    // attach = false detaches but keeps the binding.
    let state3 = format!(
        "{}{}",
        port_toml(
            "vm1",
            &a.mac(),
            &["192.0.2.1", "192.0.2.99"],
            "tenant = \"acme\"\nbroadcast_pps = 50"
        ),
        port_toml("vm2", &b.mac(), &["192.0.2.2"], "attach = false")
    );
    let file3 = ops.write("state3.toml", &state3);
    assert!(ops
        .apply(&file3, &["--dry-run"])
        .contains("~ vm2: detach\n"));
    ops.apply(&file3, &[]);
    let e = entry(&ops.show(), "vm2").clone();
    assert_eq!(
        (e["bound"].clone(), e["attached"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(ops.lab.check_mode("vm2"), None);
    // And back.
    assert!(ops
        .apply(&file2, &["--dry-run"])
        .contains("~ vm2: attach\n"));
    ops.apply(&file2, &[]);
    assert_enforced(b, a, "vm2 re-attached");
}

#[test]
fn invalid_files_are_rejected_whole_and_change_nothing() {
    let ops = Ops::new(2);
    let good = port_toml("vm1", &ops.vm(1).mac(), &["192.0.2.1"], "");
    let file = ops.write("good.toml", &good);
    ops.apply(&file, &[]);
    let show = ops.show();
    let audit = ops.audit_lines().len();
    let id = ops.prog_id("vm1");

    let p1 = "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nips = [\"192.0.2.5\"]\n\n";
    // (name, content, every substring the one-line error must contain)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "bad-mac.toml",
            format!("{p1}[[port]]\niface = \"vm2\"\nmac = \"02:00:00:00:00:zz\"\n"),
            vec!["line 8, column 7", "port[1] (iface \"vm2\")", "field `mac`", "invalid MAC"],
        ),
        (
            "group-mac.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"03:00:00:00:00:01\"\n".into(),
            vec!["line 3", "field `mac`", "multicast"],
        ),
        (
            "bad-ip.toml",
            format!("{p1}[[port]]\niface = \"vm2\"\nmac = \"02:00:00:00:00:02\"\nips = [\n  \"192.0.2.2\",\n  \"192.0.2.300\",\n]\n"),
            vec!["line 11", "port[1] (iface \"vm2\")", "field `ips`", "192.0.2.300"],
        ),
        (
            "host-bits.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nips = [\"192.0.2.1/24\"]\n".into(),
            vec!["line 4", "field `ips`", "did you mean 192.0.2.0/24"],
        ),
        (
            "dup-ip.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nips = [\"192.0.2.1\", \"192.0.2.1\"]\n".into(),
            vec!["line 4", "field `ips`", "listed twice"],
        ),
        (
            "unknown-key.toml",
            format!("{p1}[[port]]\niface = \"vm2\"\nmac = \"02:00:00:00:00:02\"\nbroadcast_ppps = 5\n"),
            vec!["line 9", "port[1] (iface \"vm2\")", "unknown field `broadcast_ppps`"],
        ),
        (
            "unknown-top.toml",
            "[[ports]]\niface = \"vm1\"\n".into(),
            vec!["line 1", "unknown field `ports`"],
        ),
        (
            "dup-iface.toml",
            format!("{p1}[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:02\"\n"),
            vec!["line 7", "port[1] (iface \"vm1\")", "field `iface`", "already described by port[0] (line 1)"],
        ),
        (
            "mode.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nmode = \"audit\"\n".into(),
            vec!["line 4", "field `mode`", "unknown variant `audit`"],
        ),
        (
            "missing-mac.toml",
            format!("{p1}[[port]]\niface = \"vm2\"\n"),
            vec!["line 6", "port[1] (iface \"vm2\")", "missing field `mac`"],
        ),
        (
            "vlan.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nallow_vlan = [100, 5000]\n".into(),
            vec!["line 4", "field `allow_vlan`", "5000"],
        ),
        (
            "ethertype.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nallow_ethertype = [\"0x0800\"]\n".into(),
            vec!["line 4", "field `allow_ethertype`", "0x0800"],
        ),
        (
            "pps.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\narp_pps = -1\n".into(),
            vec!["line 4", "field `arp_pps`"],
        ),
        (
            "tenant.toml",
            format!("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\ntenant = \"{}\"\n", "t".repeat(40)),
            vec!["line 4", "field `tenant`", "longer than 31"],
        ),
        (
            "syntax.toml",
            "[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\n".into(),
            vec!["line 3"],
        ),
        (
            "bad-mac.json",
            "{\"port\": [\n  {\"iface\": \"vm1\", \"mac\": \"02:00:00:00:00:01\"},\n  {\"iface\": \"vm2\",\n   \"mac\": \"zz\"}\n]}".into(),
            vec!["line 4", "port[1] (iface \"vm2\")", "invalid MAC"],
        ),
        (
            "unknown.json",
            "{\"port\": [{\"iface\": \"vm1\", \"mac\": \"02:00:00:00:00:01\",\n \"atach\": true}]}".into(),
            vec!["line 2", "port[0]", "unknown field `atach`"],
        ),
        (
            "no-such-iface.toml",
            format!("{p1}[[port]]\niface = \"nope0\"\nmac = \"02:00:00:00:00:02\"\n"),
            vec!["nothing changed", "\"nope0\" (line 6)", "unknown interface"],
        ),
    ];
    for (name, content, want) in &cases {
        let path = ops.write(name, content);
        for dry in [false, true] {
            let mut args = vec!["apply", "-f", path.as_str()];
            if dry {
                args.push("--dry-run");
            }
            let o = ops.pg(&args);
            let err = cli::stderr(&o);
            assert!(
                !o.status.success(),
                "{name} (dry {dry}) was accepted: {}",
                cli::stdout(&o)
            );
            assert!(cli::one_line_error(&o), "{name}: not one line: {err}");
            for w in want {
                assert!(err.contains(w), "{name}: error lacks {w:?}: {err}");
            }
            assert!(
                cli::stdout(&o).is_empty(),
                "{name}: printed a plan: {}",
                cli::stdout(&o)
            );
        }
        assert_eq!(ops.show(), show, "{name} changed the state");
    }
    assert_eq!(
        ops.audit_lines().len(),
        audit,
        "rejected files were audited"
    );
    assert_eq!(ops.prog_id("vm1"), id);
    assert_enforced(ops.vm(1), ops.vm(2), "after the bad files");
}

#[test]
fn deleted_and_recreated_interfaces() {
    let ops = Ops::new(1);
    let add = || {
        let o = ops
            .lab
            .host_ip(&["link", "add", "xp1", "type", "veth", "peer", "name", "xq1"]);
        assert!(o.status.success(), "{}", cli::stderr(&o));
        ops.lab.host_ip(&["link", "set", "xp1", "up"]);
        ops.lab.host_ip(&["link", "set", "xq1", "up"]);
    };
    add();
    let file = ops.write(
        "state.toml",
        &port_toml("xp1", &[2, 0, 0, 0, 1, 1], &["192.0.2.11"], ""),
    );
    ops.apply(&file, &[]);
    let old_index = entry(&ops.show(), "xp1")["ifindex"].clone();

    // The VM goes away: its interface (and so its link) is destroyed.
    ops.lab.host_ip(&["link", "del", "xp1"]);
    let o = ops.pg(&["apply", "-f", &file]);
    assert!(!o.status.success());
    let err = cli::stderr(&o);
    assert!(
        err.contains("nothing changed") && err.contains("unknown interface \"xp1\""),
        "{err}"
    );
    let out = ops.apply(&file, &["--skip-missing", "--dry-run"]);
    assert!(out.contains("! xp1: skipped"), "{out}");
    let gone = format!("- xp1: interface gone (ifindex {old_index}): stale record removed");
    assert!(out.contains(&gone), "{out}");

    // It comes back with a new ifindex: bound and attached afresh, the
    // severed link pin replaced, the old record dropped.
    add();
    let out = ops.apply(&file, &[]);
    assert!(out.contains("+ xp1: bind mac 02:00:00:00:01:01"), "{out}");
    assert!(out.contains("severed link removed; attach"), "{out}");
    assert!(out.contains(&gone), "{out}");
    let show = ops.show();
    assert_eq!(show.as_array().unwrap().len(), 1, "{show}");
    let e = entry(&show, "xp1");
    assert_ne!(e["ifindex"], old_index);
    assert_eq!(
        (e["bound"].clone(), e["attached"].clone()),
        (true.into(), true.into())
    );
    assert!(ops.prog_id("xp1").is_some(), "not attached");
    assert!(ops.apply(&file, &[]).contains("nothing to do"));
}

// ---------------------------------------------------------- monitor mode

#[test]
fn monitor_mode_counts_then_enforce_drops() {
    let ops = Ops::new(2);
    let (a, b) = (ops.vm(1), ops.vm(2));
    let state = |mode: &str| {
        format!(
            "{}{}",
            port_toml("vm1", &a.mac(), &["192.0.2.1"], &format!("mode = {mode:?}")),
            port_toml("vm2", &b.mac(), &["192.0.2.2"], "")
        )
    };
    let file = ops.write("monitor.toml", &state("monitor"));
    ops.apply(&file, &[]);
    assert_eq!(entry(&ops.show(), "vm1")["mode"], "monitor");

    let spoofed = vec![udp_frame(a.mac(), SPOOF, b); 20];
    let c0 = ops.counters(a);
    assert_eq!(
        deliver(a, b, &spoofed),
        20,
        "monitor mode must pass spoofed frames"
    );
    let c1 = ops.counters(a);
    assert_eq!(
        c1.would_drop("ipv4_spoof") - c0.would_drop("ipv4_spoof"),
        20,
        "{c1:?}"
    );
    assert_eq!(c1.total_dropped(), c0.total_dropped(), "{c1:?}");
    assert_eq!(c1.passed.0 - c0.passed.0, 20, "{c1:?}");

    let id = ops.prog_id("vm1");
    let file = ops.write("enforce.toml", &state("enforce"));
    let out = ops.apply(&file, &["--dry-run"]);
    assert!(
        out.starts_with("~ vm1: mode monitor -> enforce\n= vm2: unchanged\n"),
        "{out}"
    );
    ops.apply(&file, &[]);
    assert_eq!(ops.prog_id("vm1"), id, "a mode switch re-attached");
    assert_eq!(
        deliver(a, b, &spoofed),
        0,
        "enforce mode passed spoofed frames"
    );
    let c2 = ops.counters(a);
    assert_eq!(
        c2.dropped("ipv4_spoof") - c1.dropped("ipv4_spoof"),
        20,
        "{c2:?}"
    );
    assert_eq!(c2.would_drop("ipv4_spoof"), c1.would_drop("ipv4_spoof"));
    assert_eq!(c2.passed, c1.passed);
    assert_enforced(a, b, "enforce");
}

// -------------------------------------------------------- hitless upgrade

fn ping_summary(o: &Output) -> (u64, u64) {
    let s = cli::stdout(o);
    let line = s
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {s}{}", cli::stderr(o)));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(2)
        .map(|w| w.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn hitless_upgrade_under_traffic() {
    let _g = heavy();
    let ops = Ops::new(2);
    let (a, b) = (ops.vm(1), ops.vm(2));
    let file = ops.write(
        "state.toml",
        &format!(
            "{}{}",
            port_toml("vm1", &a.mac(), &["192.0.2.1"], ""),
            port_toml("vm2", &b.mac(), &["192.0.2.2"], "")
        ),
    );
    ops.apply(&file, &[]);
    // Resolve neighbours first so the stream starts at once.
    assert!(a
        .run(&["ping", "-c", "1", "-W", "2", "192.0.2.2"])
        .status
        .success());
    let c0 = ops.counters(a);

    let spoof = udp_frame(a.mac(), SPOOF, b);
    let cap = b.capture();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let spoofer = {
        let (stop, sent, ns, iface, frame) = (
            stop.clone(),
            sent.clone(),
            a.ns.clone(),
            a.iface.clone(),
            spoof.clone(),
        );
        thread::spawn(move || {
            let batch = vec![frame; 10];
            while !stop.load(Ordering::SeqCst) {
                send_raw(&ns, &iface, &batch).expect("spoof send");
                sent.fetch_add(batch.len(), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let pinger = {
        let ns = a.ns.clone();
        thread::spawn(move || {
            Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-q", "-c", "5000", "-i", "0.001", "-W", "2",
                ])
                .arg("192.0.2.2")
                .output()
                .unwrap()
        })
    };

    // The upgrades: `attach` again swaps the program inside the pinned links.
    thread::sleep(Duration::from_millis(300));
    let mut ids = vec![(ops.prog_id("vm1"), ops.prog_id("vm2"))];
    for i in 0..8 {
        for iface in ["vm1", "vm2"] {
            let out = cli::stdout(&ops.pg_ok(&["attach", iface]));
            assert!(
                out.contains("program replaced in place"),
                "upgrade {i}: {out}"
            );
        }
        ids.push((ops.prog_id("vm1"), ops.prog_id("vm2")));
        thread::sleep(Duration::from_millis(250));
    }
    let ping = pinger.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    spoofer.join().unwrap();
    let got = cap.finish();

    for w in ids.windows(2) {
        assert!(
            w[0].0.is_some() && w[0].1.is_some(),
            "not attached: {ids:?}"
        );
        assert_ne!(w[0].0, w[1].0, "vm1's program was not replaced: {ids:?}");
        assert_ne!(w[0].1, w[1].1, "vm2's program was not replaced: {ids:?}");
    }
    let (tx, rx) = ping_summary(&ping);
    eprintln!(
        "ping: {tx} sent, {rx} received during {} upgrades",
        ids.len() - 1
    );
    assert_eq!(tx, 5000);
    assert_eq!(
        rx,
        tx,
        "legitimate packets lost during the upgrades:\n{}",
        cli::stdout(&ping)
    );
    let leaked = got.iter().filter(|g| frame_matches(g, &spoof)).count();
    let n = sent.load(Ordering::SeqCst) as u64;
    assert_eq!(leaked, 0, "{leaked} of {n} spoofed frames reached vm2");
    let c1 = ops.counters(a);
    assert_eq!(
        c1.dropped("ipv4_spoof") - c0.dropped("ipv4_spoof"),
        n,
        "{c1:?}"
    );
    assert_eq!(c1.total_dropped() - c0.total_dropped(), n, "{c1:?}");
    // Bindings and counters survived the upgrades (same pinned maps).
    assert_eq!(
        entry(&ops.show(), "vm1")["ips"],
        serde_json::json!(["192.0.2.1"])
    );
    assert!(c1.passed.0 - c0.passed.0 >= 5000, "{c1:?}");
}

#[test]
fn layout_version_mismatch_is_refused() {
    use aya::maps::{Array, Map, MapData};
    let ops = Ops::new(2);
    let (a, b) = (ops.vm(1), ops.vm(2));
    let file = ops.write(
        "state.toml",
        &port_toml("vm1", &a.mac(), &["192.0.2.1"], ""),
    );
    ops.apply(&file, &[]);
    let show = ops.show();
    let id = ops.prog_id("vm1");

    let meta = ops.lab.pin_dir.join("maps/META");
    let set_version = |v: u32| {
        let data = MapData::from_pin(&meta).expect("open pinned META");
        let mut arr: Array<MapData, u32> = Array::try_from(Map::Array(data)).unwrap();
        let old = arr.get(&0, 0).unwrap();
        arr.set(0, v, 0).unwrap();
        old
    };
    assert_eq!(set_version(999), filter_common::LAYOUT_VERSION);

    let file2 = ops.write(
        "state2.toml",
        &port_toml("vm1", &a.mac(), &["192.0.2.7"], ""),
    );
    let attempts: Vec<Vec<&str>> = vec![
        vec!["attach", "vm1"],
        vec!["attach", "vm2"],
        vec![
            "bind",
            "vm1",
            "--mac",
            "02:00:00:00:00:01",
            "--ip",
            "192.0.2.7",
        ],
        vec!["apply", "-f", &file2],
        vec!["apply", "-f", &file2, "--dry-run"],
    ];
    for args in &attempts {
        let o = ops.pg(args);
        let err = cli::stderr(&o);
        assert!(
            !o.status.success(),
            "{args:?} succeeded with a foreign layout"
        );
        assert!(cli::one_line_error(&o), "{err}");
        for w in [
            "layout v999",
            &format!("uses v{}", filter_common::LAYOUT_VERSION),
            "refusing",
            "Migrate",
        ] {
            assert!(err.contains(w), "{args:?}: error lacks {w:?}: {err}");
        }
    }
    // Nothing changed: same program, vm2 not attached, enforcement as before.
    assert_eq!(ops.prog_id("vm1"), id);
    assert_eq!(ops.lab.check_mode("vm2"), None);
    assert_eq!(deliver(a, b, &[udp_frame(a.mac(), SPOOF, b)]), 0);
    assert_eq!(deliver(a, b, &[udp_frame(a.mac(), a.ip4(), b)]), 1);
    assert_eq!(set_version(filter_common::LAYOUT_VERSION), 999);
    assert_eq!(ops.show(), show);
}

// ------------------------------------------------------------- SIGKILL

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// What one port should look like in `show --json` (the fields that differ
/// between the two states of the SIGKILL test).
#[derive(Clone, Debug, PartialEq)]
struct Expect {
    ips: Vec<String>,
    mode: String,
    broadcast_pps: u64,
    tenant: String,
}

fn observed(e: &Value) -> Expect {
    Expect {
        ips: ips_of(e),
        mode: e["mode"].as_str().unwrap().to_string(),
        broadcast_pps: e["broadcast_pps"].as_u64().unwrap_or(0),
        tenant: e["tenant"].as_str().unwrap().to_string(),
    }
}

#[test]
fn sigkill_during_apply_leaves_every_port_old_or_new() {
    let _g = heavy();
    let ops = Ops::new(2);
    let (a, b) = (ops.vm(1), ops.vm(2));
    // Eight more ports: veth pairs inside the host namespace.
    let mut ports: Vec<(String, Mac)> = vec![("vm1".into(), a.mac()), ("vm2".into(), b.mac())];
    for i in 1..=8u8 {
        let (x, y) = (format!("xp{i}"), format!("xq{i}"));
        let o = ops
            .lab
            .host_ip(&["link", "add", &x, "type", "veth", "peer", "name", &y]);
        assert!(o.status.success(), "{}", cli::stderr(&o));
        ops.lab.host_ip(&["link", "set", &x, "up"]);
        ops.lab.host_ip(&["link", "set", &y, "up"]);
        ports.push((x, [0x02, 0, 0, 0, 1, i]));
    }
    // Two states differing in every port: ~80 addresses each, mode, limits, tenant.
    let build = |which: u8| -> (String, Vec<Expect>) {
        let mut text = String::new();
        let mut want = Vec::new();
        for (k, (iface, mac)) in ports.iter().enumerate() {
            let k = k as u8;
            let mut ips: Vec<String> = Vec::new();
            if k < 2 {
                ips.push(format!("192.0.2.{}", k + 1));
            }
            let net = if which == 0 {
                "198.51.100"
            } else {
                "203.0.113"
            };
            for j in 0..60u8 {
                ips.push(format!("{net}.{}", j + 1 + (k % 2) * 100));
            }
            // Enough addresses that binding dominates the apply's run time,
            // so random kills land between ports.
            for j in 0..3000u16 {
                ips.push(format!("2001:db8:{}:{which}::{:x}", k + 1, j + 1));
            }
            ips.push(format!("2001:db8:{}:{}::/64", k + 1, 100 + which));
            // vm1 stays enforcing in both states: the spoof check below needs it.
            let mode = if which == 1 && k != 0 {
                "monitor"
            } else {
                "enforce"
            };
            let pps = if which == 0 { 200 } else { 300 };
            let tenant = format!("t{which}");
            let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
            text.push_str(&port_toml(
                iface,
                mac,
                &refs,
                &format!("mode = {mode:?}\nbroadcast_pps = {pps}\ntenant = {tenant:?}"),
            ));
            // show prints IPv6 in canonical form; normalize ours the same way.
            let mut canon: Vec<String> = ips
                .iter()
                .map(|s| match s.split_once('/') {
                    Some((addr, len)) => {
                        format!("{}/{len}", addr.parse::<std::net::IpAddr>().unwrap())
                    }
                    None => s.parse::<std::net::IpAddr>().unwrap().to_string(),
                })
                .collect();
            canon.sort();
            want.push(Expect {
                ips: canon,
                mode: mode.into(),
                broadcast_pps: pps,
                tenant,
            });
        }
        (text, want)
    };
    let (ta, wa) = build(0);
    let (tb, wb) = build(1);
    let files = [ops.write("a.toml", &ta), ops.write("b.toml", &tb)];
    let wants = [wa, wb];

    let check = |ctx: &str| -> (usize, usize) {
        let show = ops.show();
        let (mut n_a, mut n_b) = (0, 0);
        for (k, (iface, _)) in ports.iter().enumerate() {
            let e = entry(&show, iface);
            assert_eq!(e["bound"], true, "{ctx}: {iface} lost its binding: {e}");
            assert_eq!(e["attached"], true, "{ctx}: {iface} detached: {e}");
            let got = observed(e);
            if got == wants[0][k] {
                n_a += 1;
            } else if got == wants[1][k] {
                n_b += 1;
            } else {
                panic!(
                    "{ctx}: {iface} is neither the old nor the new binding:\n got {got:?}\n A {:?}\n B {:?}",
                    wants[0][k], wants[1][k]
                );
            }
        }
        (n_a, n_b)
    };

    let t0 = Instant::now();
    ops.apply(&files[0], &[]);
    eprintln!("first apply (with attach): {:?}", t0.elapsed());
    assert_eq!(check("initial"), (ports.len(), 0));
    let t0 = Instant::now();
    ops.apply(&files[1], &[]);
    let full = t0.elapsed();
    eprintln!("full A->B apply: {full:?}");
    assert_eq!(check("A->B"), (0, ports.len()));

    let seed = std::env::var("PGT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("SIGKILL loop seed {seed} (PGT_SEED={seed} reproduces the kill times)");
    let mut rng = Rng(seed);
    let window = (full.as_millis() as u64).max(5);
    let audit = ops.audit_path();
    let (mut mixed, mut killed_running) = (0, 0);
    for it in 0..30 {
        let target = &files[(it + 1) % 2];
        let delay = Duration::from_millis(rng.next() % window);
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ops.lab.host))
            .arg(cli::bin())
            .arg("--pin-dir")
            .arg(&ops.lab.pin_dir)
            .args(["--audit-log", &audit, "apply", "-f", target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let (n_a, n_b) = check(&format!("iteration {it} (killed after {delay:?})"));
        if n_a > 0 && n_b > 0 {
            mixed += 1;
        }
        if it % 10 == 9 {
            assert_eq!(
                deliver(a, b, &[udp_frame(a.mac(), SPOOF, b)]),
                0,
                "iteration {it}"
            );
        }
    }
    eprintln!(
        "30 kills: {killed_running} while apply ran, {mixed} left a mix of old and new ports"
    );
    assert!(
        killed_running >= 10,
        "the kills mostly missed the apply ({killed_running})"
    );
    assert!(
        mixed >= 1,
        "no kill landed between two ports (window {window} ms)"
    );

    // A complete apply afterwards converges, and enforcement held throughout.
    ops.apply(&files[0], &[]);
    assert_eq!(check("final"), (ports.len(), 0));
    assert_enforced(a, b, "after the SIGKILL loop");
}

// --------------------------------------------------------------- daemon

/// Kills the daemon if the test fails before it is stopped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) of our child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `cond` every 100 ms for up to `secs`.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// HTTP GET from inside netns `ns` (a thread that enters it).
fn http_get(ns: &str, addr: &str, path: &str) -> std::io::Result<String> {
    let (ns, addr, path) = (ns.to_string(), addr.to_string(), path.to_string());
    thread::spawn(move || -> std::io::Result<String> {
        let f = fs::File::open(format!("/run/netns/{ns}"))?;
        // SAFETY: setns on a valid fd; affects only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .unwrap()
}

#[test]
fn daemon_applies_reloads_serves_metrics_and_leaves_enforcement_on_exit() {
    let ops = Ops::new(2);
    let (a, b) = (ops.vm(1), ops.vm(2));
    // xp9 does not exist yet: skipped until it appears.
    let state = |vm1_ips: &[&str], vm2_mode: &str| {
        format!(
            "{}{}{}",
            port_toml("vm1", &a.mac(), vm1_ips, "tenant = \"acme\""),
            port_toml(
                "vm2",
                &b.mac(),
                &["192.0.2.2"],
                &format!("mode = {vm2_mode:?}")
            ),
            port_toml("xp9", &[2, 0, 0, 0, 9, 9], &["192.0.2.9"], "")
        )
    };
    let config = ops.write("portguard.toml", &state(&["192.0.2.1"], "enforce"));
    let events = ops.dir.join("events.jsonl");
    let log = ops.dir.join("daemon.log");
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ops.lab.host))
        .arg(cli::bin())
        .arg("--pin-dir")
        .arg(&ops.lab.pin_dir)
        .args([
            "--audit-log",
            &ops.audit_path(),
            "daemon",
            "--config",
            &config,
        ])
        .args(["--metrics", "127.0.0.1:9469", "--events-log"])
        .arg(&events)
        .args(["--events-log-max-bytes", "4000", "--events-log-keep", "2"])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon { child, log };

    // `show` must not race the daemon's first creation of the maps.
    assert!(
        wait_for(15, || d.log().contains("applied ")),
        "daemon did not apply its config: {}",
        d.log()
    );
    let bound = |iface: &str| {
        cli::entry(&ops.show(), iface).is_some_and(|e| e["bound"] == true && e["attached"] == true)
    };
    assert!(
        wait_for(15, || ops.lab.pin_dir.join("maps").exists()
            && bound("vm1")
            && bound("vm2")),
        "daemon did not apply its config: {}",
        d.log()
    );
    assert_enforced(a, b, "daemon start");
    assert_enforced(b, a, "daemon start");
    assert!(d.log().contains("! xp9: skipped"), "{}", d.log());
    assert!(cli::entry(&ops.show(), "xp9").is_none());
    // The interface appears (a VM starts): the daemon binds and attaches it.
    let o = ops
        .lab
        .host_ip(&["link", "add", "xp9", "type", "veth", "peer", "name", "xq9"]);
    assert!(o.status.success(), "{}", cli::stderr(&o));
    ops.lab.host_ip(&["link", "set", "xp9", "up"]);
    assert!(
        // (the record says "attached" a moment before the link exists)
        wait_for(10, || bound("xp9") && ops.prog_id("xp9").is_some()),
        "new interface not guarded: {}",
        d.log()
    );

    // Metrics.
    let mut body = String::new();
    assert!(
        wait_for(10, || {
            body = http_get(&ops.lab.host, "127.0.0.1:9469", "/metrics").unwrap_or_default();
            body.starts_with("HTTP/1.1 200")
        }),
        "metrics not reachable: {body:?}\n{}",
        d.log()
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("portguard_dropped_packets_total{")
                && l.contains("iface=\"vm1\"")
                && l.contains("reason=\"ipv4_spoof\"")
                && !l.ends_with(" 0")),
        "{body}"
    );

    // SIGHUP after editing the file (mtime polling might win the race: fine,
    // the log then shows both and the state is the same).
    fs::write(&config, state(&["192.0.2.1", "192.0.2.99"], "enforce")).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_for(10, || ips_of(entry(&ops.show(), "vm1"))
            == ["192.0.2.1", "192.0.2.99"]),
        "SIGHUP re-apply: {}",
        d.log()
    );
    assert_eq!(deliver(a, b, &[udp_frame(a.mac(), SPOOF, b)]), 1);
    // A file change alone is picked up too (mtime poll).
    fs::write(&config, state(&["192.0.2.1"], "monitor")).unwrap();
    assert!(
        wait_for(10, || entry(&ops.show(), "vm2")["mode"] == "monitor"
            && ips_of(entry(&ops.show(), "vm1")) == ["192.0.2.1"]),
        "file change re-apply: {}",
        d.log()
    );
    // An invalid file changes nothing and the daemon keeps running.
    let before = ops.show();
    fs::write(&config, "[[port]]\niface = \"vm1\"\nmac = \"zz\"\n").unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_for(10, || d.log().contains("NOT applied")),
        "no rejection logged: {}",
        d.log()
    );
    assert!(d.log().contains("line 3"), "{}", d.log());
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "daemon died: {}",
        d.log()
    );
    assert_eq!(ops.show(), before);
    fs::write(&config, state(&["192.0.2.1"], "enforce")).unwrap();
    assert!(wait_for(10, || entry(&ops.show(), "vm2")["mode"] == "enforce"));
    let audit = ops.audit_lines();
    assert!(audit.len() >= 5, "{audit:?}");
    assert!(audit.iter().all(|l| l["command"] == "apply"));

    // Drop events land in the JSONL log, rotated at 4000 bytes, 2 old files kept.
    let spoofed = vec![udp_frame(a.mac(), SPOOF, b); 150];
    assert_eq!(deliver(a, b, &spoofed), 0);
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", events.display()));
    assert!(
        wait_for(10, || rotated(2).exists()),
        "events log not rotated: {}",
        d.log()
    );
    assert!(!rotated(3).exists());
    for p in [events.clone(), rotated(1), rotated(2)] {
        let text = fs::read_to_string(&p).unwrap();
        assert!(
            text.len() <= 4000,
            "{} has {} bytes",
            p.display(),
            text.len()
        );
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v["iface"] == "vm1" || v["iface"] == "vm2", "{line}");
            assert_eq!(v["reason"], "ipv4_spoof", "{line}");
            assert_eq!(v["src_ip"], SPOOF.to_string(), "{line}");
        }
    }

    // SIGTERM: a clean exit, every pin kept, enforcement on.
    d.signal(libc::SIGTERM);
    let mut status = None;
    assert!(wait_for(10, || {
        status = d.child.try_wait().unwrap();
        status.is_some()
    }));
    assert!(
        status.unwrap().success(),
        "exit status {status:?}: {}",
        d.log()
    );
    assert!(
        d.log().contains("enforcement stays in place"),
        "{}",
        d.log()
    );
    assert!(bound("vm1") && bound("vm2"));
    assert!(ops.lab.pin_dir.join("links/vm1").exists());
    assert_enforced(a, b, "after the daemon exited");
    assert_enforced(b, a, "after the daemon exited");
    // Its port is free again.
    assert!(http_get(&ops.lab.host, "127.0.0.1:9469", "/metrics").is_err());
}
