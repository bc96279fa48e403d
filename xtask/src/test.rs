//! `cargo xtask test`: tests (as root), then clippy and rustfmt for the
//! workspace and the eBPF crate; every step runs and is reported.
use std::{
    fs,
    path::Path,
    process::{Command, ExitCode, Stdio},
    time::Instant,
};

use anyhow::{Context, Result};

use crate::{
    build,
    setup::{self, Privilege},
    util::{
        self, cargo, describe, is_root, reexec_as_root, repo_root, scrub_for_nightly, secs, status,
        stdout_of, target_dir,
    },
    vm_image,
};

const LEFTOVER_PREFIXES: [&str; 2] = ["pgt-", "pg-"];

pub fn run() -> Result<ExitCode> {
    if !is_root() {
        return reexec_as_root("cargo xtask test");
    }
    let before = leftovers();
    let mut results: Vec<(String, bool, f64)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    let t = Instant::now();
    let built = build::run(false, Privilege::Require);
    if let Err(e) = &built {
        eprintln!("error: {e:#}");
    }
    results.push(("setup + build".into(), built.is_ok(), secs(t)));

    let bin = target_dir().join("debug/portguard");
    let mut steps: Vec<(String, Command)> = Vec::new();
    if built.is_ok() {
        let mut t = cargo(["test", "--workspace", "--no-fail-fast"]);
        t.env("PORTGUARD_BIN", &bin).env("RUST_BACKTRACE", "1");
        steps.push(("cargo test --workspace --no-fail-fast".into(), t));
    }
    let mut clippy = cargo(["clippy", "--workspace", "--", "-D", "warnings"]);
    // Under clippy, filter-user's build script runs with an OUT_DIR of its
    // own, where it would build the XDP object again from cold (~1 min).
    // Linting only needs a file to embed: an empty stand-in, as aya-template's
    // stubs for check/clippy.
    let stub = target_dir().join("ebpf/clippy-stub.o");
    if fs::create_dir_all(target_dir().join("ebpf")).is_ok() && fs::write(&stub, []).is_ok() {
        clippy.env("PORTGUARD_EBPF_OBJ", &stub);
    }
    steps.push(("cargo clippy --workspace -- -D warnings".into(), clippy));
    steps.push((
        "cargo fmt --all -- --check".into(),
        cargo(["fmt", "--all", "--", "--check"]),
    ));
    // The eBPF crate is outside the workspace: lint and format-check it with
    // its own toolchain, target and build-std (filter-ebpf/.cargo/config.toml).
    // target/ebpf is clippy's alone: filter-user's build script builds the
    // object under its OUT_DIR.
    let ebpf_target = target_dir().join("ebpf");
    steps.push((
        "filter-ebpf: cargo +nightly clippy --release -- -D warnings".into(),
        nightly_in_ebpf(
            "clippy",
            Some(&ebpf_target),
            &["--release", "--", "-D", "warnings"],
        ),
    ));
    steps.push((
        "filter-ebpf: cargo +nightly fmt -- --check".into(),
        nightly_in_ebpf("fmt", None, &["--", "--check"]),
    ));

    for (name, mut cmd) in steps {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let tee = name.starts_with("cargo test");
        let res = if tee {
            run_tests(&mut cmd)
        } else {
            status(&mut cmd).map(|s| (s.success(), String::new()))
        };
        let (ok, note) = res.unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            (false, String::new())
        });
        results.push((name, ok, secs(t)));
        if !note.is_empty() {
            notes.push(note);
        }
    }

    summary(&before, results, &notes)
}

/// `cargo xtask test --vm`: setup, portguard, the guest image (cached), then
/// the QEMU guest test (tests/tests/integration/vm_guest.rs) and the leftover check.
pub fn run_vm() -> Result<ExitCode> {
    if !is_root() {
        return reexec_as_root("cargo xtask test --vm");
    }
    let before = leftovers();
    let mut results: Vec<(String, bool, f64)> = Vec::new();
    let t = Instant::now();
    let built = setup::run(Privilege::Require)
        .and_then(|()| util::run(&mut cargo(["build", "-p", "filter-user"])));
    if let Err(e) = &built {
        eprintln!("error: {e:#}");
    }
    results.push(("setup + build".into(), built.is_ok(), secs(t)));
    let t = Instant::now();
    let img = vm_image::prepare();
    match &img {
        Ok(i) => eprintln!(
            "guest image: kernel {} ({}), initramfs {}",
            i.version,
            i.kernel.display(),
            i.initrd.display()
        ),
        Err(e) => eprintln!("error: guest image: {e:#}"),
    }
    results.push(("guest image (cached)".into(), img.is_ok(), secs(t)));
    let mut notes = Vec::new();
    if let (Ok(()), Ok(img)) = (&built, &img) {
        let name = "QEMU guest on a tap: cargo test --test integration -- --ignored vm_guest::";
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let mut cmd = cargo([
            "test",
            "-p",
            "portguard-tests",
            "--test",
            "integration",
            "--",
            "--ignored",
            "--nocapture",
            "vm_guest::",
        ]);
        cmd.env("PORTGUARD_BIN", target_dir().join("debug/portguard"))
            .env("PORTGUARD_VM_KERNEL", &img.kernel)
            .env("PORTGUARD_VM_INITRD", &img.initrd)
            .env("RUST_BACKTRACE", "1");
        let (ok, note) = run_tests(&mut cmd).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            (false, String::new())
        });
        results.push((name.into(), ok, secs(t)));
        notes.push(note);
    }
    summary(&before, results, &notes)
}

