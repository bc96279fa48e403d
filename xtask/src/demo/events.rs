//! The `portguard events` part of the demo (optional: older CLIs lack it).
use std::{collections::BTreeMap, os::unix::process::ExitStatusExt, process::Stdio};

use super::net::Lab;

/// How this portguard's `events` subcommand (optional for the demo) is read.
#[derive(Clone, Copy)]
pub enum Events {
    /// `events --follow` runs in the background during the steps.
    Follow,
    /// Read once at the end (what the ring buffer holds).
    AtEnd,
}

fn help_of(lab: &Lab, args: &[&str]) -> String {
    lab.portguard(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Starts `portguard events --follow` in the background if it exists.
pub fn start_events(lab: &mut Lab) -> Option<Events> {
    let has = help_of(lab, &["--help"])
        .lines()
        .any(|l| l.trim_start().starts_with("events "));
    if !has {
        println!("    (this portguard has no `events` subcommand)");
        return None;
    }
    if !help_of(lab, &["events", "--help"]).contains("--follow") {
        return Some(Events::AtEnd);
    }
    let mut cmd = lab.portguard(&["events", "--follow"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    match lab.spawn(cmd) {
        Ok(()) => Some(Events::Follow),
        Err(e) => {
            println!("    (could not start `portguard events --follow`: {e:#})");
            None
        }
    }
}

pub fn show_events(lab: &mut Lab, how: Events) {
    println!("\ndemo: portguard events (sampled drops captured during the demo)");
    let outs = match how {
        Events::Follow => lab.stop_background(),
        Events::AtEnd => lab.portguard(&["events"]).output().into_iter().collect(),
    };
    for out in outs {
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        print_events(&lines);
        let err = String::from_utf8_lossy(&out.stderr);
        // Ended by our SIGINT is the normal end of --follow; anything else is worth showing.
        let interrupted =
            out.status.signal() == Some(libc::SIGINT) || out.status.code() == Some(130);
        if !out.status.success() && !interrupted {
            println!(
                "    (`portguard events` ended with {}: {})",
                out.status,
                err.trim()
            );
        } else if lines.is_empty() {
            println!("    (none)");
        }
    }
}

// The names of `filter_common::Reason::DROPS`, copied: xtask does not depend on
// the workspace crates (it builds them), so it cannot use the list itself.
const REASONS: [&str; 14] = [
    "unbound_port",
    "mac_spoof",
    "vlan",
    "ipv4_spoof",
    "arp_spoof",
    "ethertype",
    "malformed",
    "ipv6_spoof",
    "nd_spoof",
    "ra_guard",
    "dhcp_server",
    "bcast_limit",
    "mcast_limit",
    "arp_limit",
];

/// At most 3 events per reason, then how many more of each.
fn print_events(lines: &[&str]) {
    const PER_REASON: usize = 3;
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    let mut more: BTreeMap<&str, usize> = BTreeMap::new();
    for l in lines {
        let reason = l
            .split_whitespace()
            .find(|w| REASONS.contains(w))
            .unwrap_or("other");
        let n = shown.entry(reason).or_default();
        if *n < PER_REASON {
            *n += 1;
            println!("    {l}");
        } else {
            *more.entry(reason).or_default() += 1;
        }
    }
    if !more.is_empty() {
        let m: Vec<String> = more.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("    ... and more: {}", m.join(", "));
    }
}
