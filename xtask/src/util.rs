//! Small helpers shared by the subcommands: paths, privilege checks and
//! running child processes with readable errors.
use std::{
    env,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus, Output, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

/// The workspace root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Cargo's target directory for the host workspace.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        }
        _ => repo_root().join("target"),
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where Debian keeps admin tools that a non-root PATH may lack.
const EXTRA_PATH: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// `command -v`, also looking in the sbin directories.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(EXTRA_PATH.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A `cargo` command in the repo root, through the rustup proxy (so `+nightly`
/// works) and without the per-crate variables `cargo run` gave us.
pub fn cargo<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root()).args(args);
    for (k, _) in env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_BIN_")
            || k == "CARGO_CRATE_NAME"
            || k == "CARGO_PRIMARY_PACKAGE"
            || k == "CARGO"
        {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd
}

/// Removes everything that would steer a nested nightly build (the eBPF crate
/// picks its toolchain and target itself).
pub fn scrub_for_nightly(cmd: &mut Command) {
    for (k, _) in env::vars_os() {
        let k = k.to_string_lossy();
        if (k.starts_with("CARGO_") && k != "CARGO_HOME" && !k.starts_with("CARGO_TERM_"))
            || k.starts_with("RUSTC")
            || k == "RUSTFLAGS"
            || k == "RUSTDOC"
            || k == "RUSTUP_TOOLCHAIN"
            || k == "CARGO"
        {
            cmd.env_remove(k.as_ref());
        }
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs with inherited stdio; an error names the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let st = status(cmd)?;
    if !st.success() {
        bail!("`{}` failed ({st})", describe(cmd));
    }
    Ok(())
}

pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("cannot run `{}`", describe(cmd)))
}

/// Captures stdout and stderr (stdin closed).
pub fn capture(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", describe(cmd)))
}

/// Captured stdout of a command that must succeed; the error carries stderr.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = capture(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Seconds since `t`, for step timings.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Re-runs this xtask under `sudo -E`, keeping PATH (sudo's secure_path would
/// drop ~/.cargo/bin) and the rustup/cargo homes.
pub fn reexec_as_root(what: &str) -> Result<ExitCode> {
    let Some(sudo) = which("sudo") else {
        bail!("`{what}` needs root (XDP programs, network namespaces, bpffs) and sudo is not installed: run it as root");
    };
    let mut cmd = Command::new(sudo);
    cmd.arg("-E").arg("env");
    for var in ["PATH", "HOME", "RUSTUP_HOME", "CARGO_HOME"] {
        if let Some(v) = env::var_os(var) {
            let mut kv = std::ffi::OsString::from(format!("{var}="));
            kv.push(v);
            cmd.arg(kv);
        }
    }
    cmd.arg(env::current_exe()?).args(env::args_os().skip(1));
    eprintln!("{what}: not root, re-running under sudo");
    let st = status(&mut cmd)?;
    Ok(if st.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
