//! Tier C: real veth traffic (not yet implemented).
use anyhow::{bail, Result};
use serde_json::Value;

use super::Opts;

pub fn run(_o: &Opts) -> Result<Value> {
    bail!("not implemented")
}
