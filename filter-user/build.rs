//! Builds the XDP program (`filter-ebpf`, nightly, bpfel-unknown-none) into
//! `OUT_DIR`, as aya-template does, and hands its path to the crate as
//! `PORTGUARD_EBPF_OBJ`, so `cargo build` alone produces a self-contained
//! `portguard` binary and every worktree/profile embeds its own object.
//!
//! Not `aya-build`: it sets `CARGO_ENCODED_RUSTFLAGS`, which replaces the
//! rustflags of filter-ebpf/.cargo/config.toml (target-cpu=v3 for cmpxchg,
//! misaligned loads) instead of adding to them.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let ebpf = root.join("filter-ebpf");
    for p in ["src", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("filter-common/src").display()
    );
    println!("cargo:rerun-if-env-changed=PORTGUARD_EBPF_OBJ");

    // A prebuilt object (PORTGUARD_EBPF_OBJ=path) takes precedence.
    if let Ok(obj) = env::var("PORTGUARD_EBPF_OBJ") {
        println!("cargo:rustc-env=PORTGUARD_EBPF_OBJ={obj}");
        return;
    }
    // A target dir of its own inside OUT_DIR: the outer cargo holds the lock
    // on the workspace's target dir while build scripts run.
    let target_dir = PathBuf::from(env::var("OUT_DIR").unwrap()).join("filter-ebpf");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ebpf)
        .args(["+nightly", "build", "--release", "--target-dir"])
        .arg(&target_dir);
    // Do not leak the host build's settings into the BPF build.
    for (k, _) in env::vars() {
        if k.starts_with("CARGO_")
            || k.starts_with("RUSTC")
            || k == "RUSTFLAGS"
            || k == "RUSTUP_TOOLCHAIN"
            || k == "RUSTDOC"
        {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status().expect(
        "failed to run `cargo +nightly` for filter-ebpf (run `cargo xtask setup` to install the toolchain)",
    );
    if !status.success() {
        panic!("building filter-ebpf failed (run `cargo xtask setup` if bpf-linker or rust-src is missing)");
    }
    let obj = target_dir.join("bpfel-unknown-none/release/portguard");
    println!("cargo:rustc-env=PORTGUARD_EBPF_OBJ={}", obj.display());
}
