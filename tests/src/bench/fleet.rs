//! Fleet section of `cargo xtask bench` (docs/fleet.md): a real 3-member
//! etcd (mTLS, auth) in its own netns, `portguard agent` in a host netns.
//!
//! * put -> enforced: a binding for a fresh veth is written; the time until
//!   the agent's status key for it says `enforced` at that mod revision
//!   (bind + attach + status write included), p50/p99;
//! * initial sync of N ports (veths, bindings with `attach: false`: the
//!   control-plane cost, not N XDP attaches): agent start -> agent key says
//!   every port enforced; then a restart of the agent on that state (list +
//!   plan against the pins): time, and the kernel changes it made (must be 0);
//! * agent RSS with N ports;
//! * etcd with H simulated hosts x 100 ports and one watch per host: time to
//!   write the keys, one update per host fanned out to every watch, member
//!   RSS and database size.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use etcd_client::{EventType, GetOptions, Txn, TxnOp, WatchOptions};
use filter_common::DEFAULT_MAX_PORTS;
use serde_json::{json, Value};

use crate::{
    cli,
    etcd::Cluster,
    netns::{must, Lab},
    proc::{Proc, TmpDir},
};

pub struct FleetOpts {
    /// Ports of the sync/relist/RSS figures.
    pub ports: usize,
    /// put -> enforced samples.
    pub samples: usize,
    /// Simulated hosts for the etcd load figure (100 ports each).
    pub hosts: usize,
    /// The agent's `--max-ports` (the pin dir is created by it).
    pub max_ports: u32,
}

impl FleetOpts {
    pub fn new(quick: bool) -> FleetOpts {
        if quick {
            FleetOpts {
                ports: 2_000,
                samples: 30,
                hosts: 100,
                max_ports: DEFAULT_MAX_PORTS,
            }
        } else {
            FleetOpts {
                ports: 10_000,
                samples: 200,
                hosts: 1_000,
                // 10,000 sync ports + 201 put -> enforced ports, one slot
                // each: more than the default 4,095.
                max_ports: 16_384,
            }
        }
    }
}

fn value(iface: &str, i: usize, attach: bool) -> String {
    json!({
        "schema": 1,
        "iface": iface,
        "mac": format!("02:00:02:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
        "ips": [format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)],
        "attach": attach,
    })
    .to_string()
}

fn port_key(host: &str, id: &str) -> String {
    portguard::fleet::keys::port_key(host, id)
}

/// Creates veth pairs `<prefix><i>` (peer `<peer><i>`) in `ns`, up.
fn veths(ns: &str, prefix: &str, peer: &str, n: usize, tmp: &TmpDir) -> Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: String = chunk
            .iter()
            .map(|i| {
                format!(
                    "link add {prefix}{i} type veth peer name {peer}{i}\nlink set {prefix}{i} up\nlink set {peer}{i} up\n"
                )
            })
            .collect();
        let f = tmp.path("veths.batch");
        std::fs::write(&f, batch)?;
        must(&["ip", "-n", ns, "-batch", &f.display().to_string()]);
    }
    Ok(())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

struct Agent<'a> {
    max_ports: u32,
    lab: &'a Lab,
    tmp: &'a TmpDir,
    cluster: &'a Cluster,
}

