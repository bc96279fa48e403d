//! BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH for hash maps (aya 0.14 has
//! no wrapper): one syscall per chunk instead of one per element, which is
//! what makes installing or replacing a million addresses take seconds.
use std::{io, os::fd::AsFd};

use aya::{maps::MapData, Pod};
use thiserror::Error;

use crate::sys;

/// Elements per syscall.
pub const CHUNK: usize = 16384;

#[derive(Debug, Error)]
pub enum BatchError {
    #[error("{call} failed after {done} of {total} elements: {source}")]
    Syscall {
        call: &'static str,
        done: usize,
        total: usize,
        source: io::Error,
    },
}

/// Inserts or replaces `keys[i] -> values[i]`, in order.
pub fn update<K: Pod, V: Pod>(map: &MapData, keys: &[K], values: &[V]) -> Result<(), BatchError> {
    assert_eq!(
        keys.len(),
        values.len(),
        "batch update: keys and values differ in length"
    );
    let fd = map.fd().as_fd();
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let chunk = done..done + n;
        if let Err((source, count)) =
            sys::map_update_batch(fd, &keys[chunk.clone()], &values[chunk])
        {
            return Err(BatchError::Syscall {
                call: "BPF_MAP_UPDATE_BATCH",
                done: done + count,
                total: keys.len(),
                source,
            });
        }
        done += n;
    }
    Ok(())
}

/// Deletes `keys`, in order; keys that are already gone are skipped.
pub fn delete<K: Pod>(map: &MapData, keys: &[K]) -> Result<(), BatchError> {
    let fd = map.fd().as_fd();
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        match sys::map_delete_batch(fd, &keys[done..done + n]) {
            Ok(()) => done += n,
            // The kernel stops at the first missing key: skip it and go on.
            Err((e, count)) if e.raw_os_error() == Some(libc::ENOENT) => done += count + 1,
            Err((source, count)) => {
                return Err(BatchError::Syscall {
                    call: "BPF_MAP_DELETE_BATCH",
                    done: done + count,
                    total: keys.len(),
                    source,
                })
            }
        }
    }
    Ok(())
}