/// Adds the leftover check, prints every step's verdict; failure if any failed.
fn summary(
    before: &[Leftover],
    mut results: Vec<(String, bool, f64)>,
    notes: &[String],
) -> Result<ExitCode> {
    let leftovers_ok = clean_leftovers(before);
    results.push((
        "no leftover pgt-*/pg-* namespaces, links or pins".into(),
        leftovers_ok,
        0.0,
    ));

    eprintln!("\n==> summary");
    for (name, ok, s) in &results {
        eprintln!(
            "  {:<6} {name} ({s:.1} s)",
            if *ok { "ok" } else { "FAILED" }
        );
    }
    for n in notes {
        eprintln!("  {n}");
    }
    let failed = results.iter().filter(|r| !r.1).count();
    if failed == 0 {
        eprintln!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{failed} check(s) failed");
        Ok(ExitCode::FAILURE)
    }
}

/// Runs `cargo test`, passing its output through line by line while tallying
/// the `test result:` lines and the names of failed tests.
fn run_tests(cmd: &mut Command) -> Result<(bool, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{}`", describe(cmd)))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            // "ok. 5 passed; 1 failed; 0 ignored; 0 measured; ..."
            for part in rest.split(['.', ';']) {
                let mut w = part.split_whitespace();
                if let (Some(n), Some(what)) =
                    (w.next().and_then(|n| n.parse::<u64>().ok()), w.next())
                {
                    match what {
                        "passed" => passed += n,
                        "failed" => failed += n,
                        "ignored" => ignored += n,
                        _ => {}
                    }
                }
            }
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            failures.push(name.to_string());
        }
    }
    let ok = child.wait()?.success();
    let mut note = format!("tests: {passed} passed, {failed} failed, {ignored} ignored");
    if !failures.is_empty() {
        note.push_str(&format!("; failed: {}", failures.join(", ")));
    }
    Ok((ok, note))
}

/// `cargo +nightly <sub> [--target-dir T] <rest>` in filter-ebpf.
fn nightly_in_ebpf(sub: &str, target: Option<&Path>, rest: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root().join("filter-ebpf"))
        .args(["+nightly", sub]);
    if let Some(t) = target {
        cmd.arg("--target-dir").arg(t);
    }
    cmd.args(rest);
    scrub_for_nightly(&mut cmd);
    cmd
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Leftover {
    Netns(String),
    Link(String),
    Pin(String),
}

fn leftover_name(name: &str) -> bool {
    LEFTOVER_PREFIXES.iter().any(|p| name.starts_with(p))
}

impl Leftover {
    fn name(&self) -> &str {
        match self {
            Leftover::Netns(n) | Leftover::Link(n) | Leftover::Pin(n) => n,
        }
    }
}

/// Test fixtures are named `pgt-<pid>-...`: one whose process still runs
/// belongs to a concurrent test run, not to ours.
fn owner_alive(name: &str) -> bool {
    let rest = LEFTOVER_PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or("");
    match rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) if pid != std::process::id() => {
            std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

fn leftovers() -> Vec<Leftover> {
    let mut out = Vec::new();
    if let Ok(s) = stdout_of(Command::new("ip").args(["netns", "list"])) {
        out.extend(
            s.lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| leftover_name(n))
                .map(|n| Leftover::Netns(n.to_string())),
        );
    }
    if let Ok(s) = stdout_of(Command::new("ip").args(["-o", "link", "show"])) {
        // "12: pgt-a@if11: <...": the name sits between the first ": " and '@' or ':'.
        out.extend(
            s.lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
                .filter(|n| leftover_name(n))
                .map(Leftover::Link),
        );
    }
    if let Ok(rd) = fs::read_dir("/sys/fs/bpf") {
        out.extend(
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| leftover_name(n))
                .map(Leftover::Pin),
        );
    }
    out
}

/// Warns about and removes what the tests left behind; things that existed
/// before the run (someone else's) are only reported.
fn clean_leftovers(before: &[Leftover]) -> bool {
    let now = leftovers();
    let (old, now): (Vec<_>, Vec<_>) = now.into_iter().partition(|l| before.contains(l));
    if !old.is_empty() {
        eprintln!("warning: present before the tests, left alone: {old:?}");
    }
    let (busy, new): (Vec<_>, Vec<_>) = now.into_iter().partition(|l| owner_alive(l.name()));
    if !busy.is_empty() {
        eprintln!("note: in use by a running process (another test run?), left alone: {busy:?}");
    }
    if new.is_empty() {
        return true;
    }
    eprintln!("warning: the tests left behind (removing them): {new:?}");
    for l in &new {
        let res = match l {
            Leftover::Netns(n) => stdout_of(Command::new("ip").args(["netns", "del", n])).map(drop),
            Leftover::Link(n) => stdout_of(Command::new("ip").args(["link", "del", n])).map(drop),
            Leftover::Pin(n) => fs::remove_dir_all(format!("/sys/fs/bpf/{n}"))
                .or_else(|_| fs::remove_file(format!("/sys/fs/bpf/{n}")))
                .map_err(Into::into),
        };
        if let Err(e) = res {
            eprintln!("warning: could not remove {l:?}: {e:#}");
        }
    }
    false
}
