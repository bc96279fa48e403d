//! `cargo xtask build` and the thin `fuzz`/`bench` wrappers.
use std::{ffi::OsString, process::ExitCode};

use anyhow::Result;

use crate::{
    setup::{self, Privilege},
    util::{self, cargo, status},
};

/// Setup, then portguard (its build.rs builds the XDP object) and every test binary.
pub fn run(release: bool, privilege: Privilege) -> Result<()> {
    setup::run(privilege)?;
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    run_cargo(&["build", "-p", "filter-user"], profile)?;
    run_cargo(&["test", "--workspace", "--no-run"], profile)
}

fn run_cargo(args: &[&str], extra: &[&str]) -> Result<()> {
    util::run(&mut cargo(args.iter().chain(extra)))
}

/// `cargo run --release -p portguard-tests --bin <bin> -- <args>`, keeping its exit code.
pub fn forward(bin: &str, args: Vec<OsString>) -> Result<ExitCode> {
    setup::run(Privilege::Optional)?;
    let mut cmd = cargo([
        "run",
        "--release",
        "-p",
        "portguard-tests",
        "--bin",
        bin,
        "--",
    ]);
    cmd.args(args);
    let st = status(&mut cmd)?;
    Ok(match st.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}
