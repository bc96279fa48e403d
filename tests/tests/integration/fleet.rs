//! The fleet (docs/fleet.md): `portguard agent` in a host network namespace
//! converging from a real 3-node etcd cluster (Debian's etcd, mTLS, CN
//! users with per-host roles), bindings written through `portguard fleet`
//! or etcdctl, real frames from VM namespaces.
//!
//! Needs root, etcd, etcdctl and openssl. Run through `cargo xtask test`.
use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use portguard_tests::{
    cli,
    etcd::Cluster,
    frames::{self as f, Mac},
    netns::{send_and_count, Lab, Vm},
    proc::{eventually, need_tool, Proc, TmpDir},
};
use serde_json::Value;

const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

fn tools() {
    for t in ["etcd", "etcdctl", "openssl"] {
        need_tool(t);
    }
}

/// A host: its lab (VMs behind a bridge), its agent and scratch files.
struct Host {
    // Dropped first: a live agent would recreate the pin dir the lab removes.
    agent: Option<Proc>,
    name: String,
    /// The agent's `--max-ports` (None: the default).
    max_ports: Option<u32>,
    lab: Lab,
    tmp: TmpDir,
}

impl Host {
    fn new(cluster: &mut Cluster, name: &str, vms: u8) -> Host {
        let lab = Lab::new(vms);
        cluster.connect(&lab.host);
        let tmp = TmpDir::new(&lab, "fleet");
        Host {
            name: name.to_string(),
            max_ports: None,
            lab,
            tmp,
            agent: None,
        }
    }

    fn audit_log(&self) -> std::path::PathBuf {
        self.tmp.path("audit.jsonl")
    }

    /// Starts `portguard agent` for this host with `cert_user`'s certificate.
    fn start_agent_as(&mut self, cluster: &Cluster, cert_user: &str) {
        let bin = cli::bin().display().to_string();
        let pin = self.lab.pin_dir.display().to_string();
        let audit = self.audit_log().display().to_string();
        let snap = self.tmp.s("snapshot.json");
        let mut argv: Vec<String> = vec![bin, "--pin-dir".into(), pin, "--audit-log".into(), audit];
        if let Some(n) = self.max_ports {
            argv.extend(["--max-ports".into(), n.to_string()]);
        }
        argv.extend([
            "agent".into(),
            "--host".into(),
            self.name.clone(),
            "--snapshot".into(),
            snap,
            "--recheck-interval".into(),
            "0.5".into(),
        ]);
        argv.extend(cluster.client_args(cert_user));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let n = std::fs::read_dir(&self.tmp.0)
            .map(|d| d.count())
            .unwrap_or(0);
        let log = self.tmp.path(&format!("agent-{n}.log"));
        self.agent = Some(Proc::spawn(&self.lab.host, &argv, &log));
    }

    fn start_agent(&mut self, cluster: &Cluster) {
        let name = self.name.clone();
        self.start_agent_as(cluster, &name);
    }

    fn agent_log(&self) -> String {
        self.agent.as_ref().map(|a| a.log()).unwrap_or_default()
    }

