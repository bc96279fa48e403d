//! `portguard metrics`: serve the counters as Prometheus text at /metrics.
use std::net::SocketAddr;

use anyhow::{Context, Result};
use portguard::metrics;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (HTTP, path /metrics).
    #[arg(long, default_value = metrics::DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Print the exposition once to stdout and exit instead of serving.
    #[arg(long)]
    pub once: bool,
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    super::require_root()?;
    let pin_dir = ctx.pin_dir.clone();
    if a.once {
        let body = metrics::Scraper::new(&pin_dir).render()?;
        print!("{body}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        eprintln!(
            "portguard: serving metrics for {} on http://{}/metrics",
            pin_dir.display(),
            listener.local_addr().unwrap_or(a.listen)
        );
        metrics::serve_on(listener, pin_dir, shutdown_signal()).await
    })
}
