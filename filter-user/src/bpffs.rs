//! Making sure the pin directory lives on a BPF filesystem.
use std::path::Path;

use anyhow::{bail, Context, Result};

const BPF_FS_MAGIC: rustix::fs::FsWord = 0xcafe4a11;
const BPFFS_ROOT: &str = "/sys/fs/bpf";

fn fs_magic(p: &Path) -> Option<rustix::fs::FsWord> {
    rustix::fs::statfs(p).ok().map(|st| st.f_type)
}

fn nearest_existing(p: &Path) -> Option<&Path> {
    let mut cur = Some(p);
    while let Some(c) = cur {
        if c.exists() {
            return Some(c);
        }
        cur = c.parent();
    }
    None
}

/// Ensures `pin_dir` is (or will be created) on a bpffs. Mounts one at
/// /sys/fs/bpf when the pin dir is below it and nothing is mounted there,
/// warning on stderr. Returns true when it mounted.
pub fn ensure(pin_dir: &Path) -> Result<bool> {
    let base = nearest_existing(pin_dir).unwrap_or(Path::new("/"));
    if fs_magic(base) == Some(BPF_FS_MAGIC) {
        return Ok(false);
    }
    let root = Path::new(BPFFS_ROOT);
    if pin_dir.starts_with(root) && fs_magic(root) != Some(BPF_FS_MAGIC) {
        std::fs::create_dir_all(root).with_context(|| format!("cannot create {BPFFS_ROOT}"))?;
        if let Err(e) = rustix::mount::mount(
            "bpf",
            BPFFS_ROOT,
            "bpf",
            rustix::mount::MountFlags::empty(),
            None,
        ) {
            bail!("bpffs is not mounted at {BPFFS_ROOT} and mounting it failed: {e}");
        }
        log::warn!(
            "bpffs was not mounted; mounted it at {BPFFS_ROOT} (pins there vanish \
             with this mount namespace: run portguard in the host's mount namespace, e.g. \
             `nsenter --net=...` rather than `ip netns exec`)"
        );
        return Ok(true);
    }
    if pin_dir.starts_with(root) {
        return Ok(false);
    }
    bail!(
        "pin dir {} is not on a BPF filesystem (mount one with `mount -t bpf bpf DIR` or use a dir under {BPFFS_ROOT})",
        pin_dir.display()
    )
}