    /// Changes the agent made to the kernel (audit log lines).
    fn kernel_changes(&self) -> usize {
        std::fs::read_to_string(self.audit_log())
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn vm(&self, i: usize) -> &Vm {
        self.lab.vm(i)
    }

    /// `fleet put` of vm `i`'s binding as the orchestrator.
    fn put(&self, cluster: &Cluster, id: &str, i: usize) {
        let vm = self.vm(i);
        let mac = f::mac_str(&vm.mac());
        let ip = vm.ip4().to_string();
        let o = cluster.fleet(
            &self.lab.host,
            "orchestrator",
            &[
                "put",
                &self.name,
                id,
                "--iface",
                &vm.host_if,
                "--mac",
                &mac,
                "--ip",
                &ip,
            ],
        );
        assert!(o.status.success(), "fleet put: {}", cli::stderr(&o));
    }

    fn status(&self, cluster: &Cluster) -> Value {
        let o = cluster.fleet(
            &self.lab.host,
            "orchestrator",
            &["status", &self.name, "--json"],
        );
        assert!(o.status.success(), "fleet status: {}", cli::stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("status json");
        v["hosts"][0].clone()
    }

    fn bound(&self, iface: &str) -> bool {
        let v = cli::show_all(&self.lab.host, &self.lab.pin_dir);
        cli::entry(&v, iface).is_some_and(|e| e["bound"] == true)
    }
}

/// The effective state of port `id` in `fleet status --json` of one host
/// ("enforced" only when the status observed the binding's mod revision).
fn port_state(host_status: &Value, id: &str) -> Option<String> {
    host_status["ports"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == id)
        .and_then(|p| p["state"].as_str().map(str::to_string))
}

fn port_message(host_status: &Value, id: &str) -> String {
    host_status["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["id"] == id)
        .and_then(|p| p["status"]["message"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn wait_state(cluster: &Cluster, h: &Host, id: &str, want: &str, secs: u64) {
    let mut last = Value::Null;
    let ok = eventually(secs, || {
        last = h.status(cluster);
        port_state(&last, id).as_deref() == Some(want)
    });
    assert!(
        ok,
        "port {id} of {} not {want} after {secs} s: {last:#}\nagent log:\n{}",
        h.name,
        h.agent_log()
    );
}

fn udp(smac: Mac, sip: Ipv4Addr, to: &Vm) -> Vec<u8> {
    f::eth(
        to.mac(),
        smac,
        f::ETH_P_IP,
        &f::udp4(sip, NOBODY, 40000, 9, b"portguard fleet test"),
    )
}

/// Frames from vm `a` with a forged source address that reach vm `b`.
fn spoofed_delivered(a: &Vm, b: &Vm, n: usize) -> usize {
    let forged = udp(a.mac(), Ipv4Addr::new(192, 0, 2, 99), b);
    send_and_count(&a.ns, &a.iface, &b.ns, &b.iface, &vec![forged; n])
}

fn legit_delivered(a: &Vm, b: &Vm) -> bool {
    let ok = udp(a.mac(), a.ip4(), b);
    send_and_count(&a.ns, &a.iface, &b.ns, &b.iface, &[ok]) == 1
}

#[test]
fn put_enforces_delete_removes_and_a_bad_value_is_that_ports_error() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 3);
    // Unguarded, the forged frame goes through: the checks below can fail.
    assert_eq!(spoofed_delivered(h.vm(1), h.vm(2), 3), 3);
    h.start_agent(&cluster);

    h.put(&cluster, "p1", 1);
    h.put(&cluster, "p2", 2);
    // A value `fleet put` would refuse, written behind its back.
    cluster.etcdctl_ok(
        "orchestrator",
        &[
            "put",
            "/portguard/v1/hosts/hv1/ports/p3",
            r#"{"schema":1,"iface":"vm3","mac":"02:00:00:00:00:03","ips":["300.1.2.3"]}"#,
        ],
    );
    wait_state(&cluster, &h, "p1", "enforced", 30);
    wait_state(&cluster, &h, "p2", "enforced", 30);
    wait_state(&cluster, &h, "p3", "error", 30);
    let st = h.status(&cluster);
    assert!(
        port_message(&st, "p3").contains("300.1.2.3"),
        "p3's status names the bad address: {st:#}"
    );
    assert!(!h.bound("vm3"), "a refused value binds nothing");
    assert_eq!(st["agent"]["enforced"], 2, "{st:#}");
    assert_eq!(st["agent"]["error"], 1, "{st:#}");
    assert_eq!(st["agent"]["port_capacity"], 4095, "the default: {st:#}");

    let before = h.lab.counters(h.vm(1));
    assert_eq!(
        spoofed_delivered(h.vm(1), h.vm(2), 5),
        0,
        "forged frames passed"
    );
    assert!(
        legit_delivered(h.vm(1), h.vm(2)),
        "legitimate frame dropped"
    );
    let after = h.lab.counters(h.vm(1));
    assert_eq!(
        after.dropped("ipv4_spoof") - before.dropped("ipv4_spoof"),
        5
    );

    // `fleet put` validates before writing: one line, non-zero, nothing written.
    let o = cluster.fleet(
        &h.lab.host,
        "orchestrator",
        &[
            "put",
            "hv1",
            "p4",
            "--iface",
            "vm3",
            "--mac",
            "02:00:00:00:00:03",
            "--ip",
            "1.2.3.4/99",
        ],
    );
    assert!(!o.status.success() && cli::one_line_error(&o), "{o:?}");
    let got = cluster.etcdctl_ok("orchestrator", &["get", "/portguard/v1/hosts/hv1/ports/p4"]);
    assert!(got.is_empty(), "a refused put wrote {got}");

    // Delete: unbound and detached; its status key goes too.
    let o = cluster.fleet(&h.lab.host, "orchestrator", &["delete", "hv1", "p1"]);
    assert!(o.status.success(), "{}", cli::stderr(&o));
    assert!(
        eventually(30, || !h.bound("vm1") && h.lab.check_mode("vm1").is_none()),
        "vm1 still bound or attached after delete:\n{}",
        h.agent_log()
    );
    assert_eq!(
        spoofed_delivered(h.vm(1), h.vm(2), 2),
        2,
        "vm1 still filtered"
    );
    assert!(eventually(10, || port_state(&h.status(&cluster), "p1").is_none()));
    let status_keys = cluster.etcdctl_ok(
        "orchestrator",
        &[
            "get",
            "--prefix",
            "--keys-only",
            "/portguard/v1/status/hv1/ports/",
        ],
    );
    assert!(
        !status_keys.contains("/p1"),
        "status of a deleted port stays: {status_keys}"
    );
    // p2 untouched.
    assert!(h.bound("vm2"));
}

#[test]
fn a_host_certificate_cannot_read_or_change_another_hosts_keys() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1", "hv2"]);
    let mut h = Host::new(&mut cluster, "hv2", 1);
    let orch = "orchestrator";
    cluster.etcdctl_ok(
        orch,
        &[
            "put",
            "/portguard/v1/hosts/hv2/ports/p1",
            r#"{"schema":1,"iface":"vm1","mac":"02:00:00:00:00:01","ips":["192.0.2.1"]}"#,
        ],
    );
    cluster.etcdctl_ok(
        orch,
        &[
            "put",
            "/portguard/v1/hosts/hv10/ports/p1",
            r#"{"schema":1,"iface":"vm1","mac":"02:00:00:00:00:01"}"#,
        ],
    );
    let ns = cluster.ns.clone();
    let denied = |o: &std::process::Output, what: &str| {
        assert!(!o.status.success(), "{what} was allowed");
        let e = format!("{}{}", cli::stdout(o), cli::stderr(o));
        assert!(e.contains("permission denied"), "{what}: {e}");
    };
    // hv1's own prefix: readable; hv2's and hv10's: not.
    let own = cluster.fleet(&ns, "hv1", &["get", "hv1"]);
    assert!(own.status.success(), "{}", cli::stderr(&own));
    denied(
        &cluster.fleet(&ns, "hv1", &["get", "hv2"]),
        "hv1 reading hv2",
    );
    denied(
        &cluster.fleet(&ns, "hv1", &["get", "hv10"]),
        "hv1 reading hv10",
    );
    denied(
        &cluster.fleet(
            &ns,
            "hv1",
            &[
                "put",
                "hv2",
                "p1",
                "--iface",
                "vm1",
                "--mac",
                "02:00:00:00:00:66",
            ],
        ),
        "hv1 writing hv2's binding",
    );
    denied(
        &cluster.fleet(
            &ns,
            "hv1",
            &[
                "put",
                "hv1",
                "px",
                "--iface",
                "vm1",
                "--mac",
                "02:00:00:00:00:66",
            ],
        ),
        "hv1 writing its own binding",
    );
    denied(
        &cluster.etcdctl("hv1", &["put", "/portguard/v1/status/hv2/agent", "{}"]),
        "hv1 writing hv2's status",
    );
    denied(
        &cluster.etcdctl("hv1", &["get", "--prefix", "/portguard/v1/status/hv2/"]),
        "hv1 reading hv2's status",
    );
    cluster.etcdctl_ok("hv1", &["put", "/portguard/v1/status/hv1/agent", "{}"]);
    let v = cluster.etcdctl_ok(
        orch,
        &[
            "get",
            "--print-value-only",
            "/portguard/v1/hosts/hv2/ports/p1",
        ],
    );
    assert!(
        v.contains("02:00:00:00:00:01"),
        "hv2's binding changed: {v}"
    );

    // An agent claiming to be hv2 with hv1's certificate gets nothing.
    h.start_agent_as(&cluster, "hv1");
    assert!(
        eventually(20, || h.agent_log().contains("permission denied")),
        "agent log: {}",
        h.agent_log()
    );
    assert!(
        !h.bound("vm1"),
        "hv2's binding was applied with hv1's certificate"
    );
    h.agent.as_mut().unwrap().assert_running();
    // The real hv2 gets it.
    h.agent = None;
    h.start_agent(&cluster);
    assert!(eventually(30, || h.bound("vm1")), "{}", h.agent_log());
}

/// A binding value for a port whose interface `iface` need not exist.
fn value(iface: &str, n: u32, extra_ip: bool) -> String {
    let mut ips = vec![format!("203.0.113.{}", n % 250 + 1)];
    if extra_ip {
        ips.push(format!("198.51.100.{}", n % 250 + 1));
    }
    serde_json::json!({
        "schema": 1,
        "iface": iface,
        "mac": format!("02:00:01:00:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff),
        "ips": ips,
    })
    .to_string()
}

fn key(host: &str, id: &str) -> String {
    format!("/portguard/v1/hosts/{host}/ports/{id}")
}

/// Writes (Some(value)) or deletes (None) keys one revision each, retrying
/// each until the cluster acknowledges it (elections pause writes).
fn write_all(cluster: &Cluster, ops: Vec<(String, Option<String>)>) {
    cluster.with_client("orchestrator", |mut c| async move {
        for (k, v) in ops {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let r = match &v {
                    Some(v) => c.put(k.as_str(), v.as_str(), None).await.map(|_| ()),
                    None => c.delete(k.as_str(), None).await.map(|_| ()),
                };
                match r {
                    Ok(()) => break,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("writing {k}: {e}"),
                }
            }
        }
    })
}

/// True when every binding of the host has a status that observed its
/// current mod revision (enforced, pending or error), exactly `n` of them,
/// and no status is left for a binding that is gone.
fn converged(cluster: &Cluster, h: &Host, n: usize) -> bool {
    let st = h.status(cluster);
    let ports = st["ports"].as_array().cloned().unwrap_or_default();
    let status_keys = cluster.etcdctl_ok(
        "orchestrator",
        &[
            "get",
            "--prefix",
            "--keys-only",
            &format!("/portguard/v1/status/{}/ports/", h.name),
        ],
    );
    let n_status = status_keys.lines().filter(|l| !l.is_empty()).count();
    ports.len() == n
        && n_status == n
        && ports
            .iter()
            .all(|p| matches!(p["state"].as_str(), Some("enforced" | "pending" | "error")))
}

fn wait_converged(cluster: &Cluster, h: &Host, n: usize, secs: u64) {
    assert!(
        eventually(secs, || converged(cluster, h, n)),
        "{} not converged to {n} ports after {secs} s: {:#}\nagent log:\n{}",
        h.name,
        h.status(cluster)["agent"],
        h.agent_log()
    );
}

#[test]
fn leader_kill_loses_no_event() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 2);
    h.start_agent(&cluster);
    h.put(&cluster, "p1", 1);
    wait_state(&cluster, &h, "p1", "enforced", 30);

    let ops = |r: std::ops::Range<u32>| {
        r.map(|i| {
            (
                key("hv1", &format!("e{i}")),
                Some(value(&format!("e{i}"), i, false)),
            )
        })
        .collect::<Vec<_>>()
    };
    write_all(&cluster, ops(0..60));
    let leader = cluster.leader().expect("a leader");
    cluster.kill(leader);
    // Written while the cluster elects a new leader, each acknowledged.
    write_all(&cluster, ops(60..120));
    assert!(
        eventually(30, || cluster.leader().is_some()),
        "no new leader"
    );
    let t = Instant::now();
    h.put(&cluster, "p2", 2);
    wait_state(&cluster, &h, "p2", "enforced", 30);
    // Reported, not asserted (the issue's goal is 3 s; this machine is shared).
    eprintln!(
        "leader kill: put after failover enforced in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // 120 pending ports + p1 + p2: every acknowledged write was seen.
    wait_converged(&cluster, &h, 122, 60);
    assert_eq!(
        spoofed_delivered(h.vm(2), h.vm(1), 3),
        0,
        "vm2 not enforced"
    );
    assert!(legit_delivered(h.vm(2), h.vm(1)));
    h.agent.as_mut().unwrap().assert_running();
}

#[test]
fn quorum_loss_changes_nothing_and_status_is_honest_after() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 3);
    h.start_agent(&cluster);
    h.put(&cluster, "p1", 1);
    h.put(&cluster, "p2", 2);
    wait_state(&cluster, &h, "p1", "enforced", 30);
    wait_state(&cluster, &h, "p2", "enforced", 30);
    let changes = h.kernel_changes();
    assert_eq!(changes, 2, "one kernel change per port");
    let before = h.status(&cluster)["agent"].clone();

