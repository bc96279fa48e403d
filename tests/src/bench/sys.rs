//! Process plumbing for the benchmarks: CPU pinning, private network
//! namespaces (`pgbench-<pid>-<tag>`), temporary pin directories under
//! /sys/fs/bpf, external commands.
use std::{
    io,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::Instant,
};

use anyhow::{anyhow, bail, Context, Result};

pub const PREFIX: &str = "pgbench";
pub const BPFFS: &str = "/sys/fs/bpf";

/// Pins the calling thread to `cpu`.
pub fn pin_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) affects this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity({cpu}): {}", io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPU the benchmark threads are pinned to: the last online one.
pub fn bench_cpu() -> usize {
    let n = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    n.saturating_sub(1)
}

pub fn nr_cpus() -> usize {
    thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs a command and returns its output (spawn failures become errors).
pub fn run(argv: &[&str]) -> Result<Output> {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("cannot run {argv:?}"))
}

/// Runs a command, failing with its stderr unless it exits 0.
pub fn must(argv: &[&str]) -> Result<Output> {
    let o = run(argv)?;
    if !o.status.success() {
        bail!(
            "{argv:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(o)
}

/// `ip -n NS ...`, must succeed.
pub fn ip(ns: &str, args: &[&str]) -> Result<Output> {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    must(&v)
}

/// Runs `argv` inside netns `ns` (network namespace only, via nsenter).
pub fn must_in(ns: &str, argv: &[&str]) -> Result<Output> {
    let netns = format!("--net=/run/netns/{ns}");
    let mut v = vec!["nsenter", netns.as_str()];
    v.extend_from_slice(argv);
    must(&v)
}

/// Wall time of `f`, in seconds.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let r = f()?;
    Ok((r, t.elapsed().as_secs_f64()))
}

/// A private network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Result<Netns> {
        let name = format!("{PREFIX}-{}-{tag}", std::process::id());
        must(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ip(&ns.name, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) -> Result<()> {
        enter_netns(&self.name)
    }

    pub fn ifindex(&self, iface: &str) -> Result<u32> {
        let o = ip(&self.name, &["-j", "link", "show", "dev", iface])?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        v.get(0)
            .and_then(|l| l.get("ifindex"))
            .and_then(|i| i.as_u64())
            .map(|i| i as u32)
            .ok_or_else(|| anyhow!("no ifindex for {iface} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

pub use crate::netns::enter_netns;

/// Runs `f` on a new thread that has entered `ns` and is pinned to `cpu`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    cpu: usize,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = ns.to_string();
    thread::Builder::new()
        .name(format!("bench-{ns}"))
        .spawn(move || {
            enter_netns(&ns)?;
            pin_cpu(cpu)?;
            f()
        })?
        .join()
        .map_err(|_| anyhow!("benchmark thread panicked"))?
}

/// A temporary pin directory `/sys/fs/bpf/pgbench-<pid>-<tag>`, removed on drop
/// (removing it unpins every map; the kernel frees them once no fd is left).
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new(tag: &str) -> Result<PinDir> {
        let path = Path::new(BPFFS).join(format!("{PREFIX}-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Ok(PinDir { path })
    }

    pub fn maps(&self) -> PathBuf {
        self.path.join("maps")
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes namespaces and pin dirs left by earlier bench processes that died
/// without cleaning up (only `pgbench-<pid>-...` of dead pids).
pub fn cleanup_stale() {
    let stale = |name: &str| -> bool {
        let mut it = name.split('-');
        it.next() == Some(PREFIX)
            && it.next().is_some_and(|pid| {
                pid.chars().all(|c| c.is_ascii_digit()) && !Path::new("/proc").join(pid).exists()
            })
    };
    if let Ok(rd) = std::fs::read_dir(BPFFS) {
        for e in rd.flatten() {
            if stale(&e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if stale(&n) {
                let _ = run(&["ip", "netns", "del", &n]);
            }
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there.
pub fn ensure_bpffs() -> Result<()> {
    portguard::bpffs::ensure(&Path::new(BPFFS).join(PREFIX)).map(|_| ())
}

/// Facts about the machine for the report.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = run(&["uname", "-r"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let nft = run(&["nft", "--version"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    serde_json::json!({
        "cpu_model": model,
        "cpus": nr_cpus(),
        "mem_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
        "kernel": kernel,
        "nft": nft,
        "loadavg_start": loadavg(),
    })
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
