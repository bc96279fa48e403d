use std::{
    collections::{BTreeMap, HashMap},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use filter_common::{Counter, PortStats, Reason};
use portguard::{
    pinned::{add_stats, Pinned, PortInfo},
    report,
};
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// One row per port (default).
    Iface,
    /// One row per tenant label, summing its ports.
    Tenant,
}

#[derive(clap::Args)]
pub struct Args {
    /// Only this interface (default: every bound or attached port).
    pub iface: Option<String>,
    /// One JSON array of counter objects (one line per refresh with --watch).
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Refresh every SECS seconds, showing per-second rates.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
    /// Only the ports of this tenant ("" = ports without a tenant label).
    #[arg(long, value_name = "T")]
    pub tenant: Option<String>,
    /// Aggregate rows per tenant (JSON objects carry "tenant" instead of "iface").
    #[arg(long, value_enum, default_value = "iface")]
    pub by: By,
}

fn total_dropped(s: &PortStats) -> (u64, u64) {
    s.dropped
        .iter()
        .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))
}

fn top_reasons(s: &PortStats) -> String {
    let mut parts = Vec::new();
    for r in Reason::DROPS {
        let c = s.dropped[r as usize];
        if c.packets > 0 {
            parts.push(format!("{}={}", r.name(), c.packets));
        }
        let w = s.would_drop[r as usize];
        if w.packets > 0 {
            parts.push(format!("would:{}={}", r.name(), w.packets));
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn by_reason(c: &[Counter]) -> Value {
    let mut m = Map::new();
    for r in Reason::DROPS {
        let x = c[r as usize];
        m.insert(r.name().to_string(), report::counter(x.packets, x.bytes));
    }
    Value::Object(m)
}

/// One output row: a port or a tenant aggregate.
struct Row {
    /// Identity across `--watch` samples.
    key: String,
    /// Leading table cells (IFACE TENANT MODE, or TENANT PORTS).
    labels: Vec<String>,
    /// Leading cells of the `--watch` table (IFACE TENANT, or TENANT PORTS).
    watch_labels: Vec<String>,
    json: Value,
    s: PortStats,
}

fn port_row(i: &PortInfo, s: &PortStats) -> Row {
    Row {
        key: format!("if{}", i.ifindex),
        labels: vec![
            i.ifname.clone(),
            dash(&i.tenant),
            report::status_name(i).to_string(),
        ],
        watch_labels: vec![i.ifname.clone(), dash(&i.tenant)],
        json: report::stats_json(i, s),
        s: *s,
    }
}

fn tenant_rows(ports: &[(PortInfo, PortStats)]) -> Vec<Row> {
    let mut by: BTreeMap<&str, (Vec<&str>, PortStats)> = BTreeMap::new();
    for (i, s) in ports {
        let e = by
            .entry(i.tenant.as_str())
            .or_insert_with(|| (Vec::new(), PortStats::ZERO));
        e.0.push(i.ifname.as_str());
        add_stats(&mut e.1, s);
    }
    by.into_iter()
        .map(|(t, (ifaces, s))| Row {
            key: format!("t{t}"),
            labels: vec![dash(t), ifaces.len().to_string()],
            watch_labels: vec![dash(t), ifaces.len().to_string()],
            json: json!({
                "tenant": t,
                "ports": ifaces.len(),
                "ifaces": ifaces,
                "passed": report::counter(s.passed.packets, s.passed.bytes),
                "dropped": by_reason(&s.dropped),
                "would_drop": by_reason(&s.would_drop),
                "events_sampled_out": s.sampled_out,
                "events_lost": s.events_lost,
            }),
            s,
        })
        .collect()
}

fn label_header(by: By) -> Vec<&'static str> {
    match by {
        By::Iface => vec!["IFACE", "TENANT", "MODE"],
        By::Tenant => vec!["TENANT", "PORTS"],
    }
}

fn watch_label_header(by: By) -> Vec<&'static str> {
    match by {
        By::Iface => vec!["IFACE", "TENANT"],
        By::Tenant => vec!["TENANT", "PORTS"],
    }
}

fn print_table(by: By, rows: &[Row]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = &r.s;
            let (dp, db) = total_dropped(s);
            let mut c = r.labels.clone();
            c.extend([
                s.passed.packets.to_string(),
                s.passed.bytes.to_string(),
                dp.to_string(),
                db.to_string(),
                top_reasons(s),
            ]);
            c
        })
        .collect();
    let mut header = label_header(by);
    header.extend([
        "PASS_PKTS",
        "PASS_BYTES",
        "DROP_PKTS",
        "DROP_BYTES",
        "DROPS BY REASON",
    ]);
    print!("{}", report::table(&header, &cells));
}

