//! `cargo xtask demo --fleet`: a 3-member etcd cluster (mTLS, one etcd user
//! per host), two hypervisors (network namespaces) with two VMs each and a
//! `portguard agent` each; bindings put through `portguard fleet`; forged
//! frames dropped; the etcd leader killed; a binding put after the failover
//! enforced; everything removed at the end (also on failure).
use std::{net::Ipv4Addr, process::ExitCode, time::Instant};

use portguard_tests::{
    cli,
    etcd::Cluster,
    frames::{self as f, Mac},
    netns::{send_and_count, Lab, Vm},
    proc::{eventually, Proc, TmpDir},
};

const NOBODY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

struct Hv {
    name: &'static str,
    lab: Lab,
    _tmp: TmpDir,
    _agent: Proc,
}

fn indent(s: &str) {
    for l in s.lines() {
        println!("    {l}");
    }
}

fn udp(smac: Mac, sip: Ipv4Addr, to: &Vm) -> Vec<u8> {
    f::eth(
        to.mac(),
        smac,
        f::ETH_P_IP,
        &f::udp4(sip, NOBODY, 40000, 9, b"portguard fleet demo"),
    )
}

/// Legitimate, forged-IP and forged-MAC frames from `a` to `b`; true when
/// exactly the legitimate ones arrive.
fn attacks(hv: &Hv, a: &Vm, b: &Vm) -> bool {
    let legit = udp(a.mac(), a.ip4(), b);
    let forged_ip = udp(a.mac(), Ipv4Addr::new(192, 0, 2, 99), b);
    let forged_mac = udp([0x02, 0xba, 0xd0, 0, 0, 1], a.ip4(), b);
    let send =
        |fr: &Vec<u8>| send_and_count(&a.ns, &a.iface, &b.ns, &b.iface, &vec![fr.clone(); 5]);
    let (l, i, m) = (send(&legit), send(&forged_ip), send(&forged_mac));
    let ok = l == 5 && i == 0 && m == 0;
    println!(
        "    {}: {} -> {}: legitimate {l}/5 delivered, forged IP {i}/5, forged MAC {m}/5  {}",
        hv.name,
        a.host_if,
        b.host_if,
        if ok { "ok" } else { "UNEXPECTED" }
    );
    ok
}

fn fleet(cluster: &Cluster, hv: &Hv, args: &[&str]) -> Result<String, String> {
    let o = cluster.fleet(&hv.lab.host, "orchestrator", args);
    if o.status.success() {
        Ok(cli::stdout(&o))
    } else {
        Err(cli::stderr(&o))
    }
}

fn put(cluster: &Cluster, hv: &Hv, id: &str, vm: &Vm) -> Result<(), String> {
    let mac = f::mac_str(&vm.mac());
    let ip = vm.ip4().to_string();
    let args = [
        "put",
        hv.name,
        id,
        "--iface",
        &vm.host_if,
        "--mac",
        &mac,
        "--ip",
        &ip,
    ];
    println!("    $ portguard fleet {}", args.join(" "));
    indent(&fleet(cluster, hv, &args)?);
    Ok(())
}

fn all_enforced(cluster: &Cluster, hv: &Hv, n: usize) -> bool {
    let Ok(out) = fleet(cluster, hv, &["status", hv.name, "--json"]) else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let ports = v["hosts"][0]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ports.len() == n && ports.iter().all(|p| p["state"] == "enforced")
}

