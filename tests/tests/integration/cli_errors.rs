//! Bad input to the CLI: a one-line error on stderr that names the problem,
//! a non-zero exit, and no change to the state (`show --json` identical
//! before and after).
//!
//! Needs root (namespaces, bpffs). Run through `cargo xtask test`.
use portguard_tests::{
    cli::{self, one_line_error, stderr, stdout},
    frames as f,
    netns::Lab,
};
use serde_json::Value;

/// One bad invocation and what its error must mention (case-insensitive).
struct Case {
    args: Vec<String>,
    mentions: Vec<&'static str>,
}

fn case(args: &[&str], mentions: &[&'static str]) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        mentions: mentions.to_vec(),
    }
}

fn show(lab: &Lab) -> Value {
    cli::show_all(&lab.host, &lab.pin_dir)
}

/// Runs every case; returns a description of each violation.
fn check(lab: &Lab, cases: &[Case]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in cases {
        let before = show(lab);
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let o = lab.pg(&args);
        let err = stderr(&o);
        let after = show(lab);
        let what = format!("portguard {}", args.join(" "));
        if o.status.success() {
            problems.push(format!("{what}: exited 0 (stdout {:?})", stdout(&o)));
        }
        if o.status.code().is_none() {
            problems.push(format!("{what}: killed by a signal ({})", o.status));
        }
        if !one_line_error(&o) {
            problems.push(format!("{what}: stderr is not one line: {err:?}"));
        }
        let low = err.to_lowercase();
        for m in &c.mentions {
            if !low.contains(&m.to_lowercase()) {
                problems.push(format!("{what}: error does not mention {m:?}: {err:?}"));
            }
        }
        if before != after {
            problems.push(format!(
                "{what}: show --json changed\nbefore: {before}\nafter: {after}"
            ));
        }
    }
    problems
}