    cluster.kill(0);
    cluster.kill(1);
    // Detected: the require-leader watch is cancelled ("no leader") or a call fails.
    assert!(
        eventually(30, || {
            let l = h.agent_log();
            l.contains("no leader") || l.contains("store:")
        }),
        "quorum loss not detected:\n{}",
        h.agent_log()
    );
    // Fail-static: enforcement intact, nothing written to the maps, for a while.
    for _ in 0..3 {
        assert_eq!(spoofed_delivered(h.vm(1), h.vm(2), 3), 0, "vm1 unguarded");
        assert!(
            legit_delivered(h.vm(1), h.vm(2)),
            "vm1's legit traffic dropped"
        );
        assert!(h.bound("vm1") && h.bound("vm2"));
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(h.kernel_changes(), changes, "map writes during the outage");
    h.agent.as_mut().unwrap().assert_running();

    cluster.restart(0);
    cluster.restart(1);
    assert!(
        eventually(60, || cluster.leader().is_some()),
        "no leader after restart:\n{}",
        cluster.logs()
    );
    h.put(&cluster, "p3", 3);
    wait_state(&cluster, &h, "p3", "enforced", 60);
    // The relist after recovery rewrote nothing that was already right.
    assert_eq!(h.kernel_changes(), changes + 1);
    // The agent's status tells what happened.
    let mut a = Value::Null;
    assert!(
        eventually(30, || {
            a = h.status(&cluster)["agent"].clone();
            a["in_sync"] == true && a["enforced"] == 3
        }),
        "{a:#}"
    );
    assert!(
        a["store_errors"].as_u64() > before["store_errors"].as_u64(),
        "store errors not counted: {a:#}"
    );
    assert!(
        a["last_error"].is_string() && a["last_error_at"].is_string(),
        "{a:#}"
    );
    assert_eq!(spoofed_delivered(h.vm(3), h.vm(1), 2), 0);
}

#[test]
fn compaction_while_paused_ends_equal_to_the_store() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 2);
    h.start_agent(&cluster);
    h.put(&cluster, "p1", 1);
    let initial: Vec<_> = (0..400)
        .map(|i| {
            (
                key("hv1", &format!("c{i}")),
                Some(value(&format!("c{i}"), i, false)),
            )
        })
        .collect();
    write_all(&cluster, initial);
    wait_converged(&cluster, &h, 401, 60);
    wait_state(&cluster, &h, "p1", "enforced", 30);

    let agent = h.agent.as_ref().unwrap();
    agent.signal(libc::SIGSTOP);
    // 1000 changes, one revision each: 250 deletes, 450 updates, 300 new ports,
    // and the two real ports swap (vm1 unbound, vm2 bound).
    let mut ops = Vec::new();
    for i in 0..250 {
        ops.push((key("hv1", &format!("c{i}")), None));
    }
    for i in 250..400 {
        for round in 0..3 {
            ops.push((
                key("hv1", &format!("c{i}")),
                Some(value(&format!("c{i}"), i + 1000 * round, round == 2)),
            ));
        }
    }
    for i in 400..698 {
        ops.push((
            key("hv1", &format!("c{i}")),
            Some(value(&format!("c{i}"), i, false)),
        ));
    }
    ops.push((key("hv1", "p1"), None));
    let vm2 = h.vm(2);
    ops.push((
        key("hv1", "p2"),
        Some(
            serde_json::json!({"schema":1,"iface":vm2.host_if,"mac":f::mac_str(&vm2.mac()),"ips":[vm2.ip4().to_string()]})
                .to_string(),
        ),
    ));
    assert_eq!(ops.len(), 1000);
    write_all(&cluster, ops);
    let rev = cluster.revision();
    cluster.etcdctl_ok("root", &["compact", &rev.to_string(), "--physical"]);
    agent.signal(libc::SIGCONT);

    // 150 updated + 298 new + p2.
    wait_converged(&cluster, &h, 449, 90);
    wait_state(&cluster, &h, "p2", "enforced", 30);
    assert!(!h.bound("vm1"), "p1 was deleted while paused");
    assert_eq!(spoofed_delivered(h.vm(2), h.vm(1), 2), 0);
    assert_eq!(spoofed_delivered(h.vm(1), h.vm(2), 2), 2);
    // Every status observed the store's last value.
    let st = h.status(&cluster);
    for p in st["ports"].as_array().unwrap() {
        assert_eq!(
            p["status"]["observed_mod_revision"], p["binding_mod_revision"],
            "{p:#}"
        );
    }
    eprintln!(
        "compaction test: agent lists = {}, log mentions compaction: {}",
        st["agent"]["lists"],
        h.agent_log().contains("compacted")
    );
}

