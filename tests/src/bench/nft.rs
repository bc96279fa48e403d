//! nftables rulesets enforcing the same bindings as portguard: a
//! concatenated set `iif . ether saddr . ip[6] saddr` and one rule dropping
//! every IP frame of the family whose triple is not in the set.
use std::{fmt::Write as _, io::Write as _, path::PathBuf};

use anyhow::{Context, Result};

use super::{
    progs::{Family, VM_MAC},
    sys,
};

pub const NETDEV_TABLE: &str = "pgbench_nd";
pub const BRIDGE_TABLE: &str = "pgbench_br";

fn mac() -> String {
    VM_MAC
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn types(f: Family) -> (&'static str, &'static str, &'static str) {
    match f {
        Family::V4 => ("ipv4_addr", "ip", "ip saddr"),
        Family::V6 => ("ipv6_addr", "ip6", "ip6 saddr"),
    }
}

/// One set element `"iface" . VM_MAC . addr` per address.
fn elements(out: &mut String, iface: &str, addrs: &[std::net::IpAddr]) {
    let m = mac();
    for a in addrs {
        let _ = writeln!(out, "\"{iface}\" . {m} . {a},");
    }
}

/// A netdev-family table with an ingress chain on `iface`.
pub fn netdev_ruleset(iface: &str, f: Family, addrs: &[std::net::IpAddr]) -> String {
    let hook = format!("ingress device \"{iface}\"");
    ruleset(
        &format!("netdev {NETDEV_TABLE}"),
        "ingress",
        &hook,
        iface,
        f,
        addrs,
    )
}

/// A bridge-family table filtering at prerouting (before learning and forwarding).
pub fn bridge_ruleset(iface: &str, f: Family, addrs: &[std::net::IpAddr]) -> String {
    ruleset(
        &format!("bridge {BRIDGE_TABLE}"),
        "pre",
        "prerouting",
        iface,
        f,
        addrs,
    )
}

/// `table <table>` with the set of bound (iface, MAC, address) and one chain
/// `<chain>` at `hook` dropping what is not in it.
fn ruleset(
    table: &str,
    chain: &str,
    hook: &str,
    iface: &str,
    f: Family,
    addrs: &[std::net::IpAddr],
) -> String {
    let (ty, et, sa) = types(f);
    let mut s = String::with_capacity(64 * addrs.len() + 1024);
    let _ = writeln!(s, "table {table} {{");
    let _ = writeln!(
        s,
        "  set bound {{\n    type iface_index . ether_addr . {ty}\n    size {}\n    elements = {{",
        addrs.len() + 16
    );
    elements(&mut s, iface, addrs);
    let _ = writeln!(s, "    }}\n  }}");
    let _ = writeln!(
        s,
        "  chain {chain} {{\n    type filter hook {hook} priority 0; policy accept;\n    \
         ether type {et} meta iif . ether saddr . {sa} != @bound counter drop\n  }}\n}}"
    );
    s
}

/// Writes `ruleset` to a temp file and loads it with `nft -f` in `ns`;
/// returns the wall time of the `nft -f` process in seconds.
pub fn load(ns: &str, tag: &str, ruleset: &str) -> Result<f64> {
    let path = PathBuf::from(format!(
        "/tmp/{}-{}-{tag}.nft",
        sys::PREFIX,
        std::process::id()
    ));
    {
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(ruleset.as_bytes())?;
    }
    let p = path.to_string_lossy().into_owned();
    let r = sys::timed(|| sys::must_in(ns, &["nft", "-f", &p]));
    let _ = std::fs::remove_file(&path);
    Ok(r?.1)
}

pub fn delete(ns: &str, family: &str, table: &str) {
    let _ = sys::must_in(ns, &["nft", "delete", "table", family, table]);
}

/// Packets counted by the (single) counter of `chain`.
pub fn counter(ns: &str, family: &str, table: &str, chain: &str) -> Result<u64> {
    let o = sys::must_in(ns, &["nft", "list", "chain", family, table, chain])?;
    let s = String::from_utf8_lossy(&o.stdout);
    let n = s
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(n)
}

/// A bridge-family table guarding `iface` for both families at once (Tier
/// D): sets of bound (iface, MAC, IPv4) and (iface, MAC, IPv6) and one rule
/// per family dropping IP frames from `iface` whose triple is not in its
/// set (frames from the bridge's other, unguarded ports are not judged).
pub fn bridge_ruleset_dual(
    iface: &str,
    v4: &[std::net::IpAddr],
    v6: &[std::net::IpAddr],
) -> String {
    let mut s = format!("table bridge {BRIDGE_TABLE} {{\n");
    for (f, addrs) in [(Family::V4, v4), (Family::V6, v6)] {
        let (ty, _, _) = types(f);
        let _ = writeln!(
            s,
            "  set bound_{} {{\n    type iface_index . ether_addr . {ty}\n    elements = {{",
            f.name()
        );
        elements(&mut s, iface, addrs);
        let _ = writeln!(s, "    }}\n  }}");
    }
    let _ = writeln!(
        s,
        "  chain pre {{\n    type filter hook prerouting priority 0; policy accept;"
    );
    for f in [Family::V4, Family::V6] {
        let (_, et, sa) = types(f);
        let _ = writeln!(
            s,
            "    meta iif \"{iface}\" ether type {et} meta iif . ether saddr . {sa} != @bound_{} counter drop",
            f.name()
        );
    }
    let _ = writeln!(s, "  }}\n}}");
    s
}

/// Packets counted by all the counters of `chain`, summed.
pub fn counter_total(ns: &str, family: &str, table: &str, chain: &str) -> Result<u64> {
    let o = sys::must_in(ns, &["nft", "list", "chain", family, table, chain])?;
    let s = String::from_utf8_lossy(&o.stdout);
    Ok(s.split("counter packets ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum())
}