/// Collects the rows the flags select.
fn collect(p: &Pinned, a: &Args) -> Result<Vec<Row>> {
    let mut ports = report::collect(p, a.iface.as_deref())?;
    if let Some(t) = &a.tenant {
        ports.retain(|(i, _)| &i.tenant == t);
    }
    Ok(match a.by {
        By::Iface => ports.iter().map(|(i, s)| port_row(i, s)).collect(),
        By::Tenant => tenant_rows(&ports),
    })
}

/// The error for a selection that matches no port.
fn nothing_selected(a: &Args) -> Option<String> {
    match (&a.iface, &a.tenant) {
        (Some(f), Some(t)) => Some(format!("{f} is not a port of tenant {t:?}")),
        (Some(f), None) => Some(format!("{f} is neither bound nor attached")),
        (None, Some(t)) => Some(format!("no port has tenant {t:?}")),
        (None, None) => None,
    }
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    super::require_root()?;
    if let Some(w) = a.watch {
        if !(w > 0.0 && w.is_finite()) {
            bail!("--watch needs a positive number of seconds, got {w}");
        }
    }
    if !pin_dir.join("maps").exists() {
        if let Some(msg) = nothing_selected(&a) {
            bail!("{msg}");
        }
        if a.json {
            println!("[]");
        }
        return Ok(());
    }
    let p = Pinned::open(pin_dir)?;
    let rows = collect(&p, &a)?;
    if rows.is_empty() {
        if let Some(msg) = nothing_selected(&a) {
            bail!("{msg}");
        }
    }
    let Some(secs) = a.watch else {
        if a.json {
            let v: Vec<_> = rows.iter().map(|r| r.json.clone()).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_table(a.by, &rows);
        }
        return Ok(());
    };
    // Watch: per-second rates between samples, until interrupted.
    let mut prev: HashMap<String, PortStats> = rows.iter().map(|r| (r.key.clone(), r.s)).collect();
    let mut last = Instant::now();
    loop {
        thread::sleep(Duration::from_secs_f64(secs));
        let rows = collect(&p, &a)?;
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let rate = |now: u64, before: u64| (now.saturating_sub(before)) as f64 / dt;
        if a.json {
            let v: Vec<_> = rows
                .iter()
                .map(|r| {
                    let s = &r.s;
                    let mut j = r.json.clone();
                    let z = PortStats::ZERO;
                    let b = prev.get(&r.key).unwrap_or(&z);
                    let (dp, db) = total_dropped(s);
                    let (bp, bb) = total_dropped(b);
                    j["rate"] = json!({
                        "passed_pps": rate(s.passed.packets, b.passed.packets),
                        "passed_bps": rate(s.passed.bytes, b.passed.bytes),
                        "dropped_pps": rate(dp, bp),
                        "dropped_bps": rate(db, bb),
                    });
                    j
                })
                .collect();
            println!("{}", serde_json::to_string(&v)?);
        } else {
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let s = &r.s;
                    let z = PortStats::ZERO;
                    let b = prev.get(&r.key).unwrap_or(&z);
                    let (dp, _) = total_dropped(s);
                    let (bp, _) = total_dropped(b);
                    let mut delta = PortStats::ZERO;
                    for (k, d) in delta.dropped.iter_mut().enumerate() {
                        d.packets = s.dropped[k].packets.saturating_sub(b.dropped[k].packets);
                    }
                    let mut c = r.watch_labels.clone();
                    c.extend([
                        format!("{:.1}", rate(s.passed.packets, b.passed.packets)),
                        format!("{:.0}", rate(s.passed.bytes, b.passed.bytes) * 8.0),
                        format!("{:.1}", rate(dp, bp)),
                        s.passed.packets.to_string(),
                        dp.to_string(),
                        top_reasons(&delta),
                    ]);
                    c
                })
                .collect();
            let mut header = watch_label_header(a.by);
            header.extend([
                "PASS_PPS",
                "PASS_BPS",
                "DROP_PPS",
                "PASS_TOTAL",
                "DROP_TOTAL",
                "DROPS/INTERVAL",
            ]);
            println!("--- {} ---", chrono::Local::now().format("%H:%M:%S"));
            print!("{}", report::table(&header, &table_rows));
        }
        prev = rows.iter().map(|r| (r.key.clone(), r.s)).collect();
    }
}
