//! `portguard audit` (being implemented).
use std::path::Path;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_pin_dir: &Path, _a: Args) -> Result<()> {
    bail!("portguard audit is not implemented yet")
}
