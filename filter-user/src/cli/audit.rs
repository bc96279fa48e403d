//! `portguard audit` (being implemented).

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(ctx: &super::Ctx, _a: Args) -> Result<()> {
    let _ = (&ctx.pin_dir, &ctx.audit_log);
    bail!("portguard audit is not implemented yet")
}
