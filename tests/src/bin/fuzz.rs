//! `fuzz --frames N --seed S [--per-state K]`: differential run of the XDP
//! program against the reference model (needs root: loads a program and
//! pins maps under /sys/fs/bpf). Prints `frames=N mismatches=M` and, on a
//! mismatch, the first mismatching frame as hex plus the port's binding;
//! exits 1 when there is any mismatch, 2 on usage or setup errors.
use std::process::ExitCode;

use portguard_tests::difftest::{run_with, Options};

fn usage() -> ExitCode {
    eprintln!("usage: fuzz [--frames N] [--seed S] [--per-state K] [--max-mismatches M]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut opts = Options::new(100_000, 1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let Some(v) = args.next() else {
            return usage();
        };
        let Ok(n) = (if let Some(h) = v.strip_prefix("0x") {
            u64::from_str_radix(h, 16)
        } else {
            v.parse::<u64>()
        }) else {
            eprintln!("fuzz: {a}: not a number: {v:?}");
            return usage();
        };
        match a.as_str() {
            "--frames" => opts.frames = n,
            "--seed" => opts.seed = n,
            "--per-state" => opts.frames_per_state = n,
            "--max-mismatches" => opts.max_mismatches = n.max(1),
            _ => return usage(),
        }
    }
    let report = match run_with(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fuzz: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("frames={} mismatches={}", report.frames, report.mismatches);
    eprintln!("seed={} {}", opts.seed, report.summary());
    if let Some(m) = &report.first_mismatch {
        println!("first mismatch:\n{m}");
    }
    if report.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