#[test]
fn agent_killed_mid_apply_converges_on_restart_and_nothing_spoofed_passes() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 2);
    h.start_agent(&cluster);
    h.put(&cluster, "p1", 1);
    h.put(&cluster, "p2", 2);
    wait_state(&cluster, &h, "p1", "enforced", 30);
    wait_state(&cluster, &h, "p2", "enforced", 30);
    // Ethernet interfaces to bind and attach: the agent has real work to do.
    let n = 40u32;
    let batch: String = (0..n)
        .map(|i| {
            format!("link add d{i} type veth peer name e{i}\nlink set d{i} up\nlink set e{i} up\n")
        })
        .collect();
    let bf = h.tmp.path("links.batch");
    std::fs::write(&bf, batch).unwrap();
    portguard_tests::netns::must(&["ip", "-n", &h.lab.host, "-batch", &bf.display().to_string()]);
    let base = h.kernel_changes();

    // Forged frames from vm1 all along, counted at vm2.
    let (vm1, vm2) = (h.vm(1).clone(), h.vm(2).clone());
    let cap = vm2.capture();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forged = udp(vm1.mac(), Ipv4Addr::new(192, 0, 2, 99), &vm2);
    let spoofer = {
        let stop = stop.clone();
        let forged = forged.clone();
        let vm1 = vm1.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                vm1.send(&vec![forged.clone(); 10]);
                sent += 10;
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        })
    };
    let ops: Vec<_> = (0..n)
        .map(|i| {
            (
                key("hv1", &format!("d{i}")),
                Some(value(&format!("d{i}"), i, false)),
            )
        })
        .collect();
    write_all(&cluster, ops);
    // Killed while it is applying (some but not all ports changed).
    let mid = eventually(30, || h.kernel_changes() > base);
    h.agent.as_mut().unwrap().kill();
    let done_at_kill = h.kernel_changes() - base;
    assert!(mid, "the agent applied nothing:\n{}", h.agent_log());
    eprintln!("agent killed after {done_at_kill} of {n} port changes");
    std::thread::sleep(Duration::from_millis(500));
    h.start_agent(&cluster);
    wait_converged(&cluster, &h, 2 + n as usize, 90);
    let st = h.status(&cluster);
    assert_eq!(st["agent"]["enforced"], 2 + n as u64, "{st:#}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = spoofer.join().unwrap();
    let got = cap.finish();
    let passed = got
        .iter()
        .filter(|g| portguard_tests::netns::frame_matches(g, &forged))
        .count();
    assert!(sent > 0);
    assert_eq!(passed, 0, "{passed} of {sent} forged frames passed");
    assert!(legit_delivered(&vm1, &vm2));
}

