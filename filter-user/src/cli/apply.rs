//! `portguard apply -f FILE [--dry-run] [--prune] [--json]`: make the kernel
//! state equal a declarative state file (see `portguard::state`).
use std::path::PathBuf;

use anyhow::Result;
use portguard::{
    audit::{AuditBatch, AuditLog},
    pinned::Pinned,
    state::{self, Kind, Plan, PlanOptions},
};

#[derive(clap::Args)]
pub struct Args {
    /// State file: TOML, or JSON with the same structure (by extension or content).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Print the changes that would be made and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also unbind and detach ports that are not in the file.
    #[arg(long)]
    pub prune: bool,
    /// Skip ports whose interface does not exist instead of refusing the whole file.
    #[arg(long)]
    pub skip_missing: bool,
    /// Print the plan (and the result) as JSON.
    #[arg(short = 'j', long)]
    pub json: bool,
}

fn print_plan(plan: &Plan, all: bool) {
    for pp in &plan.ports {
        if all || pp.kind != Kind::Unchanged {
            println!("{}", pp.describe());
        }
    }
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    // The whole file is validated before anything else: a bad file changes nothing.
    let st = state::load(&a.file)?;
    super::require_root()?;
    let opts = PlanOptions {
        prune: a.prune,
        skip_missing: a.skip_missing,
    };

    if a.dry_run {
        // Never create state for a dry run.
        let plan = if pin_dir.join("maps").exists() {
            let p = Pinned::open(pin_dir)?;
            state::plan(&p, &st, opts)?
        } else {
            state::plan_against(&[], &pin_dir.join("links"), &st, opts)?
        };
        if a.json {
            let mut v = plan.to_json();
            v["dry_run"] = true.into();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_plan(&plan, true);
            println!("dry run: {}; nothing changed", plan.summary());
        }
        return Ok(());
    }

    let (mut p, _lock) = state::open_locked(pin_dir, ctx.max_ports)?;
    let plan = state::plan(&p, &st, opts)?;
    let log = AuditLog::new(&ctx.audit_log);
    // One write and one fsync for the whole plan (thousands of new ports).
    let mut batch = AuditBatch::default();
    let mut audit_errors = Vec::new();
    let mut results = Vec::new();
    let r = state::apply(&mut p, &plan, &mut |o| {
        if let Err(e) = batch.push(&o.audit_entry()) {
            audit_errors.push(format!(
                "{}: {}",
                o.plan.iface,
                portguard::error::one_line(&e)
            ));
        }
        if !a.json {
            match &o.result {
                Ok(()) => println!("{}", o.plan.describe()),
                Err(e) => println!("{} FAILED: {e}", o.plan.describe()),
            }
        }
        results.push(serde_json::json!({
            "iface": o.plan.iface,
            "result": if o.result.is_ok() { "ok" } else { "failed" },
            "error": o.result.as_ref().err(),
        }));
    });
    if let Err(e) = log.write(&batch) {
        audit_errors.push(format!(
            "{} change(s): {}",
            batch.len(),
            portguard::error::one_line(&e)
        ));
    }
    if a.json {
        let mut v = plan.to_json();
        v["dry_run"] = false.into();
        v["results"] = results.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for pp in &plan.ports {
            if matches!(pp.kind, Kind::Unmanaged | Kind::Missing) {
                println!("{}", pp.describe());
            }
        }
        println!(
            "{}: {}",
            if plan.is_noop() {
                "nothing to do"
            } else {
                "applied"
            },
            plan.summary()
        );
    }
    r?;
    if !audit_errors.is_empty() {
        anyhow::bail!(
            "the changes were applied but could not be written to the audit log {}: {}",
            ctx.audit_log.display(),
            audit_errors.join("; ")
        );
    }
    Ok(())
}
