//! Command-line interface: one file per subcommand.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

mod agent;
mod apply;
mod attach;
mod audit;
mod bind;
mod daemon;
mod detach;
mod events;
mod fleet;
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
    #[arg(long, global = true, help_heading = "Global options", env = "PORTGUARD_PIN_DIR", default_value = portguard::pinned::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

    /// Append-only JSON-lines log of every change (attach, detach, bind, unbind, apply).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "PORTGUARD_AUDIT_LOG",
        default_value = "/var/log/portguard/audit.jsonl"
    )]
    pub audit_log: PathBuf,

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
    /// Keep this host's ports equal to its bindings in etcd (docs/fleet.md).
    Agent(agent::Args),
    /// Put/delete/get bindings in etcd and show every agent's status.
    Fleet(fleet::Args),
}

/// What every subcommand gets besides its own arguments.
pub struct Ctx {
    pub pin_dir: PathBuf,
    pub audit_log: PathBuf,
}

pub fn run() -> Result<()> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line, like every other error: clap's message without usage and hints.
            let text = e.to_string();
            let body = text
                .split("\n\nUsage")
                .next()
                .unwrap_or("invalid arguments");
            let body = body.split("\n\n  tip:").next().unwrap_or(body);
            let body = body.split("For more information").next().unwrap_or(body);
            let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("portguard: error: {}", line.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    portguard::logging::init(match cli.command {
        Command::Daemon(_) => "portguard daemon",
        _ => "portguard",
    });
    let ctx = Ctx {
        pin_dir: cli.pin_dir,
        audit_log: cli.audit_log,
    };
    match cli.command {
        Command::Attach(a) => attach::run(&ctx, a),
        Command::Detach(a) => detach::run(&ctx, a),
        Command::Bind(a) => bind::run(&ctx, a),
        Command::Unbind(a) => unbind::run(&ctx, a),
        Command::Show(a) => show::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Events(a) => events::run(&ctx, a),
        Command::Metrics(a) => metrics::run(&ctx, a),
        Command::Audit(a) => audit::run(&ctx, a),
        Command::Apply(a) => apply::run(&ctx, a),
        Command::Daemon(a) => daemon::run(&ctx, a),
        Command::Agent(a) => agent::run(&ctx, a),
        Command::Fleet(a) => fleet::run(&ctx, a),
    }
}

/// BPF maps and links need root (CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN for pinning).
pub fn require_root() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("portguard needs root (CAP_BPF, CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}
