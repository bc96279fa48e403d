//! BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH for hash maps (aya 0.14 has
//! no wrapper): one syscall per chunk instead of one per element, which is
//! what makes installing or replacing a million addresses take seconds.
use std::{
    io,
    mem::size_of,
    os::fd::{AsFd, AsRawFd},
};

use aya::{maps::MapData, Pod};
use thiserror::Error;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

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

/// `union bpf_attr` for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn sys_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid bpf_attr prefix for the batch commands; the
    // pointers in it reference slices that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Inserts or replaces `keys[i] -> values[i]`, in order.
pub fn update<K: Pod, V: Pod>(map: &MapData, keys: &[K], values: &[V]) -> Result<(), BatchError> {
    assert_eq!(
        keys.len(),
        values.len(),
        "batch update: keys and values differ in length"
    );
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: fd,
            ..Default::default()
        };
        if let Err(source) = sys_batch(BPF_MAP_UPDATE_BATCH, &mut attr) {
            return Err(BatchError::Syscall {
                call: "BPF_MAP_UPDATE_BATCH",
                done: done + attr.count as usize,
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
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: fd,
            ..Default::default()
        };
        match sys_batch(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => done += n,
            // The kernel stops at the first missing key: skip it and go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => done += attr.count as usize + 1,
            Err(source) => {
                return Err(BatchError::Syscall {
                    call: "BPF_MAP_DELETE_BATCH",
                    done: done + attr.count as usize,
                    total: keys.len(),
                    source,
                })
            }
        }
    }
    Ok(())
}
