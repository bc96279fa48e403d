//! Machine-readable views of the pinned state: the JSON contract of
//! `show --json` and `stats --json`, reused by metrics and the daemon.
use anyhow::Result;
use filter_common::{PortStats, Reason};
use serde_json::{json, Map, Value};

use crate::{
    attach_mode::AttachReason,
    binding::attach_mode_name,
    pinned::{Pinned, PortInfo},
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

pub fn stats_json(info: &PortInfo, s: &PortStats) -> Value {
    json!({
        "iface": info.ifname,
        "ifindex": info.ifindex,
        "tenant": info.tenant,
        "mode": mode_name(info),
        "passed": counter(s.passed.packets, s.passed.bytes),
        "dropped": by_reason(&s.dropped),
        "would_drop": by_reason(&s.would_drop),
        "events_sampled_out": s.sampled_out,
        "events_lost": s.events_lost,
    })
}

pub fn show_json(info: &PortInfo) -> Value {
    let attached = attach_mode_name(info.attach_mode);
    let mut v = json!({
        "iface": info.ifname,
        "ifindex": info.ifindex,
        "tenant": info.tenant,
        "bound": info.binding.is_some(),
        "attached": attached.is_some(),
        "attach_mode": attached,
        "attach_reason": attached.map(|_| AttachReason::from_u8(info.attach_reason).name()),
        "attach_why": attached.map(|_| AttachReason::from_u8(info.attach_reason).explain()),
        "mac": Value::Null,
        "ips": [],
        "mode": mode_name(info),
    });
    if let Some(b) = &info.binding {
        v["mac"] = json!(b.mac.to_string());
        v["ips"] = json!(b.ips.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        v["broadcast_pps"] = json!(b.broadcast.pps);
        v["broadcast_burst"] = json!(b.broadcast.burst);
        v["multicast_pps"] = json!(b.multicast.pps);
        v["multicast_burst"] = json!(b.multicast.burst);
        v["arp_pps"] = json!(b.arp.pps);
        v["arp_burst"] = json!(b.arp.burst);
        v["allow_dhcp_server"] = json!(b.allow_dhcp_server);
        v["allow_ethertype"] = json!(b
            .ethertypes
            .iter()
            .map(|e| format!("0x{e:04x}"))
            .collect::<Vec<_>>());
        v["allow_vlan"] = json!(b.vlans);
    }
    v
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
