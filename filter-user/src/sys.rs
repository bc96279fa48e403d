//! The system calls no maintained crate makes safe for us, behind safe
//! functions. Every `unsafe` block of filter-user lives here.
//!
//! * bpf(2) commands aya 0.14 does not wrap: map batch updates/deletes and
//!   the info of a pinned link (its type and ifindex).
//! * malloc_trim, to give a burst's freed heap back ([`trim_heap`]).
//! * SIOCGIFHWADDR, the link-layer type of an interface. Not
//!   `/sys/class/net/IF/type`: sysfs shows the interfaces of the network
//!   namespace that mounted it, and portguard is run with `nsenter --net=...`
//!   (same /sys, another namespace), where sysfs would name the host's
//!   interfaces. Not getifaddrs(3) either: it dumps every link and address
//!   of the namespace for each lookup.
//!
//! Everything else goes through std (`File::lock`), rustix, nix and signal-hook.
use std::{
    ffi::CString,
    io,
    mem::size_of,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use aya::Pod;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

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

fn map_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a complete bpf_attr for the batch commands; its key
    // and value pointers come from the slices of our callers, which hold
    // `count` elements and outlive the call; the kernel writes only `count`.
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

/// One BPF_MAP_UPDATE_BATCH of `keys[i] -> values[i]`. On failure, also
/// how many elements the kernel had processed.
pub fn map_update_batch<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), (io::Error, usize)> {
    assert_eq!(keys.len(), values.len(), "batch update: lengths differ");
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: u32::try_from(keys.len()).expect("batch of at most u32::MAX"),
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    map_batch(BPF_MAP_UPDATE_BATCH, &mut attr).map_err(|e| (e, attr.count as usize))
}

/// One BPF_MAP_DELETE_BATCH of `keys`. On failure, also how many keys the
/// kernel had deleted (it stops at the first missing key, with ENOENT).
pub fn map_delete_batch<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> Result<(), (io::Error, usize)> {
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        count: u32::try_from(keys.len()).expect("batch of at most u32::MAX"),
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    map_batch(BPF_MAP_DELETE_BATCH, &mut attr).map_err(|e| (e, attr.count as usize))
}

/// Gives the heap's free memory back to the kernel (glibc `malloc_trim`):
/// after a burst (an agent's sync of thousands of ports) the freed pages
/// would otherwise stay resident for the life of the process.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks and madvises glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// BPF_OBJ_GET: a new fd for the object pinned at `path`.
pub fn bpf_obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    // SAFETY: bpf(2) with a zeroed attr holding a NUL-terminated path that
    // outlives the call; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            attr.as_mut_ptr(),
            size_of::<[u64; 16]>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// BPF_OBJ_GET_INFO_BY_FD on a link: its `struct bpf_link_info` as u32 words.
pub fn bpf_link_info(link: impl AsFd) -> io::Result<[u32; 32]> {
    let mut info = [0u32; 32];
    let mut attr = [0u64; 16];
    attr[0] = link.as_fd().as_raw_fd() as u64 | ((size_of::<[u32; 32]>() as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: bpf(2) writes at most info_len (the size of `info`) bytes into
    // `info`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            size_of::<[u64; 16]>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// The link-layer type (ARPHRD_*) of interface `name` (SIOCGIFHWADDR), in
/// the caller's network namespace.
pub fn link_type(name: &str) -> io::Result<u16> {
    let ifr = ifreq_ioctl(name, libc::SIOCGIFHWADDR, std::ptr::null_mut())?;
    // SAFETY: on success the kernel filled the union's hwaddr member.
    Ok(unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family })
}

/// The interface's driver name as `ethtool -i` shows it ("veth", "tun",
/// "ixgbe", ...), from ETHTOOL_GDRVINFO. Asked through a socket, so it answers
/// for the caller's network namespace (sysfs would not: see the module doc).
pub fn driver(name: &str) -> io::Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 3;
    // struct ethtool_drvinfo: u32 cmd, char driver[32], ... (196 bytes).
    let mut info = [0u32; 49];
    info[0] = ETHTOOL_GDRVINFO;
    ifreq_ioctl(name, libc::SIOCETHTOOL, info.as_mut_ptr().cast())?;
    let bytes: Vec<u8> = info[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// One ifreq ioctl on `name` (on a fresh datagram socket); `data` goes into
/// `ifr_data` for requests that take a buffer (at least as large as what the
/// request writes), null otherwise.
fn ifreq_ioctl(
    name: &str,
    request: libc::c_ulong,
    data: *mut libc::c_void,
) -> io::Result<libc::ifreq> {
    use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let sock = socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    if !data.is_null() {
        ifr.ifr_ifru.ifru_data = data.cast();
    }
    // SAFETY: the request reads the NUL-terminated name (checked above to fit
    // with its NUL) and writes into `ifr`, which we own, or into `data`, which
    // the caller sized for this request.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut ifr) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ifr)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_not_ethernet() {
        // ARPHRD_LOOPBACK; `lo` exists in every network namespace.
        assert_eq!(super::link_type("lo").unwrap(), 772);
        assert!(super::link_type("nonexistent-if0").is_err());
        assert!(super::link_type("").is_err());
    }
}
