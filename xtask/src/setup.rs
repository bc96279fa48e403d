//! `cargo xtask setup`: everything building and testing portguard needs, each
//! checked first so a ready machine costs a few milliseconds and prints nothing.
use std::{
    env, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::{capture, is_root, stdout_of, which};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages used by the tests, the demo and the benchmarks:
/// (what proves it is installed, package). A probe starting with `/` is a
/// file (libraries, Python modules), anything else a command on PATH.
const TOOLS: &[(&str, &str)] = &[
    ("tcpdump", "tcpdump"),
    ("ping", "iputils-ping"),
    ("arping", "arping"),
    ("ndisc6", "ndisc6"),
    ("dnsmasq", "dnsmasq-base"),
    ("dhclient", "isc-dhcp-client"),
    ("nft", "nftables"),
    ("ip", "iproute2"),
    ("bpftool", "bpftool"),
    ("nsenter", "util-linux"),
    ("setpriv", "util-linux"),
    ("tc", "iproute2"),
    ("sysctl", "procps"),
    // Real traffic, real tap guests (issue: offloads, BIG TCP, tap devices).
    ("iperf3", "iperf3"),
    ("ethtool", "ethtool"),
    ("xdp-loader", "xdp-tools"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("/bin/busybox", "busybox-static"),
    // Real attack toolkits (first-hop security suite).
    ("atk6-fake_router26", "thc-ipv6"),
    ("arpspoof", "dsniff"),
    ("yersinia", "yersinia"),
    ("hping3", "hping3"),
    ("trafgen", "netsniff-ng"),
    (
        "/usr/lib/python3/dist-packages/scapy/__init__.py",
        "python3-scapy",
    ),
    // The fleet: a real etcd, TLS material, and what etcd-client's build needs.
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("openssl", "openssl"),
    ("protoc", "protobuf-compiler"),
    (
        "/usr/include/google/protobuf/descriptor.proto",
        "libprotobuf-dev",
    ),
];

/// How to treat steps that need root when we are not root.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Fail (setup, test, demo).
    Require,
    /// Warn and go on (build, fuzz, bench can do without).
    Optional,
}

pub fn run(privilege: Privilege) -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_tools(privilege)?;
    bpffs(privilege)?;
    Ok(())
}

fn say(what: &str) {
    eprintln!("setup: {what}");
}

fn need_root(privilege: Privilege, what: &str) -> Result<bool> {
    if is_root() {
        return Ok(true);
    }
    match privilege {
        Privilege::Require => bail!(
            "setup: {what} needs root; run as root (or `sudo -E env PATH=\"$PATH\" cargo xtask setup`)"
        ),
        Privilege::Optional => {
            say(&format!("warning: {what} needs root; skipped"));
            Ok(false)
        }
    }
}

fn rust_src() -> Result<()> {
    let installed = stdout_of(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("the nightly toolchain is required (rustup toolchain list)")?;
    if installed.lines().any(|l| l.trim() == "rust-src") {
        return Ok(());
    }
    stdout_of(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    say("installed rust-src for nightly");
    Ok(())
}

fn linker_ok() -> bool {
    match Command::new("bpf-linker").arg("--version").output() {
        Ok(o) => {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        }
        Err(_) => false,
    }
}

fn home() -> Result<PathBuf> {
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set")
}

fn bpf_linker() -> Result<()> {
    if linker_ok() {
        return Ok(());
    }
    // bpf-linker links nightly's own LLVM through an rpath to this folder. It
    // needs `libLLVM.so` to build and the versioned soname to run, so provide
    // both; a binary that only lost its links is repaired without a rebuild.
    let prefix = home()?.join(".cache/portguard-llvm");
    let libdir = prefix.join("lib");
    let llvm = nightly_libllvm()?;
    fs::create_dir_all(&libdir).with_context(|| format!("creating {}", libdir.display()))?;
    let soname = llvm.file_name().expect("a file name").to_owned();
    for name in [Path::new("libLLVM.so"), Path::new(&soname)] {
        let link = libdir.join(name);
        if fs::read_link(&link).ok().as_deref() != Some(llvm.as_path()) {
            let _ = fs::remove_file(&link);
            symlink(&llvm, &link).with_context(|| format!("linking {}", link.display()))?;
        }
    }
    if linker_ok() {
        say(&format!(
            "linked nightly's LLVM into {} for bpf-linker",
            libdir.display()
        ));
        return Ok(());
    }
    say(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM (about 4 minutes)"
    ));
    let install = |locked: bool| -> Result<std::process::Output> {
        let mut cmd = Command::new("cargo");
        cmd.env("LLVM_PREFIX", &prefix).args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
            "--force",
        ]);
        if locked {
            cmd.arg("--locked");
        }
        crate::util::scrub_for_nightly(&mut cmd);
        capture(&mut cmd)
    };
    let mut out = install(true)?;
    if !out.status.success() {
        out = install(false)?;
    }
    if !out.status.success() || !linker_ok() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
        bail!("setup: installing bpf-linker {BPF_LINKER_VERSION} failed");
    }
    say(&format!("installed bpf-linker {BPF_LINKER_VERSION}"));
    Ok(())
}

/// `$(rustc +nightly --print sysroot)/lib/libLLVM.so.22.1-rust-*`.
fn nightly_libllvm() -> Result<PathBuf> {
    let mut cmd = Command::new("rustc");
    cmd.args(["+nightly", "--print", "sysroot"]);
    crate::util::scrub_for_nightly(&mut cmd);
    let sysroot = PathBuf::from(stdout_of(&mut cmd)?.trim());
    let lib = sysroot.join("lib");
    let mut found: Vec<PathBuf> = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.22.1-rust-"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no libLLVM.so.22.1-rust-* in {}", lib.display()))
}

fn debian_tools(privilege: Privilege) -> Result<()> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(probe, _)| {
            if probe.starts_with('/') {
                !Path::new(probe).exists()
            } else {
                which(probe).is_none()
            }
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !need_root(privilege, &format!("installing {}", missing.join(" ")))? {
        return Ok(());
    }
    if which("apt-get").is_none() {
        bail!(
            "setup: missing {} and there is no apt-get to install them",
            missing.join(" ")
        );
    }
    let apt = |args: &[&str]| -> Result<()> {
        let out = capture(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(args),
        )?;
        if !out.status.success() {
            bail!(
                "setup: `apt-get {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    say(&format!("installed {}", missing.join(" ")));
    Ok(())
}

fn bpffs_mounted() -> Result<bool> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == "/sys/fs/bpf" && f[2] == "bpf"
    }))
}

fn bpffs(privilege: Privilege) -> Result<()> {
    if bpffs_mounted()? {
        return Ok(());
    }
    if !need_root(privilege, "mounting bpffs at /sys/fs/bpf")? {
        return Ok(());
    }
    fs::create_dir_all("/sys/fs/bpf").context("creating /sys/fs/bpf")?;
    stdout_of(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    say("mounted bpffs at /sys/fs/bpf");
    Ok(())
}
