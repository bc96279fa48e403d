//! `portguard daemon --config FILE`: apply a state file and keep applying it
//! (SIGHUP, file changes), serve metrics, log drop events. See `portguard::daemon`.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{bail, Result};
use portguard::daemon::{self, Options};

#[derive(clap::Args)]
pub struct Args {
    /// State file to apply (TOML or JSON, as for `apply -f`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9469.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Write drop events as JSON lines to this file (rotated by size).
    #[arg(long, value_name = "FILE")]
    pub events_log: Option<PathBuf>,
    /// Rotate the events log when it would grow past this many bytes.
    #[arg(long, value_name = "N", default_value_t = 64 * 1024 * 1024)]
    pub events_log_max_bytes: u64,
    /// Rotated events logs kept (FILE.1 ... FILE.N).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub events_log_keep: usize,
    /// Also unbind and detach ports that are not in the file.
    #[arg(long)]
    pub prune: bool,
    /// Seconds between checks of the file's modification time.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub poll_interval: f64,
    /// Seconds between full resyncs (every link re-read), a safety net
    /// besides the link events.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub resync_interval: f64,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    if !(a.poll_interval > 0.0 && a.poll_interval.is_finite()) {
        bail!(
            "--poll-interval needs a positive number of seconds, got {}",
            a.poll_interval
        );
    }
    if !(a.resync_interval > 0.0 && a.resync_interval.is_finite()) {
        bail!(
            "--resync-interval needs a positive number of seconds, got {}",
            a.resync_interval
        );
    }
    if a.events_log_max_bytes == 0 {
        bail!("--events-log-max-bytes must be at least 1");
    }
    // A bad file is refused before anything starts.
    portguard::state::load(&a.config)?;
    super::require_root()?;
    daemon::run(Options {
        config: a.config,
        pin_dir: ctx.pin_dir.clone(),
        audit_log: ctx.audit_log.clone(),
        max_ports: ctx.max_ports,
        metrics: a.metrics,
        events_log: a.events_log,
        events_log_max_bytes: a.events_log_max_bytes,
        events_log_keep: a.events_log_keep,
        prune: a.prune,
        poll: Duration::from_secs_f64(a.poll_interval),
        resync: Duration::from_secs_f64(a.resync_interval),
    })
}
