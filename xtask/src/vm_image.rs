//! The guest image of `cargo xtask test --vm`: a Debian kernel (downloaded
//! with `apt-get download`, unpacked with `dpkg-deb -x`, never installed)
//! and a busybox-static initramfs that loads the virtio-net modules and runs
//! a shell on the second serial port. Built once per kernel version under
//! `~/.cache/portguard/vm/<version>-v<IMAGE_FORMAT>/`.
use std::{
    env, fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::stdout_of;

/// Bump when the init script or the file list changes (a new cache entry).
const IMAGE_FORMAT: u32 = 2;

/// The modules virtio-net needs, in load order (the unpacked package has
/// no modules.dep; see each module's `depends=` with modinfo).
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "net/core/failover",
    "drivers/net/net_failover",
    "drivers/net/virtio_net",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
];

/// ttyS0 is the console (kernel messages, `pgvm:` lines); the test drives
/// the shell on ttyS1. IPv6 is off so the guest sends nothing unasked
/// (exact counter checks).
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
for m in virtio_ring virtio failover net_failover virtio_net virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci; do
    insmod /lib/modules/$m.ko || echo "pgvm: insmod $m failed"
done
ip link set lo up
echo "pgvm: ready"
stty -F /dev/ttyS1 raw -echo
# A pipe, not the tty, on stdin: a non-interactive shell (no prompt, no line editing).
while true; do cat /dev/ttyS1 | sh >/dev/ttyS1 2>&1; done
"#;

pub struct Image {
    pub version: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The cached image, built first if missing.
pub fn prepare() -> Result<Image> {
    let pkg = kernel_package()?;
    let version = pkg.strip_prefix("linux-image-").unwrap_or(&pkg).to_string();
    let dir = cache_root().join(format!("{version}-v{IMAGE_FORMAT}"));
    let img = Image {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initramfs.cpio"),
        version: version.clone(),
    };
    if img.kernel.exists() && img.initrd.exists() {
        return Ok(img);
    }
    eprintln!("vm image: building for {pkg} in {}", dir.display());
    let work = dir.with_extension("tmp");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // apt drops privileges to _apt for downloads: let it write here.
    fs::set_permissions(&work, fs::Permissions::from_mode(0o777))?;
    stdout_of(
        Command::new("apt-get")
            .args(["download", &pkg])
            .current_dir(&work),
    )
    .with_context(|| format!("downloading {pkg}"))?;
    let deb = fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {pkg} left no .deb"))?;
    let root = work.join("root");
    stdout_of(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let kernel = root.join(format!("boot/vmlinuz-{version}"));
    if !kernel.exists() {
        bail!("{pkg} has no {}", kernel.display());
    }
    let moddir = root.join(format!("lib/modules/{version}/kernel"));
    let busybox = fs::read("/bin/busybox")
        .context("reading /bin/busybox (apt-get install busybox-static; `cargo xtask setup`)")?;
    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "www",
        "lib",
        "lib/modules",
    ] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("init", 0o755, INIT.as_bytes());
    for m in MODULES {
        let src = moddir.join(format!("{m}.ko"));
        let data = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        let name = Path::new(m).file_name().unwrap().to_string_lossy();
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &data);
    }
    let out = work.join("out");
    fs::create_dir_all(&out)?;
    fs::copy(&kernel, out.join("vmlinuz"))?;
    fs::File::create(out.join("initramfs.cpio"))?.write_all(&cpio.finish())?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&out, &dir).with_context(|| format!("moving the image to {}", dir.display()))?;
    let _ = fs::remove_dir_all(&work);
    Ok(img)
}

/// `~/.cache/portguard/vm` (or `$XDG_CACHE_HOME/portguard/vm`).
fn cache_root() -> PathBuf {
    let base = env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("portguard/vm")
}

/// The versioned package the `linux-image-amd64` metapackage points at,
/// e.g. `linux-image-6.1.0-57-amd64`.
fn kernel_package() -> Result<String> {
    let out = stdout_of(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .context("asking apt which kernel linux-image-amd64 is (apt-get update?)")?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_string)
        .context("apt-cache depends linux-image-amd64 names no linux-image-*-amd64")
}

/// A `newc` cpio archive, what the kernel unpacks as an initramfs.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}