impl Agent<'_> {
    fn start(&self, n: usize) -> Proc {
        let mut argv: Vec<String> = vec![
            cli::bin().display().to_string(),
            "--pin-dir".into(),
            self.lab.pin_dir.display().to_string(),
            "--audit-log".into(),
            self.tmp.s("audit.jsonl"),
            "--max-ports".into(),
            self.max_ports.to_string(),
            "agent".into(),
            "--host".into(),
            "hv1".into(),
            "--relist-interval".into(),
            "3600".into(),
        ];
        argv.extend(self.cluster.client_args("hv1"));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        Proc::spawn(
            &self.lab.host,
            &argv,
            &self.tmp.path(&format!("agent-{n}.log")),
        )
    }

    /// Polls the agent key until `pid`'s agent is in sync with `enforced`
    /// ports; returns the seconds from `t0` and the agent key.
    fn wait_synced(
        &self,
        pid: u32,
        enforced: usize,
        t0: Instant,
        limit: Duration,
    ) -> Result<(f64, Value)> {
        let key = portguard::fleet::keys::agent_status_key("hv1");
        self.cluster
            .with_client("orchestrator", move |mut c| async move {
                loop {
                    if let Ok(r) = c.get(key.as_str(), None).await {
                        if let Some(kv) = r.kvs().first() {
                            let v: Value =
                                serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
                            if v["pid"] == pid && v["in_sync"] == true && v["enforced"] == enforced
                            {
                                return Ok((t0.elapsed().as_secs_f64(), v));
                            }
                        }
                    }
                    if t0.elapsed() > limit {
                        bail!("agent not in sync with {enforced} ports after {limit:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
    }
}

/// Runs the section; returns its JSON.
pub fn run(quick: bool) -> Result<Value> {
    let o = FleetOpts::new(quick);
    let mut cluster = Cluster::start(3, &["hv1"]);
    let lab = Lab::new(0);
    cluster.connect(&lab.host);
    let tmp = TmpDir::new(&lab, "fleetbench");
    let t = Instant::now();
    // One more than the samples: the first put is reported on its own.
    veths(&lab.host, "l", "lp", o.samples + 1, &tmp)?;
    veths(&lab.host, "s", "sp", o.ports, &tmp)?;
    let veth_s = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: fleet: {} + {} veth pairs in {veth_s:.1} s",
        o.samples, o.ports
    );
    let a = Agent {
        max_ports: o.max_ports,
        lab: &lab,
        tmp: &tmp,
        cluster: &cluster,
    };

    // put -> enforced.
    let mut agent = a.start(0);
    a.wait_synced(agent.pid(), 0, Instant::now(), Duration::from_secs(30))?;
    let samples = o.samples;
    let lat: Vec<f64> = cluster.with_client("orchestrator", move |mut c| async move {
        let prefix = portguard::fleet::keys::port_status_prefix("hv1");
        let mut ws = c
            .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
            .await
            .context("watching status")?;
        let mut out = Vec::new();
        // The first put after the agent starts may wait for the programs'
        // verification (the agent runs it after its first sync,
        // `Reconciler::warm_up`): a one-time cost, not the steady state.
        for i in 0..=samples {
            let id = format!("l{i}");
            let t0 = Instant::now();
            let r = c
                .put(port_key("hv1", &id), value(&id, i, true), None)
                .await?;
            let rev = r.header().map(|h| h.revision()).unwrap_or(0);
            let want = portguard::fleet::keys::port_status_key("hv1", &id);
            'wait: loop {
                let m = tokio::time::timeout(Duration::from_secs(20), ws.message())
                    .await
                    .context("no status within 20 s")??
                    .context("status watch ended")?;
                for ev in m.events() {
                    let Some(kv) = ev.kv() else { continue };
                    if ev.event_type() != EventType::Put || kv.key() != want.as_bytes() {
                        continue;
                    }
                    let v: Value = serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
                    if v["observed_mod_revision"] == rev && v["state"] == "enforced" {
                        break 'wait;
                    }
                }
            }
            out.push(t0.elapsed().as_secs_f64() * 1e3);
            // Past the status writer's coalescing window: each sample alone.
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    let (first_put_ms, lat) = (lat[0], &lat[1..]);
    drop(agent);

    // Initial sync of N ports, then a restart on the same state.
    let n = o.ports;
    let l = o.samples + 1;
    let t = Instant::now();
    cluster.with_client("orchestrator", move |mut c| async move {
        let ops: Vec<TxnOp> = (0..n)
            .map(|i| {
                let id = format!("s{i}");
                TxnOp::put(port_key("hv1", &id), value(&id, 100_000 + i, false), None)
            })
            .collect();
        for chunk in ops.chunks(128) {
            c.txn(Txn::new().and_then(chunk.to_vec())).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let write_s = t.elapsed().as_secs_f64();
    let t0 = Instant::now();
    agent = a.start(1);
    let (sync_s, st) = a.wait_synced(agent.pid(), l + n, t0, Duration::from_secs(600))?;
    let rss = rss_kib(agent.pid());
    let sync_changes = st["changes"].as_u64().unwrap_or(0);
    drop(agent);
    let audit_before = std::fs::read_to_string(tmp.path("audit.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let t0 = Instant::now();
    agent = a.start(2);
    let (relist_s, st2) = a.wait_synced(agent.pid(), l + n, t0, Duration::from_secs(600))?;
    let relist_changes = st2["changes"].as_u64().unwrap_or(u64::MAX);
    let audit_after = std::fs::read_to_string(tmp.path("audit.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let rss_relist = rss_kib(agent.pid());
    drop(agent);

    // etcd load: H hosts x 100 ports, one watch per host.
    let hosts = o.hosts;
    let etcd = cluster.with_client("orchestrator", move |mut c| async move {
        let t = Instant::now();
        let ops: Vec<TxnOp> = (0..hosts)
            .flat_map(|h| {
                (0..100).map(move |j| {
                    let id = format!("p{j}");
                    TxnOp::put(
                        port_key(&format!("sim{h}"), &id),
                        value(&id, h * 100 + j, true),
                        None,
                    )
                })
            })
            .collect();
        for chunk in ops.chunks(128) {
            c.txn(Txn::new().and_then(chunk.to_vec())).await?;
        }
        let write_s = t.elapsed().as_secs_f64();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut tasks = Vec::new();
        for h in 0..hosts {
            let prefix = portguard::fleet::keys::ports_prefix(&format!("sim{h}"));
            let mut ws = c
                .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
                .await?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(m)) = ws.message().await {
                    if !m.events().is_empty() {
                        let _ = tx.send(Instant::now());
                        return;
                    }
                }
            }));
        }
        // One changed port per host, as fast as one client writes them.
        let t = Instant::now();
        let ops: Vec<TxnOp> = (0..hosts)
            .map(|h| {
                TxnOp::put(
                    port_key(&format!("sim{h}"), "p0"),
                    value("p0", 7, false),
                    None,
                )
            })
            .collect();
        for chunk in ops.chunks(128) {
            c.txn(Txn::new().and_then(chunk.to_vec())).await?;
        }
        let mut last = t;
        for _ in 0..hosts {
            last = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .context("fan-out incomplete")?
                .context("watch tasks gone")?;
        }
        let fanout_s = last.duration_since(t).as_secs_f64();
        for t in tasks {
            t.abort();
        }
        let r = c
            .get(
                "/portguard/v1/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?;
        Ok::<_, anyhow::Error>(json!({
            "hosts": hosts,
            "ports_per_host": 100,
            "keys": r.count(),
            "write_all_seconds": write_s,
            "writes_per_second": (hosts * 100) as f64 / write_s,
            "fanout_one_update_per_host_seconds": fanout_s,
        }))
    })?;
    let mut etcd = etcd;
    let status = cluster.etcdctl_ok("root", &["endpoint", "status", "-w", "json"]);
    let sv: Value = serde_json::from_str(&status).unwrap_or(Value::Null);
    let db: BTreeMap<String, Value> = sv
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["Endpoint"].as_str()?.to_string(),
                e["Status"]["dbSize"].clone(),
            ))
        })
        .collect();
    etcd["db_size_bytes"] = json!(db);
    etcd["member_rss_kib"] = json!(cluster.pids().into_iter().map(rss_kib).collect::<Vec<_>>());

    Ok(json!({
        "quick": quick,
        "put_to_enforced_ms": {
            "samples": lat.len(),
            "p50": percentile(lat, 50.0),
            "p99": percentile(lat, 99.0),
            "max": percentile(lat, 100.0),
            "first_put_after_start": first_put_ms,
        },
        "sync": {
            "ports": n + l,
            "max_ports": o.max_ports,
            "attach": "the N sync ports are bindings only (attach: false); the put->enforced ports are attached",
            "write_bindings_seconds": write_s,
            "initial_sync_seconds": sync_s,
            "initial_sync_kernel_changes": sync_changes,
            "restart_relist_seconds": relist_s,
            "restart_relist_kernel_changes": relist_changes,
            "restart_relist_audit_lines": audit_after - audit_before,
            "agent_rss_kib": rss,
            "agent_rss_after_restart_kib": rss_relist,
        },
        "etcd": etcd,
        "setup": {"veth_seconds": veth_s},
    }))
}

/// Figures for the JSON `ratios` map.
pub fn ratios(v: &Value) -> Vec<(String, Value)> {
    vec![
        (
            "fleet_put_to_enforced_p50_ms".into(),
            v["put_to_enforced_ms"]["p50"].clone(),
        ),
        (
            "fleet_put_to_enforced_p99_ms".into(),
            v["put_to_enforced_ms"]["p99"].clone(),
        ),
        (
            "fleet_initial_sync_s".into(),
            v["sync"]["initial_sync_seconds"].clone(),
        ),
        (
            "fleet_relist_s".into(),
            v["sync"]["restart_relist_seconds"].clone(),
        ),
        (
            "fleet_relist_kernel_changes".into(),
            v["sync"]["restart_relist_kernel_changes"].clone(),
        ),
        (
            "fleet_agent_rss_mib".into(),
            json!(v["sync"]["agent_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0),
        ),
    ]
}

/// The markdown section.
pub fn markdown(v: &Value) -> String {
    let p = &v["put_to_enforced_ms"];
    let s = &v["sync"];
    let e = &v["etcd"];
    let f = |x: &Value| {
        x.as_f64()
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "## Fleet (etcd, `portguard agent`)\n\n\
         | figure | target | measured |\n|---|---|---|\n\
         | put -> enforced p50 / p99 / max ({} samples), ms | p99 < 100 | {} / {} / {} |\n\
         | first put after the agent starts -> enforced, ms | - | {} |\n\
         | initial sync of {} ports, s | < 1 | {} |\n\
         | restart relist of {} ports, s (kernel changes) | < 1 (0) | {} ({}) |\n\
         | agent RSS at {} ports, MiB | < 50 | {:.1} |\n\
         | etcd: {} hosts x 100 ports written, s ({:.0} keys/s) | - | {} |\n\
         | etcd: one update per host fanned out to {} watches, s | - | {} |\n\
         | etcd member RSS, KiB | - | {} |\n\n",
        p["samples"],
        f(&p["p50"]),
        f(&p["p99"]),
        f(&p["max"]),
        f(&p["first_put_after_start"]),
        s["ports"],
        f(&s["initial_sync_seconds"]),
        s["ports"],
        f(&s["restart_relist_seconds"]),
        s["restart_relist_kernel_changes"],
        s["ports"],
        s["agent_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        e["hosts"],
        e["writes_per_second"].as_f64().unwrap_or(f64::NAN),
        f(&e["write_all_seconds"]),
        e["hosts"],
        f(&e["fanout_one_update_per_host_seconds"]),
        e["member_rss_kib"],
    )
}
