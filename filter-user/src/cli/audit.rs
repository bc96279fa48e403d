//! `portguard audit`: read the audit log of changes.
use anyhow::Result;
use portguard::audit::{self, Filter};

#[derive(clap::Args)]
pub struct Args {
    /// Only entries at or after this time: RFC 3339 (2024-05-01T12:00:00Z) or a duration back from now (30m, 1h, 2d).
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
    /// Only entries about this interface.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// Print the entries as stored: one JSON object per line.
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let since = match &a.since {
        Some(s) => Some(audit::parse_since(s, chrono::Utc::now())?),
        None => None,
    };
    let filter = Filter {
        since,
        iface: a.iface.clone(),
    };
    let (entries, bad) = audit::read(&ctx.audit_log, &filter)?;
    if bad > 0 {
        eprintln!(
            "portguard: warning: {} skipped {bad} line(s) that are not JSON objects",
            ctx.audit_log.display()
        );
    }
    let mut out = String::new();
    for e in &entries {
        if a.json {
            out.push_str(&serde_json::to_string(e)?);
        } else {
            out.push_str(&audit::human(e));
        }
        out.push('\n');
    }
    use std::io::Write;
    match std::io::stdout().write_all(out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