#[test]
fn a_host_rebooted_during_an_outage_enforces_its_snapshot() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 2);
    h.start_agent(&cluster);
    h.put(&cluster, "p1", 1);
    wait_state(&cluster, &h, "p1", "enforced", 30);
    let snap = h.tmp.path("snapshot.json");
    assert!(
        eventually(10, || std::fs::read_to_string(&snap)
            .is_ok_and(|s| s.contains("\"vm1\""))),
        "no snapshot written"
    );
    // The snapshot is an ordinary state file.
    let o = h
        .lab
        .pg(&["apply", "--dry-run", "-f", &snap.display().to_string()]);
    assert!(o.status.success(), "{}", cli::stderr(&o));
    assert!(cli::stdout(&o).contains("vm1"), "{}", cli::stdout(&o));

    // Outage, then a "reboot": agent gone, every pin (and so the filter) gone.
    for i in 0..cluster.size() {
        cluster.kill(i);
    }
    h.agent.as_mut().unwrap().kill();
    std::fs::remove_dir_all(&h.lab.pin_dir).unwrap();
    // (Links are released asynchronously once their last reference goes.)
    assert!(
        eventually(10, || spoofed_delivered(h.vm(1), h.vm(2), 2) == 2),
        "still filtered after the pins went"
    );
    h.start_agent(&cluster);
    // (Only once the agent has created the maps: `show` would race it.)
    assert!(
        eventually(30, || h.agent_log().contains("applied snapshot")),
        "snapshot not applied while the store is down:\n{}",
        h.agent_log()
    );
    assert!(h.bound("vm1") && h.lab.check_mode("vm1").is_some());
    assert_eq!(spoofed_delivered(h.vm(1), h.vm(2), 3), 0);
    assert!(legit_delivered(h.vm(1), h.vm(2)));
}

