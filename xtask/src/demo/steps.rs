//! The demo's scenarios: each does one thing from inside the VMs and reports
//! what the victim side observed, independent of portguard's own counters.
use std::{thread, time::Duration};

use anyhow::{bail, Result};

use super::{
    frames,
    net::{Lab, INTERRUPTED},
};
use crate::util::which;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    Pass,
    Blocked,
    Limited,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Seen::Pass => "PASS",
            Seen::Blocked => "BLOCKED",
            Seen::Limited => "LIMITED",
        })
    }
}

pub struct Outcome {
    pub seen: Seen,
    pub detail: String,
}

pub struct Step {
    pub title: &'static str,
    pub expect: Seen,
    /// The drop reason portguard must count for this step (on any port).
    pub reason: Option<&'static str>,
    pub run: fn(&Lab) -> Result<Outcome>,
}

/// Broadcast limit vm3 is bound with (pps, burst), and the flood length.
pub const STORM_PPS: u32 = 100;
pub const STORM_BURST: u32 = 100;
const STORM_SECS: f64 = 2.0;

pub const STEPS: [Step; 9] = [
    Step {
        title: "vm1 -> vm2 ping (IPv4)",
        expect: Seen::Pass,
        reason: None,
        run: legit_v4,
    },
    Step {
        title: "vm1 -> vm2 ping (IPv6)",
        expect: Seen::Pass,
        reason: None,
        run: legit_v6,
    },
    Step {
        title: "vm3 -> vm1 ping (IPv4, honest)",
        expect: Seen::Pass,
        reason: None,
        run: honest_vm3,
    },
    Step {
        title: "spoofed IPv4 source (vm3 as 192.0.2.99)",
        expect: Seen::Blocked,
        reason: Some("ipv4_spoof"),
        run: spoof_ipv4,
    },
    Step {
        title: "spoofed MAC (vm3 as 02:00:00:00:00:66)",
        expect: Seen::Blocked,
        reason: Some("mac_spoof"),
        run: spoof_mac,
    },
    Step {
        title: "ARP spoofing (vm3 claims 192.0.2.12)",
        expect: Seen::Blocked,
        reason: Some("arp_spoof"),
        run: spoof_arp,
    },
    Step {
        title: "NA spoofing (vm3 claims 2001:db8::12)",
        expect: Seen::Blocked,
        reason: Some("nd_spoof"),
        run: spoof_na,
    },
    Step {
        title: "rogue router advertisement from vm3",
        expect: Seen::Blocked,
        reason: Some("ra_guard"),
        run: rogue_ra,
    },
    Step {
        title: "broadcast storm from vm3 (2 s flood)",
        expect: Seen::Limited,
        reason: Some("bcast_limit"),
        run: storm,
    },
];

fn ping(lab: &Lab, from: usize, args: &[&str], to: &str) -> Result<Outcome> {
    let mut a = vec!["-c", "3", "-i", "0.2", "-W", "1", "-q"];
    a.extend(args);
    a.push(to);
    let out = crate::util::capture(&mut lab.vm(&lab.vms[from], "ping", &a))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "3 packets transmitted, 3 received, 0% packet loss, time 401ms"
    let received = text
        .lines()
        .find(|l| l.contains("transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    Ok(Outcome {
        seen: if received == 3 {
            Seen::Pass
        } else {
            Seen::Blocked
        },
        detail: format!("{to} answered {received} of 3 pings"),
    })
}

fn legit_v4(lab: &Lab) -> Result<Outcome> {
    ping(lab, 0, &[], &lab.vms[1].v4.to_string())
}

fn legit_v6(lab: &Lab) -> Result<Outcome> {
    ping(lab, 0, &["-6"], &lab.vms[1].v6.to_string())
}

fn honest_vm3(lab: &Lab) -> Result<Outcome> {
    ping(lab, 2, &[], &lab.vms[0].v4.to_string())
}

/// Echo requests vm1 received while `f` ran (victim-side proof, whatever vm3's ping says).
fn echoes_at_vm1(lab: &Lab, f: impl FnOnce() -> Result<()>) -> Result<u64> {
    let before = lab.snmp(&lab.vms[0])?;
    f()?;
    let after = lab.snmp(&lab.vms[0])?;
    let k = "Icmp.InEchos";
    Ok(after
        .get(k)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(k).copied().unwrap_or(0)))
}

