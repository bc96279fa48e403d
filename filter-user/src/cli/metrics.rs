//! `portguard metrics` (being implemented).
use std::path::Path;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_pin_dir: &Path, _a: Args) -> Result<()> {
    bail!("portguard metrics is not implemented yet")
}
