//! `cargo xtask`: setup, build, test, demo, fuzz and bench for portguard.
mod build;
mod demo;
mod setup;
mod test;
mod util;
mod vm_image;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::setup::Privilege;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "portguard development tasks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (nightly rust-src, bpf-linker,
    /// Debian tools, bpffs); idempotent, silent when all is present.
    Setup,
    /// Build portguard (with its XDP object) and the test binaries.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run the workspace tests (as root), clippy and rustfmt; non-zero on any failure.
    Test {
        /// Instead: boot a QEMU guest (TCG) on a tap guarded by portguard and
        /// check legit and spoofed traffic from inside it (builds and caches
        /// the guest image first).
        #[arg(long)]
        vm: bool,
    },
    /// Show portguard stopping spoofing and storms between throwaway network namespaces.
    Demo {
        /// Control run: the same traffic without portguard (every attack should then get through).
        #[arg(long)]
        no_portguard: bool,
        /// The fleet demo instead: a 3-member etcd, two hypervisors with
        /// `portguard agent`, bindings through `portguard fleet`, a leader killed.
        #[arg(long, conflicts_with = "no_portguard")]
        fleet: bool,
    },
    /// Differential fuzzing of the XDP program against the reference model.
    Fuzz {
        /// Number of frames to generate.
        #[arg(long)]
        frames: Option<u64>,
        /// Random seed (same seed, same frames).
        #[arg(long)]
        seed: Option<u64>,
        /// Further arguments for the fuzz binary.
        #[arg(last = true)]
        rest: Vec<OsString>,
    },
    /// Write shell completions (bash, zsh, fish) and man pages to target/docs/.
    Docs,
    /// Data-path and control-plane benchmarks.
    Bench {
        /// Short run (about 4 minutes).
        #[arg(long)]
        quick: bool,
        /// Also write the results as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Further arguments for the bench binary.
        #[arg(last = true)]
        rest: Vec<OsString>,
    },
}

/// Builds portguard and has it write its completions and man pages (they
/// come from its own clap definitions, which xtask does not link).
fn docs() -> anyhow::Result<ExitCode> {
    build::run(false, Privilege::Optional)?;
    let out = util::target_dir().join("docs");
    util::run(
        std::process::Command::new(util::target_dir().join("debug/portguard"))
            .arg("gen-docs")
            .arg("--out")
            .arg(&out),
    )?;
    println!(
        "installed by e.g.: cp {0}/completions/portguard.bash /etc/bash_completion.d/portguard; \
         cp {0}/man/*.1 /usr/local/share/man/man1/",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Setup => setup::run(Privilege::Require).map(|()| ExitCode::SUCCESS),
        Cmd::Build { release } => {
            build::run(release, Privilege::Optional).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Test { vm: false } => test::run(),
        Cmd::Test { vm: true } => test::run_vm(),
        Cmd::Demo {
            no_portguard,
            fleet,
        } => {
            if fleet {
                demo::run_fleet()
            } else {
                demo::run(!no_portguard)
            }
        }
        Cmd::Docs => docs(),
        Cmd::Fuzz { frames, seed, rest } => {
            let mut args: Vec<OsString> = Vec::new();
            if let Some(n) = frames {
                args.extend(["--frames".into(), n.to_string().into()]);
            }
            if let Some(s) = seed {
                args.extend(["--seed".into(), s.to_string().into()]);
            }
            args.extend(rest);
            build::forward("fuzz", args)
        }
        Cmd::Bench { quick, json, rest } => {
            let mut args: Vec<OsString> = Vec::new();
            if quick {
                args.push("--quick".into());
            }
            if let Some(f) = json {
                // The binary runs in the repo root; keep the path relative to where we were called.
                let f = std::path::absolute(&f).unwrap_or(f);
                args.extend(["--json".into(), f.into_os_string()]);
            }
            args.extend(rest);
            // The fleet section runs `portguard agent` as a process: a release one.
            if std::env::var_os("PORTGUARD_BIN").is_none() {
                let built = util::run(&mut util::cargo([
                    "build",
                    "--release",
                    "--quiet",
                    "-p",
                    "filter-user",
                ]));
                if built.is_ok() {
                    std::env::set_var(
                        "PORTGUARD_BIN",
                        util::target_dir().join("release/portguard"),
                    );
                }
            }
            build::forward("bench", args)
        }
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