fn main() -> ExitCode {
    let t0 = Instant::now();
    match run() {
        Ok(failed) if failed.is_empty() => {
            println!(
                "\nfleet demo: every step behaved as expected ({:.1} s); cluster, namespaces and pins removed",
                t0.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok(failed) => {
            println!(
                "\nfleet demo: step(s) NOT as expected: {}",
                failed.join("; ")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("fleet demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Vec<String>, String> {
    let mut failed = Vec::new();
    println!(
        "fleet demo: starting a 3-member etcd cluster (TLS, users root, orchestrator, hv1, hv2)"
    );
    let mut cluster = Cluster::start(3, &["hv1", "hv2"]);
    println!("    endpoints {}", cluster.endpoints());
    indent(&cluster.etcdctl_ok("root", &["member", "list"]));
    let mut hvs = Vec::new();
    for name in ["hv1", "hv2"] {
        let lab = Lab::new(2);
        let addr = cluster.connect(&lab.host);
        let tmp = TmpDir::new(&lab, "fleetdemo");
        let mut argv: Vec<String> = vec![
            cli::bin().display().to_string(),
            "--pin-dir".into(),
            lab.pin_dir.display().to_string(),
            "--audit-log".into(),
            tmp.s("audit.jsonl"),
            "agent".into(),
            "--host".into(),
            name.into(),
            "--snapshot".into(),
            tmp.s("snapshot.json"),
        ];
        argv.extend(cluster.client_args(name));
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let agent = Proc::spawn(&lab.host, &a, &tmp.path("agent.log"));
        println!(
            "fleet demo: hypervisor {name}: netns {} ({addr}), VMs on vm1, vm2; `portguard agent --host {name}` with {name}'s client certificate",
            lab.host
        );
        hvs.push(Hv {
            name,
            lab,
            _tmp: tmp,
            _agent: agent,
        });
    }

    println!("\nfleet demo: the orchestrator puts the bindings");
    for hv in &hvs {
        put(&cluster, hv, "port-a", hv.lab.vm(1))?;
        put(&cluster, hv, "port-b", hv.lab.vm(2))?;
    }
    for hv in &hvs {
        if !eventually(30, || all_enforced(&cluster, hv, 2)) {
            failed.push(format!("{} not enforced", hv.name));
        }
    }
    println!("\nfleet demo: portguard fleet status");
    indent(&fleet(&cluster, &hvs[0], &["status"])?);

    println!("\nfleet demo: attacks (5 frames each, counted at the receiving VM)");
    for hv in &hvs {
        if !attacks(hv, hv.lab.vm(1), hv.lab.vm(2)) || !attacks(hv, hv.lab.vm(2), hv.lab.vm(1)) {
            failed.push(format!("attacks on {}", hv.name));
        }
    }

    println!("\nfleet demo: hv1's certificate against hv2's bindings");
    let o = cluster.fleet(&hvs[0].lab.host, "hv1", &["get", "hv2"]);
    let denied = !o.status.success() && cli::stderr(&o).contains("permission denied");
    println!(
        "    $ portguard fleet --cert hv1.crt get hv2 -> {}  {}",
        cli::stderr(&o).trim(),
        if denied { "ok" } else { "UNEXPECTED" }
    );
    if !denied {
        failed.push("cross-host read allowed".into());
    }

    let leader = cluster.leader().ok_or("no leader")?;
    println!("\nfleet demo: kill -9 of the etcd leader (member m{leader})");
    cluster.kill(leader);
    let t = Instant::now();
    for hv in &hvs {
        if !attacks(hv, hv.lab.vm(1), hv.lab.vm(2)) {
            failed.push(format!("{} during failover", hv.name));
        }
    }
    let ok = eventually(30, || cluster.leader().is_some());
    println!(
        "    new leader: {} after {:.1} s",
        cluster
            .leader()
            .map(|l| format!("m{l}"))
            .unwrap_or("none".into()),
        t.elapsed().as_secs_f64()
    );
    if !ok {
        failed.push("no new leader".into());
    }
    println!("\nfleet demo: a binding changed after the failover (hv2 port-b gets a new address)");
    let hv = &hvs[1];
    let vm = hv.lab.vm(2);
    let args = [
        "put",
        hv.name,
        "port-b",
        "--iface",
        &vm.host_if,
        "--mac",
        &f::mac_str(&vm.mac()),
        "--ip",
        "192.0.2.77",
    ];
    println!("    $ portguard fleet {}", args.join(" "));
    indent(&fleet(&cluster, hv, &args)?);
    // The VM's own address is no longer its binding: its frames now drop.
    let gone = eventually(30, || {
        all_enforced(&cluster, hv, 2)
            && send_and_count(
                &vm.ns,
                &vm.iface,
                &hv.lab.vm(1).ns,
                &hv.lab.vm(1).iface,
                &[udp(vm.mac(), vm.ip4(), hv.lab.vm(1))],
            ) == 0
    });
    let new_ok = send_and_count(
        &vm.ns,
        &vm.iface,
        &hv.lab.vm(1).ns,
        &hv.lab.vm(1).iface,
        &[udp(vm.mac(), Ipv4Addr::new(192, 0, 2, 77), hv.lab.vm(1))],
    ) == 1;
    println!(
        "    hv2 vm2: old address now dropped: {gone}, new address 192.0.2.77 passes: {new_ok}  {}",
        if gone && new_ok { "ok" } else { "UNEXPECTED" }
    );
    if !(gone && new_ok) {
        failed.push("binding after failover".into());
    }
    println!("\nfleet demo: portguard fleet status (one member down)");
    indent(&fleet(&cluster, &hvs[0], &["status"])?);
    Ok(failed)
}
