//! Hand-built Ethernet frames for the attacks no standard tool sends, and a
//! sender that transmits them from inside a VM's network namespace.
use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub type Mac = [u8; 6];

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

fn eth(dst: Mac, src: Mac, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Internet checksum (RFC 1071) over `data`, starting from `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A broadcast UDP datagram (255.255.255.255, no UDP checksum).
pub fn udp_broadcast(src_mac: Mac, src: Ipv4Addr, dport: u16) -> Vec<u8> {
    let payload = b"portguard demo storm";
    let mut f = eth([0xff; 6], src_mac, ETH_P_IP);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&Ipv4Addr::BROADCAST.octets());
    let c = checksum(0, &ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// IPv6 + ICMPv6 with a correct checksum, hop limit 255 (as ND requires).
fn icmpv6(dst_mac: Mac, src_mac: Mac, src: Ipv6Addr, dst: Ipv6Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let len = icmp.len() as u32;
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let mut sum = 0u32;
    for c in pseudo.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    let c = checksum(sum, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(dst_mac, src_mac, ETH_P_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// A router advertisement to all nodes: "I am your default router, and
/// autoconfigure addresses in `prefix`/64".
pub fn rogue_ra(src_mac: Mac, src_ll: Ipv6Addr, prefix: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64, 0];
    m.extend_from_slice(&1800u16.to_be_bytes()); // router lifetime
    m.extend_from_slice(&[0; 8]); // reachable time, retrans timer
    m.extend_from_slice(&[1, 1]); // source link-layer address option
    m.extend_from_slice(&src_mac);
    m.extend_from_slice(&[3, 4, 64, 0xc0]); // prefix information: /64, on-link + autonomous
    m.extend_from_slice(&86400u32.to_be_bytes());
    m.extend_from_slice(&14400u32.to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&prefix.octets());
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    icmpv6([0x33, 0x33, 0, 0, 0, 1], src_mac, src_ll, all_nodes, m)
}

/// An unsolicited neighbour advertisement (override flag) claiming that
/// `target` lives at `src_mac`.
pub fn spoofed_na(
    src_mac: Mac,
    src: Ipv6Addr,
    target: Ipv6Addr,
    dst_mac: Mac,
    dst: Ipv6Addr,
) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]); // target link-layer address option
    m.extend_from_slice(&src_mac);
    icmpv6(dst_mac, src_mac, src, dst, m)
}

/// An AF_PACKET socket on `iface` inside network namespace `ns` (a thread of
/// ours enters it, so the rest of the process stays where it is).
struct Sender {
    fd: i32,
    addr: libc::sockaddr_ll,
}

impl Sender {
    fn open(iface: &str) -> Result<Sender> {
        // SAFETY: plain socket(2); the fd is owned by Sender and closed on drop.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: name is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            // SAFETY: fd is ours.
            unsafe { libc::close(fd) };
            bail!("no interface {iface}");
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        Ok(Sender { fd, addr })
    }

    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: frame and addr outlive the call; the lengths are theirs.
        let n = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&self.addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // SAFETY: fd is ours.
        unsafe { libc::close(self.fd) };
    }
}

fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let nsfile = File::open(&path).with_context(|| format!("opening {path}"))?;
    thread::spawn(move || {
        // SAFETY: setns on a namespace fd we hold; it affects only this thread.
        if unsafe { libc::setns(nsfile.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({path}): {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("frame sender thread panicked"))?
}

/// Sends each frame `count` times, `gap` apart.
pub fn send(
    ns: &str,
    iface: &str,
    frames: Vec<Vec<u8>>,
    count: usize,
    gap: Duration,
) -> Result<()> {
    let iface = iface.to_string();
    in_netns(ns, move || {
        let s = Sender::open(&iface)?;
        for i in 0..count {
            if i > 0 {
                thread::sleep(gap);
            }
            for f in &frames {
                s.send(f).context("sending a frame")?;
            }
        }
        Ok(())
    })
}

/// Sends `frame` as fast as possible for `dur` (or until `stop`); returns frames sent and seconds taken.
pub fn flood(
    ns: &str,
    iface: &str,
    frame: Vec<u8>,
    dur: Duration,
    stop: &'static AtomicBool,
) -> Result<(u64, f64)> {
    let iface = iface.to_string();
    in_netns(ns, move || {
        let s = Sender::open(&iface)?;
        let t = Instant::now();
        let mut sent = 0u64;
        while t.elapsed() < dur && !stop.load(Ordering::Relaxed) {
            for _ in 0..64 {
                match s.send(&frame) {
                    Ok(()) => sent += 1,
                    // A full queue just means we outran the link; keep pushing.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) => return Err(e).context("flooding"),
                }
            }
        }
        Ok((sent, t.elapsed().as_secs_f64()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let f = udp_broadcast([2, 0, 0, 0, 0, 1], Ipv4Addr::new(192, 0, 2, 13), 9);
        assert_eq!(checksum(0, &f[14..34]), 0);
        assert_eq!(f.len(), 14 + 20 + 8 + 20);
    }

    #[test]
    fn icmpv6_checksum_verifies() {
        let src: Ipv6Addr = "fe80::ff:fe00:13".parse().unwrap();
        let f = rogue_ra([2, 0, 0, 0, 0, 0x13], src, "2001:db8::".parse().unwrap());
        let icmp = &f[54..];
        let mut sum = 0u32;
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[22..54]);
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        for c in pseudo.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        assert_eq!(checksum(sum, icmp), 0);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]) as usize, icmp.len());
    }
}
