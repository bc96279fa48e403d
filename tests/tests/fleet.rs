//! The fleet (docs/fleet.md): `portguard agent` in a host network namespace
//! converging from a real 3-node etcd cluster (Debian's etcd, mTLS, CN
//! users with per-host roles), bindings written through `portguard fleet`
//! or etcdctl, real frames from VM namespaces.
//!
//! Needs root, etcd, etcdctl and openssl. Run through `cargo xtask test`.
use std::{
    net::Ipv4Addr,
    path::Path,
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
    name: String,
    lab: Lab,
    tmp: TmpDir,
    agent: Option<Proc>,
}

impl Host {
    fn new(cluster: &mut Cluster, name: &str, vms: u8) -> Host {
        let lab = Lab::new(vms);
        cluster.connect(&lab.host);
        let tmp = TmpDir::new(&lab, "fleet");
        Host {
            name: name.to_string(),
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
        let mut argv: Vec<String> = vec![
            bin,
            "--pin-dir".into(),
            pin,
            "--audit-log".into(),
            audit,
            "agent".into(),
            "--host".into(),
            self.name.clone(),
            "--snapshot".into(),
            snap,
            "--recheck-interval".into(),
            "0.5".into(),
        ];
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
        eventually(30, || !h.bound("vm1") && h.lab.xdp_mode("vm1").is_none()),
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
    let _ = Path::new("");
    let _ = Instant::now();
    let _ = Duration::ZERO;
}
