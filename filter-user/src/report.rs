//! Machine-readable views of the pinned state: the JSON contract of
//! `show --json` and `stats --json`, reused by metrics and the daemon.
use anyhow::Result;
use filter_common::{PortStats, Reason};
use serde_json::{json, Map, Value};

use crate::{
    attach_mode::AttachReason,
    binding::attach_mode_name,
    pinned::{Pinned, PortInfo},
    spec::PortSpec,
};

pub fn counter(packets: u64, bytes: u64) -> Value {
    json!({ "packets": packets, "bytes": bytes })
}

fn by_reason(c: &[filter_common::Counter]) -> Value {
    let mut m = Map::new();
    for r in Reason::DROPS {
        let x = c[r as usize];
        m.insert(r.name().to_string(), counter(x.packets, x.bytes));
    }
    Value::Object(m)
}

pub fn mode_name(info: &PortInfo) -> &'static str {
    match &info.binding {
        Some(b) => match b.mode {
            crate::binding::Mode::Enforce => "enforce",
            crate::binding::Mode::Monitor => "monitor",
        },
        None => "unbound",
    }
}

/// The record's interface no longer exists (deleted, or moved to another
/// namespace): whatever the record says, nothing is attached there. Such a
/// record is listed once, as stale, until something removes it (the daemon
/// at once; `attach`/`apply` of that name).
pub fn is_stale(info: &PortInfo) -> bool {
    crate::iface::name(info.ifindex).is_none()
}

/// The attach mode to report: none for a stale record.
pub fn live_attach_mode(info: &PortInfo) -> Option<&'static str> {
    if is_stale(info) {
        return None;
    }
    attach_mode_name(info.attach_mode)
}

/// One word for the port's situation: `stale`, `guarded-unbound`, or the mode.
pub fn status_name(info: &PortInfo) -> &'static str {
    status_word(info, is_stale(info))
}

/// [`status_name`] with staleness already known.
fn status_word(info: &PortInfo, stale: bool) -> &'static str {
    if stale {
        "stale"
    } else if info.guarded {
        "guarded-unbound"
    } else {
        mode_name(info)
    }
}

pub fn stats_json(info: &PortInfo, s: &PortStats) -> Value {
    json!({
        "iface": info.ifname,
        "ifindex": info.ifindex,
        "tenant": info.tenant,
        "stale": is_stale(info),
        "mode": mode_name(info),
        "passed": counter(s.passed.packets, s.passed.bytes),
        "dropped": by_reason(&s.dropped),
        "would_drop": by_reason(&s.would_drop),
        "events_sampled_out": s.sampled_out,
        "events_lost": s.events_lost,
    })
}

/// A port record as `show --json` (and the audit log) shows it: the bound
/// port's [`PortSpec`] plus where it stands in the kernel.
pub fn show_json(info: &PortInfo) -> Value {
    // Asked once (an interface lookup is a socket and an ioctl): a sync of
    // thousands of ports renders as many records for the audit log.
    let stale = is_stale(info);
    let attached = if stale {
        None
    } else {
        attach_mode_name(info.attach_mode)
    };
    let mut v = match &info.binding {
        Some(b) => PortSpec::from_binding(&info.ifname, b).to_json(),
        None => json!({ "iface": info.ifname, "mac": Value::Null, "ips": [] }),
    };
    v["ifindex"] = json!(info.ifindex);
    v["tenant"] = json!(info.tenant);
    v["bound"] = json!(info.binding.is_some());
    v["attached"] = json!(attached.is_some());
    v["attach_mode"] = json!(attached);
    v["stale"] = json!(stale);
    v["guarded"] = json!(info.guarded);
    v["status"] = json!(status_word(info, stale));
    v["mode"] = json!(mode_name(info));
    v["attach_reason"] = json!(attached.map(|_| AttachReason::from_u8(info.attach_reason).name()));
    v["attach_why"] = json!(attached.map(|_| AttachReason::from_u8(info.attach_reason).explain()));
    v
}

/// The port's record as `show --json` shows it (`None` if it has none).
pub fn port_json(p: &Pinned, ifindex: u32) -> Option<Value> {
    p.port(ifindex).ok().flatten().map(|i| show_json(&i))
}

/// [`port_json`] by interface name: the record whose name matches, else the
/// record of the kernel's interface of that name.
pub fn port_json_by_name(p: &Pinned, ifname: &str) -> Option<Value> {
    if let Ok(ports) = p.ports() {
        if let Some(i) = ports.iter().find(|i| i.ifname == ifname) {
            return Some(show_json(i));
        }
    }
    crate::iface::index(ifname)
        .ok()
        .and_then(|idx| port_json(p, idx))
}

/// All ports (optionally one interface) with their summed counters.
pub fn collect(p: &Pinned, iface: Option<&str>) -> Result<Vec<(PortInfo, PortStats)>> {
    let mut out = Vec::new();
    for info in p.ports()? {
        if let Some(i) = iface {
            if info.ifname != i {
                continue;
            }
        }
        let s = p.slot_counters(info.slot)?;
        out.push((info, s));
    }
    Ok(out)
}

/// Renders rows as an aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<width$}  ", c, width = w[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect(), &mut out);
    }
    out
}
