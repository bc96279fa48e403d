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
    // SAFETY: plain socket/ioctl/close on an fd we own; ifreq is zeroed and NUL-terminated.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(IfaceError::Query(
                name.into(),
                std::io::Error::last_os_error(),
            ));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(IfaceError::Query(name.into(), err));
        }
        Ok(ifr.ifr_ifru.ifru_hwaddr.sa_family)
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