#[test]
fn a_port_follows_its_interface_going_and_coming_back() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 2);
    h.start_agent(&cluster);
    h.put(&cluster, "p1", 1);
    wait_state(&cluster, &h, "p1", "enforced", 30);
    let first = h.vm(1).host_ifindex;
    // The VM stops: its tap/veth is deleted. The binding waits for it.
    portguard_tests::netns::must(&["ip", "-n", &h.lab.host, "link", "del", "vm1"]);
    wait_state(&cluster, &h, "p1", "pending", 30);
    // The VM starts again: a new interface under the same name (new ifindex).
    let vm = h.vm(1).clone();
    let run = |args: &[&str]| portguard_tests::netns::must(args);
    run(&[
        "ip",
        "-n",
        &h.lab.host,
        "link",
        "add",
        "vm1",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &vm.ns,
    ]);
    run(&[
        "ip",
        "-n",
        &vm.ns,
        "link",
        "set",
        "eth0",
        "address",
        &f::mac_str(&vm.mac()),
    ]);
    run(&[
        "ip",
        "-n",
        &vm.ns,
        "addr",
        "add",
        &format!("{}/24", vm.ip4()),
        "dev",
        "eth0",
    ]);
    run(&[
        "ip",
        "-n",
        &h.lab.host,
        "link",
        "set",
        "vm1",
        "master",
        "br0",
    ]);
    run(&["ip", "-n", &h.lab.host, "link", "set", "vm1", "up"]);
    run(&["ip", "-n", &vm.ns, "link", "set", "eth0", "up"]);
    wait_state(&cluster, &h, "p1", "enforced", 30);
    let st = h.status(&cluster);
    let port = st["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "p1")
        .unwrap()
        .clone();
    let now = port["status"]["ifindex"].as_u64().unwrap() as u32;
    assert_ne!(now, first, "enforced on the old ifindex: {port:#}");
    assert_eq!(Some(now), h.lab.host_ifindex("vm1"));
    // Forwarding through the bridge needs the new port to be forwarding.
    assert!(eventually(10, || legit_delivered(h.vm(1), h.vm(2))));
    assert_eq!(spoofed_delivered(h.vm(1), h.vm(2), 3), 0);
}

