//! BIG TCP on a test interface: GSO/GRO limits above 64 KiB, so TCP sends
//! super-frames whose IP length field is 0. IPv6 through `ip link`; IPv4
//! through one RTM_NEWLINK request (iproute2 6.1 here has no keyword for
//! IFLA_GSO_IPV4_MAX_SIZE/IFLA_GRO_IPV4_MAX_SIZE, Linux >= 6.3).
use std::{io, mem::size_of, os::fd::AsRawFd};

use anyhow::{bail, Context, Result};

use crate::netns::{enter_netns, ifindex_in, must};

const IFLA_GSO_IPV4_MAX_SIZE: u16 = 63;
const IFLA_GRO_IPV4_MAX_SIZE: u16 = 64;

/// Raises both families' GSO and GRO limits of `iface` in `ns` to `size`.
pub fn enable(ns: &str, iface: &str, size: u32) -> Result<()> {
    let s = size.to_string();
    must(&[
        "ip",
        "-n",
        ns,
        "link",
        "set",
        "dev",
        iface,
        "gso_max_size",
        &s,
        "gro_max_size",
        &s,
    ]);
    let ifindex = ifindex_in(ns, iface).with_context(|| format!("no {iface} in {ns}"))?;
    let ns = ns.to_string();
    std::thread::spawn(move || -> Result<()> {
        enter_netns(&ns)?;
        set_ipv4_limits(ifindex, size)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netlink thread panicked"))?
}

/// RTM_NEWLINK { ifinfomsg index, IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE }
/// with an ACK request, in the calling thread's netns.
fn set_ipv4_limits(ifindex: u32, size: u32) -> Result<()> {
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    let mut msg: Vec<u8> = Vec::new();
    // nlmsghdr: len (filled below), type, flags, seq, pid.
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: family, pad, type, index, flags, change.
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    for kind in [IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE] {
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&size.to_ne_bytes());
    }
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());

    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("netlink socket");
    }
    // SAFETY: the kernel just returned this fd to us.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl zeroed = the kernel (pid 0); `msg` is a live buffer.
    let sent = unsafe {
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error()).context("netlink sendto");
    }
    let mut buf = [0u8; 1024];
    // SAFETY: recv(2) into a buffer we own, at most its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 20 {
        return Err(io::Error::last_os_error()).context("netlink ack");
    }
    let ty = u16::from_ne_bytes([buf[4], buf[5]]);
    let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
    if ty != NLMSG_ERROR {
        bail!("netlink: unexpected reply type {ty}");
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(-err))
            .context("RTM_NEWLINK IFLA_GSO_IPV4_MAX_SIZE/IFLA_GRO_IPV4_MAX_SIZE (Linux >= 6.3)");
    }
    Ok(())
}

/// Sends `bytes` over one TCP connection from netns `from` to `dst`:5201 in
/// netns `to` (a listener there) and returns how many bytes arrived before
/// the sender's FIN (or an error after `timeout` without progress).
pub fn transfer(
    from: &str,
    to: &str,
    dst: std::net::IpAddr,
    bytes: u64,
    timeout: std::time::Duration,
) -> Result<u64> {
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpListener, TcpStream},
        sync::mpsc,
    };
    let addr = SocketAddr::new(dst, 5201);
    let (ready_tx, ready_rx) = mpsc::channel();
    let to = to.to_string();
    let server = std::thread::spawn(move || -> Result<u64> {
        enter_netns(&to)?;
        let l = TcpListener::bind(addr).with_context(|| format!("listen on {addr}"))?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept().context("accept")?;
        s.set_read_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got += n as u64,
                Err(e) => return Err(e).context(format!("receiving after {got} bytes")),
            }
        }
    });
    ready_rx
        .recv_timeout(timeout)
        .context("the listener did not start")?;
    let from = from.to_string();
    let client = std::thread::spawn(move || -> Result<()> {
        enter_netns(&from)?;
        let mut s = TcpStream::connect_timeout(&addr, timeout).context("connect")?;
        s.set_write_timeout(Some(timeout))?;
        let chunk = vec![0x61u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n]).context("sending")?;
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    });
    let sent = client
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))?;
    let got = server
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    sent?;
    got
}
