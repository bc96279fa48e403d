//! Interface lookups in the current network namespace.
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

/// A socket for the interface ioctls (SIOCGIFINDEX, SIOCGIFNAME).
fn ioctl_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
    Ok(socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

pub fn index(name: &str) -> Result<u32, IfaceError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
        return Err(IfaceError::BadName(name.to_string()));
    }
    let sock = ioctl_socket().map_err(|e| IfaceError::Query(name.into(), e))?;
    match rustix::net::netdevice::name_to_index(&sock, name) {
        Ok(i) => Ok(i),
        Err(rustix::io::Errno::NODEV) => Err(IfaceError::Unknown(name.to_string())),
        Err(e) => Err(IfaceError::Query(name.into(), e.into())),
    }
}

pub fn name(index: u32) -> Option<String> {
    let sock = ioctl_socket().ok()?;
    rustix::net::netdevice::index_to_name(&sock, index).ok()
}

/// The link-layer type (ARPHRD_*) of an interface.
pub fn link_type(name: &str) -> Result<u16, IfaceError> {
    index(name)?;
    crate::sys::link_type(name).map_err(|e| IfaceError::Query(name.into(), e))
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
