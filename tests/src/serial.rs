//! Serialization across the suites of the one integration-test binary.
//!
//! Suites used to be separate binaries that cargo ran one after another;
//! now they share a process and its test threads. Tests that flood, time
//! things or otherwise load both CPUs take this lock so that no two of them
//! overlap, in whichever suite they live.
use std::sync::{Mutex, MutexGuard};

static HEAVY: Mutex<()> = Mutex::new(());

/// Held for the whole of a heavy test; a panicking holder does not poison
/// the others (they still get the lock).
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}
