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
mod gen_docs;
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

    /// Port slots of a pin dir whose maps are created by this command (one
    /// is reserved: the default 4096 holds 4,095 ports). Fixed at creation;
    /// existing maps keep theirs (a different value is warned about). Each
    /// slot costs 544 bytes of counters per possible CPU.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "PORTGUARD_MAX_PORTS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(2..=filter_common::MAX_PORTS_LIMIT as i64)
    )]
    pub max_ports: Option<u32>,

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
    /// Write shell completions and man pages (`cargo xtask docs` runs it).
    #[command(hide = true)]
    GenDocs(gen_docs::Args),
}

/// What every subcommand gets besides its own arguments.
pub struct Ctx {
    pub pin_dir: PathBuf,
    pub audit_log: PathBuf,
    /// Capacity of maps created now (`--max-ports`).
    pub max_ports: Option<u32>,
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
            eprintln!("portguard: error: {}", usage_error(&e));
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
        max_ports: cli.max_ports,
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
        Command::GenDocs(a) => gen_docs::run(a),
    }
}

/// A command-line error as one line, like every other error: built from
/// what clap knows about it (kind, argument, value), without usage or tips.
fn usage_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind as K, ContextValue as V, ErrorKind};
    let get = |k: K| -> Option<String> {
        Some(match e.get(k)? {
            V::String(s) => s.clone(),
            V::Strings(v) => v.join(", "),
            V::StyledStr(s) => s.to_string(),
            V::StyledStrs(v) => v
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            V::Number(n) => n.to_string(),
            V::Bool(b) => b.to_string(),
            _ => return None,
        })
    };
    let arg = get(K::InvalidArg).unwrap_or_default();
    let value = get(K::InvalidValue).unwrap_or_default();
    let mut line = match e.kind() {
        ErrorKind::InvalidValue => match get(K::ValidValue) {
            Some(valid) => {
                format!("invalid value '{value}' for '{arg}' [possible values: {valid}]")
            }
            None => format!("invalid value '{value}' for '{arg}'"),
        },
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(e).map(|s| format!(": {s}"));
            format!(
                "invalid value '{value}' for '{arg}'{}",
                why.unwrap_or_default()
            )
        }
        ErrorKind::UnknownArgument => format!("unexpected argument '{arg}'"),
        ErrorKind::InvalidSubcommand => format!(
            "unrecognized subcommand '{}'",
            get(K::InvalidSubcommand).unwrap_or_default()
        ),
        ErrorKind::MissingRequiredArgument => {
            format!("the following required arguments were not provided: {arg}")
        }
        ErrorKind::MissingSubcommand => "a subcommand is required (see --help)".to_string(),
        ErrorKind::ArgumentConflict => match get(K::PriorArg) {
            Some(prior) if prior == arg => {
                format!("the argument '{arg}' cannot be used multiple times")
            }
            Some(prior) => format!("the argument '{arg}' cannot be used with '{prior}'"),
            None => format!("the argument '{arg}' cannot be used here"),
        },
        ErrorKind::NoEquals => format!("'{arg}' needs its value after an equals sign"),
        ErrorKind::TooManyValues => format!("unexpected value '{value}' for '{arg}'"),
        ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            format!("wrong number of values for '{arg}'")
        }
        other => other.as_str().unwrap_or("invalid command line").to_string(),
    };
    if let Some(s) = get(K::SuggestedArg).or_else(|| get(K::SuggestedSubcommand)) {
        line.push_str(&format!(" (did you mean '{s}'?)"));
    }
    line
}

/// BPF maps and links need root (CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN for pinning).
pub fn require_root() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("portguard needs root (CAP_BPF, CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(args: &[&str]) -> String {
        let e = Cli::try_parse_from(std::iter::once("portguard").chain(args.iter().copied()))
            .err()
            .expect("rejected");
        usage_error(&e)
    }

    #[test]
    fn usage_errors_are_one_line_and_name_the_problem() {
        let bind = ["bind", "vm1", "--mac", "02:00:00:00:00:01"];
        let with = |extra: &[&'static str]| [&bind[..], extra].concat();
        for (args, want) in [
            (
                with(&["--mode", "bogus"]),
                "invalid value 'bogus' for '--mode <MODE>' [possible values: enforce, monitor]",
            ),
            (
                with(&["--arp-pps", "abc"]),
                "invalid value 'abc' for '--arp-pps <ARP_PPS>': invalid digit found in string",
            ),
            (
                with(&["--tenat", "x"]),
                "unexpected argument '--tenat' (did you mean '--tenant'?)",
            ),
            (
                with(&["--mac", "02:00:00:00:00:02"]),
                "the argument '--mac <MAC>' cannot be used multiple times",
            ),
            (
                vec!["bind", "vm1"],
                "the following required arguments were not provided: --mac <MAC>",
            ),
            (
                vec!["shw"],
                "unrecognized subcommand 'shw' (did you mean 'show'?)",
            ),
        ] {
            let e = err(&args);
            assert_eq!(e, want, "{args:?}");
            assert!(!e.contains('\n'));
        }
    }
}
