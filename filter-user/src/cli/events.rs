//! `portguard events`: read sampled drop events from the pinned ring buffer.
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context, Result};
use filter_common::Reason;
use portguard::{
    clock::ClockOffset,
    events::{EventFilter, EventReader, PortNames},
    iface,
    pcap::{PcapWriter, Precision},
    pinned::Pinned,
};

#[derive(clap::Args)]
pub struct Args {
    /// Keep waiting for new events (until interrupted, or --count reached).
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line instead of text.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Also write each event's captured frame head to a pcap file (`-` = stdout, then nothing else is printed there).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Microsecond pcap timestamps (default: nanosecond pcap).
    #[arg(long, requires = "pcap")]
    pub pcap_micro: bool,
    /// Stop after N (matching) events; with --follow wait until there are N.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Only events of this interface.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// Only events with this reason, e.g. ipv4_spoof (repeatable).
    #[arg(long = "reason", value_name = "R")]
    pub reasons: Vec<String>,
}

/// SIGINT/SIGTERM end `--follow` cleanly (pcap flushed) by setting `stop`;
/// a second one exits at once (128 + signal, as a shell reports it).
fn stop_on_signals(stop: &Arc<AtomicBool>) -> Result<()> {
    use signal_hook::{
        consts::{SIGINT, SIGTERM},
        flag,
    };
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so that it sees `stop` set only by an earlier signal.
        flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(stop))
            .context("installing a signal handler")?;
        flag::register(sig, Arc::clone(stop)).context("installing a signal handler")?;
    }
    Ok(())
}

fn parse_reasons(names: &[String]) -> Result<Vec<Reason>> {
    let mut out = Vec::new();
    for n in names {
        for part in n.split(',').filter(|s| !s.is_empty()) {
            match Reason::from_name(part).filter(|r| *r != Reason::Pass) {
                Some(r) => out.push(r),
                None => {
                    let all: Vec<&str> = Reason::DROPS.iter().map(|r| r.name()).collect();
                    bail!(
                        "unknown reason {part:?}: expected one of {}",
                        all.join(", ")
                    );
                }
            }
        }
    }
    Ok(out)
}

/// A write error that just means the reader went away (`| head`).
fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    let reasons = parse_reasons(&a.reasons)?;
    if a.count == Some(0) {
        bail!("--count needs a positive number of events");
    }
    super::require_root()?;
    if !pin_dir.join("maps").exists() {
        bail!(
            "no portguard state in {} (nothing attached or bound yet)",
            pin_dir.display()
        );
    }
    let mut p = Pinned::open(pin_dir)?;
    let mut names = PortNames::new();
    names.refresh(&p)?;
    if let Some(i) = &a.iface {
        let known = p.ports()?.iter().any(|x| &x.ifname == i) || iface::index(i).is_ok();
        if !known {
            bail!(
                "unknown interface {i:?} (not a port in {})",
                pin_dir.display()
            );
        }
    }
    let filter = EventFilter {
        iface: a.iface.clone(),
        reasons,
    };
    let mut reader = EventReader::open(&mut p)?;

    let pcap_to_stdout = a.pcap.as_deref().is_some_and(|f| f.as_os_str() == "-");
    let precision = if a.pcap_micro {
        Precision::Micro
    } else {
        Precision::Nano
    };
    let mut pcap: Option<PcapWriter<Box<dyn Write>>> = match &a.pcap {
        None => None,
        Some(f) => {
            let out: Box<dyn Write> = if pcap_to_stdout {
                Box::new(BufWriter::new(io::stdout()))
            } else {
                let file = File::create(f)
                    .with_context(|| format!("cannot create pcap file {}", f.display()))?;
                Box::new(BufWriter::new(file))
            };
            let mut w = PcapWriter::new(out, precision).context("writing the pcap header")?;
            w.flush().context("writing the pcap header")?;
            Some(w)
        }
    };
    let mut text: Option<BufWriter<io::Stdout>> = if pcap_to_stdout {
        None
    } else {
        Some(BufWriter::new(io::stdout()))
    };
    let stop = Arc::new(AtomicBool::new(false));
    if a.follow {
        stop_on_signals(&stop)?;
    }

    let mut seen: u64 = 0;
    let mut decode_errors: u64 = 0;
    let mut out_err: Option<io::Error> = None;
    loop {
        let clock = ClockOffset::measure();
        let limit = a.count;
        reader.drain(|ev| {
            let ev = match ev {
                Ok(e) => e,
                Err(e) => {
                    decode_errors += 1;
                    if decode_errors <= 3 {
                        eprintln!("portguard: warning: skipping an event record: {e}");
                    }
                    return true;
                }
            };
            let port = names.get(&p, ev.ifindex);
            if !filter.matches(&ev, &port) {
                return true;
            }
            let r = (|| -> io::Result<()> {
                if let Some(t) = text.as_mut() {
                    if a.json {
                        serde_json::to_writer(&mut *t, &ev.to_json(&clock, &port))?;
                        t.write_all(b"\n")?;
                    } else {
                        writeln!(t, "{}", ev.human(&clock, &port))?;
                    }
                }
                if let Some(w) = pcap.as_mut() {
                    w.write(clock.wall_ns(ev.ts_ns), &ev.data, ev.orig_len())?;
                }
                Ok(())
            })();
            if let Err(e) = r {
                out_err = Some(e);
                return false;
            }
            seen += 1;
            limit.is_none_or(|n| seen < n)
        });
        // Flush every batch so followers (and a killed process) see whole records.
        let flushed = (|| -> io::Result<()> {
            if let Some(t) = text.as_mut() {
                t.flush()?;
            }
            if let Some(w) = pcap.as_mut() {
                w.flush()?;
            }
            Ok(())
        })();
        if let Err(e) = flushed {
            out_err.get_or_insert(e);
        }
        if let Some(e) = out_err.take() {
            if is_broken_pipe(&e) {
                return Ok(());
            }
            return Err(e).context("writing events");
        }
        if a.count.is_some_and(|n| seen >= n) || !a.follow || stop.load(Ordering::SeqCst) {
            break;
        }
        reader.wait(Duration::from_millis(500))?;
        if stop.load(Ordering::SeqCst) {
            // Take what is already there, then stop.
            continue;
        }
    }
    if decode_errors > 3 {
        eprintln!("portguard: warning: {decode_errors} event records skipped in total");
    }
    Ok(())
}
