//! `portguard agent --host HV --endpoints URL...`: keep this host's pinned
//! state equal to its bindings in etcd. See `portguard::fleet::agent`.
use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};
use portguard::fleet::{
    agent::{self, AgentOptions},
    keys,
};
use tokio::signal::unix::{signal, SignalKind};

use super::fleet::EtcdArgs;

#[derive(clap::Args)]
pub struct Args {
    /// This host's name: its bindings are under /portguard/v1/hosts/<host>/ports/
    /// (with mTLS, also the CN of its client certificate).
    #[arg(long, env = "PORTGUARD_HOST")]
    pub host: String,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Keep the last synced state in this state file (fail-static: applied
    /// at start when the store is unreachable; `daemon --config` reads it).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// Seconds between full lists (drift check).
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub relist_interval: f64,
    /// Seconds between checks of ports waiting for their interface.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub recheck_interval: f64,
    /// TTL of the lease the agent's status key is on, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub lease_ttl: i64,
    /// Keys per page when listing.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub page_size: i64,
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v > 0.0 && v.is_finite()) {
        bail!("{name} needs a positive number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    keys::check_name("host", &a.host)?;
    let relist = secs("--relist-interval", a.relist_interval)?;
    let recheck = secs("--recheck-interval", a.recheck_interval)?;
    if a.lease_ttl < 2 {
        bail!("--lease-ttl must be at least 2 seconds");
    }
    if !(1..=10_000).contains(&a.page_size) {
        bail!("--page-size must be 1-10000");
    }
    let store = a.etcd.config()?;
    super::require_root()?;
    let mut o = AgentOptions::new(&a.host, store, ctx.pin_dir.clone(), ctx.audit_log.clone());
    o.max_ports = ctx.max_ports;
    o.snapshot = a.snapshot;
    o.relist_every = relist;
    o.recheck_every = recheck;
    o.lease_ttl = a.lease_ttl;
    o.page_size = a.page_size;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        agent::run(o, shutdown).await?;
        Ok(())
    })
}