/// A host whose pin dir is full (`--max-ports 3`: 2 ports) reports the
/// port that does not fit as `error`, saying why, applies the others, and
/// enforces it once a slot is freed (error ports are retried).
#[test]
fn a_port_beyond_the_hosts_capacity_is_an_error_until_a_slot_frees() {
    tools();
    let mut cluster = Cluster::start(3, &["hv1"]);
    let mut h = Host::new(&mut cluster, "hv1", 3);
    h.max_ports = Some(3);
    h.start_agent(&cluster);
    for (id, vm) in [("p1", 1), ("p2", 2)] {
        h.put(&cluster, id, vm);
        wait_state(&cluster, &h, id, "enforced", 30);
    }
    h.put(&cluster, "p3", 3);
    wait_state(&cluster, &h, "p3", "error", 30);
    let st = h.status(&cluster);
    let msg = port_message(&st, "p3");
    assert!(msg.contains("all 2 port slots"), "{msg}\n{st:#}");
    assert_eq!(st["agent"]["port_capacity"], 2, "{st:#}");
    assert!(!h.bound("vm3"));
    assert!(h.bound("vm1") && h.bound("vm2"));

    let o = cluster.fleet(&h.lab.host, "orchestrator", &["delete", "hv1", "p1"]);
    assert!(o.status.success(), "fleet delete: {}", cli::stderr(&o));
    wait_state(&cluster, &h, "p3", "enforced", 30);
    assert!(h.bound("vm3") && !h.bound("vm1"));
    assert!(eventually(10, || legit_delivered(h.vm(3), h.vm(2))));
    assert_eq!(spoofed_delivered(h.vm(3), h.vm(2), 3), 0);
}

