//! `cargo xtask demo`: portguard between three throwaway "VMs" on a bridge,
//! showing legitimate traffic pass and each attack stopped, then cleaning up.
mod events;
mod frames;
mod net;
mod steps;

use std::{collections::BTreeMap, process::ExitCode, time::Instant};

use anyhow::{Context, Result};

use self::{
    events::{show_events, start_events},
    net::{check_interrupted, Lab, HOST, PIN_DIR},
    steps::{Seen, STEPS, STORM_BURST, STORM_PPS},
};
use crate::{
    setup::{self, Privilege},
    util::{self, cargo, is_root, reexec_as_root, secs, stdout_of, target_dir},
};

pub fn run(guarded: bool) -> Result<ExitCode> {
    if !is_root() {
        return reexec_as_root("cargo xtask demo");
    }
    net::catch_signals();
    setup::run(Privilege::Require)?;
    println!("demo: building portguard");
    util::run(&mut cargo(["build", "--quiet", "-p", "filter-user"]))?;
    let bin = target_dir().join("debug/portguard");

    let t0 = Instant::now();
    let audit = std::env::temp_dir().join(format!("pgdemo-audit-{}.jsonl", std::process::id()));
    std::env::set_var("PORTGUARD_AUDIT_LOG", &audit);
    let res = {
        let mut lab = Lab::create(&bin)?;
        demo(&mut lab, guarded)
        // `lab` dropped here: namespaces and pins removed, success or not.
    };
    let _ = std::fs::remove_file(&audit);
    let failed = res?;
    println!();
    if failed.is_empty() {
        println!(
            "demo: every step behaved as expected ({:.1} s); namespaces and {PIN_DIR} removed",
            secs(t0)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "demo: {} step(s) did NOT behave as expected: {}",
            failed.len(),
            failed.join("; ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `cargo xtask demo --fleet`: tests/src/bin/fleet_demo.rs, which reuses
/// the etcd cluster and namespace harness of the fleet tests.
pub fn run_fleet() -> Result<ExitCode> {
    if !is_root() {
        return reexec_as_root("cargo xtask demo --fleet");
    }
    setup::run(Privilege::Require)?;
    println!("demo: building portguard and the fleet demo");
    util::run(&mut cargo(["build", "--quiet", "-p", "filter-user"]))?;
    let bin = target_dir().join("debug/portguard");
    let mut cmd = cargo([
        "run",
        "--quiet",
        "-p",
        "portguard-tests",
        "--bin",
        "fleet_demo",
    ]);
    cmd.env("PORTGUARD_BIN", &bin);
    let st = cmd.status().context("running the fleet demo")?;
    Ok(if st.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn indent(s: &str) {
    for l in s.lines() {
        println!("    {l}");
    }
}

/// Runs every step; returns the titles of those that went wrong.
fn demo(lab: &mut Lab, guarded: bool) -> Result<Vec<String>> {
    println!(
        "demo: namespaces {HOST} (bridge br0: pgv1 pgv2 pgv3) and {0}vm1 {0}vm2 {0}vm3 (eth0 each); pins in {PIN_DIR}",
        net::PREFIX
    );
    for vm in &lab.vms {
        println!(
            "    {}: {} {} {} (link-local {})",
            vm.name,
            vm.mac_str(),
            vm.v4,
            vm.v6,
            vm.link_local()
        );
    }
    let events = if guarded {
        protect(lab)?;
        start_events(lab)
    } else {
        println!("\ndemo: control run WITHOUT portguard: every attack is expected to get through");
        None
    };

    println!("\ndemo: traffic (observed at the receiving VM)");
    let mut failed = Vec::new();
    let mut before = drops(lab, guarded)?;
    for (i, step) in STEPS.iter().enumerate() {
        check_interrupted()?;
        let expect = if guarded { step.expect } else { Seen::Pass };
        let t = Instant::now();
        let out = (step.run)(lab).with_context(|| format!("step {:?}", step.title))?;
        check_interrupted()?;
        let after = drops(lab, guarded)?;
        let delta: Vec<String> = after
            .iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
                (d > 0).then(|| format!("{} {} +{d}", k.0, k.1))
            })
            .collect();
        let counted = !guarded
            || step.reason.is_none_or(|r| {
                after
                    .iter()
                    .any(|(k, v)| k.1 == r && *v > before.get(k).copied().unwrap_or(0))
            });
        let ok = out.seen == expect && counted;
        println!(
            "  [{}] {:<42} {:<7} (expected {:<7}) {}  {:.1} s",
            i + 1,
            step.title,
            out.seen,
            expect,
            if ok { "ok" } else { "UNEXPECTED" },
            secs(t)
        );
        println!("        {}", out.detail);
        if guarded {
            let drops = if delta.is_empty() {
                "none".to_string()
            } else {
                delta.join(", ")
            };
            println!("        portguard drops: {drops}");
        }
        if !counted {
            println!(
                "        (portguard did not count {})",
                step.reason.unwrap_or("?")
            );
        }
        if !ok {
            failed.push(step.title.to_string());
        }
        before = after;
    }
    if !guarded {
        return Ok(failed);
    }

    println!("\ndemo: portguard stats");
    indent(&lab.portguard_ok(&["stats"])?);
    if let Some(ev) = events {
        show_events(lab, ev);
    }
    println!("\ndemo: portguard unbind + detach");
    for vm in &lab.vms {
        indent(&lab.portguard_ok(&["unbind", vm.port])?);
        indent(&lab.portguard_ok(&["detach", vm.port])?);
    }
    Ok(failed)
}

/// Attaches portguard to the three host-side ports and binds each VM.
fn protect(lab: &Lab) -> Result<()> {
    println!("\ndemo: portguard attach + bind (in {HOST}, via nsenter)");
    let storm_pps = STORM_PPS.to_string();
    let storm_burst = STORM_BURST.to_string();
    for (i, vm) in lab.vms.iter().enumerate() {
        indent(&lab.portguard_ok(&["attach", vm.port])?);
        let (v4, v6, mac) = (vm.v4.to_string(), vm.v6.to_string(), vm.mac_str());
        let mut args = vec![
            "bind", vm.port, "--mac", &mac, "--ip", &v4, "--ip", &v6, "--tenant",
        ];
        if i < 2 {
            args.push("acme");
        } else {
            args.extend([
                "globex",
                "--broadcast-pps",
                &storm_pps,
                "--broadcast-burst",
                &storm_burst,
            ]);
        }
        println!("    $ portguard {}", args.join(" "));
        indent(&lab.portguard_ok(&args)?);
    }
    indent(&lab.portguard_ok(&["show"])?);
    Ok(())
}

/// Dropped packets per (port, reason) from `portguard stats --json`.
fn drops(lab: &Lab, guarded: bool) -> Result<BTreeMap<(String, String), u64>> {
    if !guarded {
        return Ok(BTreeMap::new());
    }
    let text = stdout_of(&mut lab.portguard(&["stats", "--json"]))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("parsing `portguard stats --json`")?;
    let mut out = BTreeMap::new();
    for port in v.as_array().into_iter().flatten() {
        let iface = port["iface"].as_str().unwrap_or("?").to_string();
        if let Some(m) = port["dropped"].as_object() {
            for (reason, c) in m {
                let n = c["packets"].as_u64().or_else(|| c.as_u64()).unwrap_or(0);
                out.insert((iface.clone(), reason.clone()), n);
            }
        }
    }
    Ok(out)
}