/// vm3 knows vm1's MAC statically, so its frames go out without ARP first.
fn pin_vm1_neighbour(lab: &Lab) -> Result<()> {
    let (vm1, vm3) = (&lab.vms[0], &lab.vms[2]);
    lab.vm_ok(
        vm3,
        "ip",
        &[
            "neigh",
            "replace",
            &vm1.v4.to_string(),
            "lladdr",
            &vm1.mac_str(),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )
    .map(drop)
}

fn blocked_if_none(n: u64, what: &str) -> Outcome {
    Outcome {
        seen: if n == 0 { Seen::Blocked } else { Seen::Pass },
        detail: format!("vm1 received {n} of 3 {what}"),
    }
}

/// vm3 sends 3 pings to vm1 (extra ping flags in `args`); returns how many vm1 received.
fn vm3_pings_vm1(lab: &Lab, args: &[&str]) -> Result<u64> {
    let vm1 = lab.vms[0].v4.to_string();
    let mut a = vec!["-c", "3", "-i", "0.2", "-W", "0.5", "-q"];
    a.extend(args);
    a.push(&vm1);
    echoes_at_vm1(lab, || lab.vm_status(&lab.vms[2], "ping", &a).map(drop))
}

fn spoof_ipv4(lab: &Lab) -> Result<Outcome> {
    let vm3 = &lab.vms[2];
    pin_vm1_neighbour(lab)?;
    lab.vm_ok(vm3, "ip", &["addr", "add", "192.0.2.99/32", "dev", "eth0"])?;
    let n = vm3_pings_vm1(lab, &["-I", "192.0.2.99"]);
    lab.vm_ok(vm3, "ip", &["addr", "del", "192.0.2.99/32", "dev", "eth0"])?;
    Ok(blocked_if_none(n?, "echo requests from 192.0.2.99"))
}

fn spoof_mac(lab: &Lab) -> Result<Outcome> {
    let vm3 = &lab.vms[2];
    let set_mac = |mac: &str| lab.vm_ok(vm3, "ip", &["link", "set", "eth0", "address", mac]);
    set_mac("02:00:00:00:00:66")?;
    // A MAC change flushes the neighbour table, static entries included.
    let n = pin_vm1_neighbour(lab).and_then(|()| vm3_pings_vm1(lab, &[]));
    set_mac(&vm3.mac_str())?;
    Ok(blocked_if_none(
        n?,
        "echo requests from MAC 02:00:00:00:00:66",
    ))
}

/// The MAC vm1's neighbour table holds for `addr` (None if there is no usable entry).
fn vm1_neighbour(lab: &Lab, addr: &str) -> Result<Option<String>> {
    let out = lab.vm_ok(&lab.vms[0], "ip", &["neigh", "show", addr, "dev", "eth0"])?;
    let words: Vec<&str> = out.split_whitespace().collect();
    Ok(words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|s| s.to_string()))
}

/// Poisoning needs an entry to overwrite: vm1 talks to vm2 first.
fn ensure_vm1_knows_vm2(lab: &Lab, addr: &str, v6: bool) -> Result<()> {
    if vm1_neighbour(lab, addr)?.as_deref() != Some(lab.vms[1].mac_str().as_str()) {
        let mut a = vec!["-c", "1", "-W", "1", "-q"];
        if v6 {
            a.push("-6");
        }
        a.push(addr);
        lab.vm_status(&lab.vms[0], "ping", &a)?;
    }
    match vm1_neighbour(lab, addr)? {
        Some(m) if m == lab.vms[1].mac_str() => Ok(()),
        other => bail!("vm1 has no neighbour entry for {addr} -> vm2 to attack (found {other:?})"),
    }
}

fn neighbour_outcome(lab: &Lab, addr: &str) -> Result<Outcome> {
    let (vm2, vm3) = (&lab.vms[1], &lab.vms[2]);
    let now = vm1_neighbour(lab, addr)?.unwrap_or_else(|| "nothing".into());
    let seen = if now == vm3.mac_str() {
        Seen::Pass
    } else {
        Seen::Blocked
    };
    let whose = if now == vm2.mac_str() {
        " (vm2)"
    } else if now == vm3.mac_str() {
        " (vm3: poisoned)"
    } else {
        ""
    };
    Ok(Outcome {
        seen,
        detail: format!("vm1 maps {addr} to {now}{whose}"),
    })
}