fn report(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A lab whose vm1 is attached and bound (the state that must survive bad
/// input), with an L3 `tun0` in the host netns.
fn lab_with_state() -> Lab {
    let lab = Lab::new(2);
    let vm = lab.vm(1);
    lab.pg_ok(&["attach", "vm1"]);
    lab.pg_ok(&[
        "bind",
        "vm1",
        "--mac",
        &f::mac_str(&vm.mac()),
        "--ip",
        "192.0.2.1",
        "--ip",
        "2001:db8::1",
        "--tenant",
        "acme",
    ]);
    let o = lab.host_ip(&["tuntap", "add", "mode", "tun", "dev", "tun0"]);
    assert!(o.status.success(), "creating tun0: {}", stderr(&o));
    lab.host_ip(&["link", "set", "tun0", "up"]);
    lab
}

const MAC1: &str = "02:00:00:00:00:01";
const MAC2: &str = "02:00:00:00:00:02";

#[test]
fn malformed_macs() {
    let lab = lab_with_state();
    report(check(
        &lab,
        &[
            case(
                &["bind", "vm1", "--mac", "02:00:00:00:00"],
                &["02:00:00:00:00"],
            ),
            case(
                &["bind", "vm1", "--mac", "02:00:00:00:00:01:02"],
                &["02:00:00:00:00:01:02"],
            ),
            case(
                &["bind", "vm1", "--mac", "zz:00:00:00:00:01"],
                &["zz:00:00:00:00:01"],
            ),
            case(
                &["bind", "vm1", "--mac", "0200.0000.0001"],
                &["0200.0000.0001"],
            ),
            case(
                &["bind", "vm1", "--mac", "02:00:00:00:00:100"],
                &["02:00:00:00:00:100"],
            ),
            case(&["bind", "vm1", "--mac", ""], &["mac"]),
            case(
                &["bind", "vm1", "--mac", "01:00:5e:00:00:01"],
                &["01:00:5e:00:00:01", "multicast"],
            ),
            case(
                &["bind", "vm1", "--mac", "ff:ff:ff:ff:ff:ff"],
                &["ff:ff:ff:ff:ff:ff"],
            ),
            case(
                &["bind", "vm1", "--mac", "00:00:00:00:00:00"],
                &["00:00:00:00:00:00", "zero"],
            ),
            // a new port with a bad MAC must not appear either
            case(&["bind", "vm2", "--mac", "nonsense"], &["nonsense"]),
        ],
    ));
}

#[test]
fn malformed_addresses_and_prefixes() {
    let lab = lab_with_state();
    let b = |ip: &'static str, mentions: &[&'static str]| {
        case(&["bind", "vm1", "--mac", MAC1, "--ip", ip], mentions)
    };
    report(check(
        &lab,
        &[
            b("192.0.2.300", &["192.0.2.300"]),
            b("192.0.2", &["192.0.2"]),
            b("192.0.2.1.5", &["192.0.2.1.5"]),
            b("not-an-ip", &["not-an-ip"]),
            b("2001:db8::g", &["2001:db8::g"]),
            b("2001:db8:::1", &["2001:db8:::1"]),
            b("192.0.2.1/33", &["192.0.2.1/33", "prefix length"]),
            b("192.0.2.0/-1", &["192.0.2.0/-1"]),
            b("192.0.2.0/", &["192.0.2.0/"]),
            b("2001:db8::/129", &["2001:db8::/129", "prefix length"]),
            // host bits set
            b(
                "192.0.2.1/24",
                &["192.0.2.1/24", "host bits", "192.0.2.0/24"],
            ),
            b(
                "198.51.100.17/28",
                &["198.51.100.17/28", "host bits", "198.51.100.16/28"],
            ),
            b(
                "2001:db8::1/64",
                &["2001:db8::1/64", "host bits", "2001:db8::/64"],
            ),
            // listed twice
            case(
                &[
                    "bind",
                    "vm1",
                    "--mac",
                    MAC1,
                    "--ip",
                    "192.0.2.1",
                    "--ip",
                    "192.0.2.1",
                ],
                &["192.0.2.1", "twice"],
            ),
            // one good, one bad: nothing applied
            case(
                &[
                    "bind",
                    "vm1",
                    "--mac",
                    MAC1,
                    "--ip",
                    "203.0.113.5",
                    "--ip",
                    "203.0.113.500",
                ],
                &["203.0.113.500"],
            ),
            case(
                &[
                    "bind",
                    "vm2",
                    "--mac",
                    MAC2,
                    "--ip",
                    "192.0.2.2",
                    "--ip",
                    "198.51.100.128/24",
                ],
                &["198.51.100.128/24", "host bits", "198.51.100.0/24"],
            ),
        ],
    ));
}

#[test]
fn unknown_and_non_ethernet_interfaces() {
    let lab = lab_with_state();
    report(check(
        &lab,
        &[
            case(&["bind", "nosuchif0", "--mac", MAC1], &["nosuchif0"]),
            case(&["attach", "nosuchif0"], &["nosuchif0"]),
            case(
                &["attach", "nosuchif0", "--mode", "generic"],
                &["nosuchif0"],
            ),
            case(&["detach", "nosuchif0"], &["nosuchif0"]),
            case(&["unbind", "nosuchif0"], &["nosuchif0"]),
            case(&["show", "nosuchif0", "--json"], &["nosuchif0"]),
            case(&["stats", "nosuchif0", "--json"], &["nosuchif0"]),
            case(
                &["bind", "a-very-long-interface-name", "--mac", MAC1],
                &["a-very-long-interface-name"],
            ),
            case(
                &["bind", "tun0", "--mac", MAC1, "--ip", "192.0.2.9"],
                &["tun0", "ethernet"],
            ),
            case(&["attach", "tun0"], &["tun0", "ethernet"]),
            case(
                &["attach", "tun0", "--mode", "generic"],
                &["tun0", "ethernet"],
            ),
            // loopback is not an Ethernet device either
            case(&["bind", "lo", "--mac", MAC1], &["lo", "ethernet"]),
            // vm2 exists but is neither attached nor bound
            case(&["detach", "vm2"], &["vm2", "not attached"]),
            case(&["unbind", "vm2"], &["vm2", "not bound"]),
        ],
    ));
}

/// Bad values that portguard's own validation catches.
#[test]
fn bad_option_values() {
    let lab = lab_with_state();
    let b = |extra: &[&'static str], mentions: &[&'static str]| {
        let mut args = vec!["bind", "vm1", "--mac", MAC1, "--ip", "192.0.2.1"];
        args.extend_from_slice(extra);
        case(&args, mentions)
    };
    let long_tenant: &'static str = Box::leak("t".repeat(40).into_boxed_str());
    let mut nine = Vec::new();
    for i in 0..9 {
        nine.push("--allow-ethertype");
        nine.push(Box::leak(format!("0x88{:02x}", 0xb5 + i).into_boxed_str()) as &str);
    }
    report(check(
        &lab,
        &[
            b(&["--tenant", long_tenant], &[long_tenant]),
            b(&["--tenant", "bad\x07name"], &["control"]),
            b(&["--allow-ethertype", "0x0800"], &["0x0800"]),
            b(&["--allow-ethertype", "0x86dd"], &["0x86dd"]),
            b(&["--allow-ethertype", "0x8100"], &["0x8100"]),
            b(&["--allow-ethertype", "0x0012"], &["0x0012"]),
            b(&["--allow-ethertype", "0x10000"], &["0x10000"]),
            b(&["--allow-ethertype", "lldp"], &["lldp"]),
            b(&nine, &["8"]),
            b(&["--allow-vlan", "4095"], &["4095"]),
            b(&["--allow-vlan", "abc"], &["abc"]),
            case(&["stats", "--json", "--watch", "0"], &["watch"]),
        ],
    ));
}

/// Argument-syntax errors (rejected while parsing the command line): the
/// same contract, one line on stderr.
#[test]
fn argument_syntax_errors_are_one_line() {
    let lab = lab_with_state();
    let b = |extra: &[&'static str], mentions: &[&'static str]| {
        let mut args = vec!["bind", "vm1", "--mac", MAC1, "--ip", "192.0.2.1"];
        args.extend_from_slice(extra);
        case(&args, mentions)
    };
    report(check(
        &lab,
        &[
            b(&["--mode", "bogus"], &["bogus"]),
            b(&["--allow-vlan", "-1"], &["-1"]),
            b(&["--broadcast-pps", "abc"], &["abc"]),
            b(&["--arp-burst", "-5"], &["-5"]),
            b(&["--multicast-pps", "99999999999"], &["99999999999"]),
            case(&["bind", "vm1", "--ip", "192.0.2.1"], &["--mac"]),
            case(&["attach", "vm2", "--mode", "turbo"], &["turbo"]),
            case(&["frobnicate", "vm1"], &["frobnicate"]),
            case(
                &["--max-ports", "1", "attach", "vm2"],
                &["--max-ports", "1"],
            ),
            case(&["--max-ports", "65537", "attach", "vm2"], &["65537"]),
        ],
    ));
}

/// Bad input against a pin dir that has never been used: still an error,
/// and it leaves no state behind.
#[test]
fn errors_on_fresh_pin_dir_leave_nothing() {
    let lab = Lab::new(1);
    report(check(
        &lab,
        &[
            case(
                &["bind", "vm1", "--mac", "02:00:00:00:00"],
                &["02:00:00:00:00"],
            ),
            case(
                &["bind", "vm1", "--mac", MAC1, "--ip", "192.0.2.1/24"],
                &["host bits"],
            ),
            case(&["bind", "nosuchif0", "--mac", MAC1], &["nosuchif0"]),
            case(&["detach", "vm1"], &["vm1"]),
            case(&["unbind", "vm1"], &["vm1"]),
        ],
    ));
    assert_eq!(show(&lab), serde_json::json!([]));
    let o = lab.pg(&["stats", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cli::json(&o), serde_json::json!([]));
}

/// A pin dir created for one port (`--max-ports 2`: slot 0 is reserved)
/// refuses a second one, attach or bind, saying why and what to do, and
/// changes nothing; existing maps keep their capacity when asked for another.
#[test]
fn a_full_pin_dir_refuses_the_next_port() {
    let lab = Lab::new(2);
    lab.pg_ok(&["--max-ports", "2", "attach", "vm1"]);
    let entries = || portguard_tests::netns::map_max_entries(&lab.pin_dir, "STATS");
    assert_eq!(entries(), 2);
    let vm2 = f::mac_str(&lab.vm(2).mac());
    report(check(
        &lab,
        &[
            case(&["attach", "vm2"], &["all 1 port slots", "--max-ports 2"]),
            case(
                &["bind", "vm2", "--mac", &vm2, "--ip", "192.0.2.2"],
                &["all 1 port slots"],
            ),
        ],
    ));
    // Asking existing maps for another capacity: a warning, then the same error.
    let before = show(&lab);
    let o = lab.pg(&["--max-ports", "64", "attach", "vm2"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("warning") && lines[0].contains("created for 2 port slots"),
        "{err}"
    );
    assert!(lines[1].contains("all 1 port slots"), "{err}");
    assert_eq!(show(&lab), before);
    assert_eq!(entries(), 2, "existing maps are never resized");
    let m = stdout(&lab.pg_ok(&["metrics", "--once"]));
    for want in ["portguard_port_slots 1", "portguard_port_slots_used 1"] {
        assert!(m.lines().any(|l| l == want), "no {want:?} in\n{m}");
    }
    lab.pg_ok(&["detach", "vm1"]);
    lab.pg_ok(&["--max-ports", "64", "attach", "vm2"]);
    assert_eq!(
        entries(),
        64,
        "the last detach removed the maps; new ones take 64"
    );
}

/// The good path for comparison: the state the error tests protect is what
/// `show --json` reports.
#[test]
fn show_json_reports_the_binding() {
    let lab = lab_with_state();
    let v = show(&lab);
    let e = cli::entry(&v, "vm1").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(e["mac"], Value::String(MAC1.into()), "{e}");
    assert_eq!(e["tenant"], Value::String("acme".into()), "{e}");
    assert_eq!(e["attached"], Value::Bool(true), "{e}");
    assert_eq!(e["mode"], Value::String("enforce".into()), "{e}");
    let ips: Vec<&str> = e["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ips, vec!["192.0.2.1", "2001:db8::1"], "{e}");
    assert_eq!(
        e["ifindex"].as_u64(),
        Some(lab.vm(1).host_ifindex as u64),
        "{e}"
    );
}
