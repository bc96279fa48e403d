//! Command-line interface: one file per subcommand.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

mod apply;
mod attach;
mod audit;
mod bind;
mod daemon;
mod detach;
mod events;
mod metrics;
mod show;
mod stats;
mod unbind;

#[derive(Parser)]
#[command(
    name = "portguard",
    version,
    about = "Per-VM-port anti-spoofing and L2 hygiene in XDP",
    long_about = None
)]
pub struct Cli {
    /// Where program, maps and links are pinned (one pin dir per network namespace).
    #[arg(long, global = true, env = "PORTGUARD_PIN_DIR", default_value = portguard::pinned::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Attach the filter to a VM's host-side interface (fail-closed until bound).
    Attach(attach::Args),
    /// Detach the filter from an interface.
    Detach(detach::Args),
    /// Set a port's binding (replaces the previous one atomically).
    Bind(bind::Args),
    /// Remove a port's binding (an attached port then drops everything).
    Unbind(unbind::Args),
    /// Show bindings and attachments.
    Show(show::Args),
    /// Show counters per port and reason.
    Stats(stats::Args),
    /// Read sampled drop events (human, JSON lines or pcap).
    Events(events::Args),
    /// Serve Prometheus metrics.
    Metrics(metrics::Args),
    /// Read the audit log of changes.
    Audit(audit::Args),
    /// Make the kernel state equal a declarative state file.
    Apply(apply::Args),
    /// Run as a daemon: apply a config, re-apply on change/SIGHUP, serve metrics, log events.
    Daemon(daemon::Args),
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Attach(a) => attach::run(&cli.pin_dir, a),
        Command::Detach(a) => detach::run(&cli.pin_dir, a),
        Command::Bind(a) => bind::run(&cli.pin_dir, a),
        Command::Unbind(a) => unbind::run(&cli.pin_dir, a),
        Command::Show(a) => show::run(&cli.pin_dir, a),
        Command::Stats(a) => stats::run(&cli.pin_dir, a),
        Command::Events(a) => events::run(&cli.pin_dir, a),
        Command::Metrics(a) => metrics::run(&cli.pin_dir, a),
        Command::Audit(a) => audit::run(&cli.pin_dir, a),
        Command::Apply(a) => apply::run(&cli.pin_dir, a),
        Command::Daemon(a) => daemon::run(&cli.pin_dir, a),
    }
}

/// BPF maps and links need root (CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN for pinning).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("portguard needs root (CAP_BPF, CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}