#[test]
fn fleet_and_agent_refuse_bad_input_in_one_line_before_connecting() {
    // Nothing listens on this address: every refusal below happens first.
    let ep = ["--endpoints", "http://192.0.2.1:9"];
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "fleet",
                ep[0],
                ep[1],
                "put",
                "hv/1",
                "p1",
                "--iface",
                "vm1",
                "--mac",
                "02:00:00:00:00:01",
            ],
            "invalid host",
        ),
        (
            &[
                "fleet",
                ep[0],
                ep[1],
                "put",
                "hv1",
                "..",
                "--iface",
                "vm1",
                "--mac",
                "02:00:00:00:00:01",
            ],
            "invalid port id",
        ),
        (
            &[
                "fleet", ep[0], ep[1], "put", "hv1", "p1", "--iface", "vm1", "--mac", "zz",
            ],
            "zz",
        ),
        (
            &[
                "fleet",
                ep[0],
                ep[1],
                "put",
                "hv1",
                "p1",
                "--value",
                "{\"schema\":2,\"iface\":\"vm1\",\"mac\":\"02:00:00:00:00:01\"}",
            ],
            "schema",
        ),
        (
            &["fleet", "--endpoints", "etcd:2379", "get", "hv1"],
            "invalid etcd endpoint",
        ),
        (
            &[
                "fleet",
                ep[0],
                ep[1],
                "--cert",
                "/nonexistent",
                "get",
                "hv1",
            ],
            "--cert and --key",
        ),
        (&["agent", "--host", "hv 1", ep[0], ep[1]], "invalid host"),
        (
            &[
                "agent",
                "--host",
                "hv1",
                ep[0],
                ep[1],
                "--relist-interval",
                "0",
            ],
            "--relist-interval",
        ),
    ];
    for (args, want) in cases {
        let o = std::process::Command::new(cli::bin())
            .args(*args)
            .output()
            .expect("run portguard");
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(cli::one_line_error(&o), "{args:?}: {o:?}");
        assert!(
            cli::stderr(&o).contains(want),
            "{args:?}: {}",
            cli::stderr(&o)
        );
    }
}
