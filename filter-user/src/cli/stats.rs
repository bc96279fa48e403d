use std::{
    collections::HashMap,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use filter_common::{PortStats, Reason};
use portguard::{
    pinned::{Pinned, PortInfo},
    report,
};

#[derive(clap::Args)]
pub struct Args {
    pub iface: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds, showing per-second rates.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
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

fn print_table(rows: &[(PortInfo, PortStats)]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(i, s)| {
            let (dp, db) = total_dropped(s);
            vec![
                i.ifname.clone(),
                if i.tenant.is_empty() {
                    "-".into()
                } else {
                    i.tenant.clone()
                },
                report::mode_name(i).to_string(),
                s.passed.packets.to_string(),
                s.passed.bytes.to_string(),
                dp.to_string(),
                db.to_string(),
                top_reasons(s),
            ]
        })
        .collect();
    print!(
        "{}",
        report::table(
            &[
                "IFACE",
                "TENANT",
                "MODE",
                "PASS_PKTS",
                "PASS_BYTES",
                "DROP_PKTS",
                "DROP_BYTES",
                "DROPS BY REASON"
            ],
            &rows
        )
    );
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
        if let Some(f) = &a.iface {
            bail!("{f} is neither bound nor attached");
        }
        if a.json {
            println!("[]");
        }
        return Ok(());
    }
    let p = Pinned::open(pin_dir)?;
    let rows = report::collect(&p, a.iface.as_deref())?;
    if let Some(f) = &a.iface {
        if rows.is_empty() {
            bail!("{f} is neither bound nor attached");
        }
    }
    let Some(secs) = a.watch else {
        if a.json {
            let v: Vec<_> = rows.iter().map(|(i, s)| report::stats_json(i, s)).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_table(&rows);
        }
        return Ok(());
    };
    // Watch: per-second rates between samples, until interrupted.
    let mut prev: HashMap<u32, PortStats> = rows.iter().map(|(i, s)| (i.ifindex, *s)).collect();
    let mut last = Instant::now();
    loop {
        thread::sleep(Duration::from_secs_f64(secs));
        let rows = report::collect(&p, a.iface.as_deref())?;
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let rate = |now: u64, before: u64| (now.saturating_sub(before)) as f64 / dt;
        if a.json {
            let v: Vec<_> = rows
                .iter()
                .map(|(i, s)| {
                    let mut j = report::stats_json(i, s);
                    let z = PortStats::ZERO;
                    let b = prev.get(&i.ifindex).unwrap_or(&z);
                    let (dp, db) = total_dropped(s);
                    let (bp, bb) = total_dropped(b);
                    j["rate"] = serde_json::json!({
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
                .map(|(i, s)| {
                    let z = PortStats::ZERO;
                    let b = prev.get(&i.ifindex).unwrap_or(&z);
                    let (dp, _) = total_dropped(s);
                    let (bp, _) = total_dropped(b);
                    let mut delta = PortStats::ZERO;
                    for (k, d) in delta.dropped.iter_mut().enumerate() {
                        d.packets = s.dropped[k].packets.saturating_sub(b.dropped[k].packets);
                    }
                    vec![
                        i.ifname.clone(),
                        if i.tenant.is_empty() {
                            "-".into()
                        } else {
                            i.tenant.clone()
                        },
                        format!("{:.1}", rate(s.passed.packets, b.passed.packets)),
                        format!("{:.0}", rate(s.passed.bytes, b.passed.bytes) * 8.0),
                        format!("{:.1}", rate(dp, bp)),
                        s.passed.packets.to_string(),
                        dp.to_string(),
                        top_reasons(&delta),
                    ]
                })
                .collect();
            println!("--- {} ---", chrono::Local::now().format("%H:%M:%S"));
            print!(
                "{}",
                report::table(
                    &[
                        "IFACE",
                        "TENANT",
                        "PASS_PPS",
                        "PASS_BPS",
                        "DROP_PPS",
                        "PASS_TOTAL",
                        "DROP_TOTAL",
                        "DROPS/INTERVAL"
                    ],
                    &table_rows
                )
            );
        }
        prev = rows.iter().map(|(i, s)| (i.ifindex, *s)).collect();
    }
}