fn spoof_arp(lab: &Lab) -> Result<Outcome> {
    let (vm2, vm3) = (&lab.vms[1], &lab.vms[2]);
    let victim = vm2.v4.to_string();
    ensure_vm1_knows_vm2(lab, &victim, false)?;
    // Gratuitous ARP "192.0.2.12 is at <vm3's MAC>". Debian's `arping` is
    // Thomas Habets' (-S source IP); iputils' takes -s and -I.
    let habets = which("arping").is_some()
        && lab
            .vm_ok(vm3, "arping", &["--help"])
            .map(|h| h.contains("Habets"))
            .unwrap_or(false);
    let args: Vec<&str> = if habets {
        vec![
            "-q", "-U", "-S", &victim, "-i", "eth0", "-c", "3", "-W", "0.1", &victim,
        ]
    } else {
        vec![
            "-q", "-U", "-s", &victim, "-I", "eth0", "-c", "3", "-w", "1", &victim,
        ]
    };
    lab.vm_status(vm3, "arping", &args)?;
    thread::sleep(Duration::from_millis(100));
    neighbour_outcome(lab, &victim)
}

fn spoof_na(lab: &Lab) -> Result<Outcome> {
    let (vm1, vm2, vm3) = (&lab.vms[0], &lab.vms[1], &lab.vms[2]);
    let victim = vm2.v6.to_string();
    ensure_vm1_knows_vm2(lab, &victim, true)?;
    // From vm3's own (allowed) address, but advertising vm2's address as its own.
    let na = frames::spoofed_na(vm3.mac, vm3.v6, vm2.v6, vm1.mac, vm1.v6);
    frames::send(&vm3.ns, "eth0", vec![na], 3, Duration::from_millis(50))?;
    thread::sleep(Duration::from_millis(100));
    neighbour_outcome(lab, &victim)
}

fn rogue_ra(lab: &Lab) -> Result<Outcome> {
    let (vm1, vm3) = (&lab.vms[0], &lab.vms[2]);
    // From vm3's own link-local address: the source is legitimate, the message is not.
    let ra = frames::rogue_ra(vm3.mac, vm3.link_local(), "2001:db8::".parse()?);
    frames::send(&vm3.ns, "eth0", vec![ra], 3, Duration::from_millis(50))?;
    thread::sleep(Duration::from_millis(300));
    let routes = lab.vm_ok(vm1, "ip", &["-6", "route", "show", "default"])?;
    Ok(if routes.trim().is_empty() {
        Outcome {
            seen: Seen::Blocked,
            detail: "vm1 has no default route via vm3".into(),
        }
    } else {
        Outcome {
            seen: Seen::Pass,
            detail: format!("vm1 accepted it: {}", routes.trim()),
        }
    })
}

fn storm(lab: &Lab) -> Result<Outcome> {
    let (vm1, vm3) = (&lab.vms[0], &lab.vms[2]);
    // Broadcasts to a port nobody listens on: vm1 counts each as Udp.IgnoredMulti.
    let k = "Udp.IgnoredMulti";
    let before = lab.snmp(vm1)?.get(k).copied().unwrap_or(0);
    let frame = frames::udp_broadcast(vm3.mac, vm3.v4, 9);
    let (sent, secs) = frames::flood(
        &vm3.ns,
        "eth0",
        frame,
        Duration::from_secs_f64(STORM_SECS),
        &INTERRUPTED,
    )?;
    thread::sleep(Duration::from_millis(200));
    let got = lab
        .snmp(vm1)?
        .get(k)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before);
    // The bucket admits its burst, then `pps` per second.
    let allowed = f64::from(STORM_BURST) + f64::from(STORM_PPS) * secs;
    let seen = if got as f64 > allowed * 1.1 + 20.0 {
        Seen::Pass
    } else if (got as f64) < f64::from(STORM_PPS) * secs * 0.5 {
        Seen::Blocked
    } else {
        Seen::Limited
    };
    Ok(Outcome {
        seen,
        detail: format!(
            "vm3 sent {sent} in {secs:.1} s ({:.0}/s); vm1 received {got} (limit {STORM_PPS} pps + burst {STORM_BURST} = {allowed:.0})",
            sent as f64 / secs
        ),
    })
}
