//! Interface lookups in the current network namespace.
use std::ffi::{CStr, CString};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IfaceError {
    #[error("unknown interface {0:?}")]
    Unknown(String),
    #[error("invalid interface name {0:?}")]
    BadName(String),
    #[error("interface {0:?} is not an Ethernet device (link type {1}); portguard binds Ethernet ports (tap, veth)")]
    NotEthernet(String, u16),
    #[error("cannot query interface {0:?}: {1}")]
    Query(String, std::io::Error),
}

const ARPHRD_ETHER: u16 = 1;

pub fn index(name: &str) -> Result<u32, IfaceError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(IfaceError::BadName(name.to_string()));
    }
    let c = CString::new(name).map_err(|_| IfaceError::BadName(name.to_string()))?;
    // SAFETY: NUL-terminated name.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(IfaceError::Unknown(name.to_string()));
    }
    Ok(idx)
}

pub fn name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: buf has IFNAMSIZ bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname NUL-terminates on success.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The link-layer type (ARPHRD_*) of an interface.
pub fn link_type(name: &str) -> Result<u16, IfaceError> {
    index(name)?;
    let ifr = ifreq_ioctl(name, libc::SIOCGIFHWADDR, std::ptr::null_mut())
        .map_err(|e| IfaceError::Query(name.into(), e))?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family })
}

/// The interface's driver name as `ethtool -i` shows it ("veth", "tun",
/// "ixgbe", ...), from ETHTOOL_GDRVINFO. Asked through a socket, so it answers
/// for the caller's network namespace; /sys/class/net does not under
/// `nsenter --net` (sysfs keeps the namespace it was mounted in).
pub fn driver(name: &str) -> Result<String, IfaceError> {
    const ETHTOOL_GDRVINFO: u32 = 3;
    // struct ethtool_drvinfo: u32 cmd, char driver[32], ... (196 bytes).
    let mut info = [0u32; 49];
    info[0] = ETHTOOL_GDRVINFO;
    ifreq_ioctl(name, libc::SIOCETHTOOL, info.as_mut_ptr().cast())
        .map_err(|e| IfaceError::Query(name.into(), e))?;
    let bytes: Vec<u8> = info[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// One ifreq ioctl on `name` (on a fresh datagram socket); `data` goes into
/// `ifr_data` for requests that take a buffer (at least the size the request
/// writes), null otherwise.
fn ifreq_ioctl(
    name: &str,
    request: libc::c_ulong,
    data: *mut libc::c_void,
) -> std::io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: plain socket/ioctl/close on an fd we own; ifreq is zeroed and its
    // name NUL-terminated (checked length); `data` is the caller's buffer, large
    // enough for `request`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        if !data.is_null() {
            ifr.ifr_ifru.ifru_data = data.cast();
        }
        let rc = libc::ioctl(fd, request, &mut ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
        Ok(ifr)
    }
}

/// Resolves an interface that may carry a binding: it must exist and be Ethernet.
pub fn ethernet_port(name: &str) -> Result<u32, IfaceError> {
    let idx = index(name)?;
    let t = link_type(name)?;
    if t != ARPHRD_ETHER {
        return Err(IfaceError::NotEthernet(name.to_string(), t));
    }
    Ok(idx)
}
