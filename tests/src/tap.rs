//! Tap ports for the netns suite: a persistent tap (with `vnet_hdr`) in a
//! lab's host namespace, joined to its bridge, and a "VM" that writes frames
//! into the tap's file descriptor behind a virtio-net header, as QEMU does
//! without vhost-net: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, a 12-byte header
//! (`TUNSETVNETHDRSZ`), checksum and TSO offloads (`TUNSETOFFLOAD`), and GSO
//! frames up to 64 KiB that the kernel segments on the way out.
use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use anyhow::{Context, Result};

use crate::{
    frames::{self as f, Mac},
    netns::{cmd, enter_netns, must, Lab},
};

// _IOW('T', n, int): linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// virtio_net_hdr_mrg_rxbuf, the 12 bytes QEMU puts before every frame.
pub const VNET_HDR_LEN: usize = 12;
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;

/// The virtio-net header of one frame (little-endian on the wire, as for a
/// modern virtio device).
#[derive(Clone, Copy, Debug, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        // num_buffers (10..12) is only meaningful host -> guest.
        b
    }
}

/// A tap port `name` on the lab's bridge, with the "VM" side open.
pub struct TapPort {
    pub name: String,
    pub host_ns: String,
    pub mac: Mac,
    tun: File,
}

impl TapPort {
    /// Creates the persistent tap in the lab's host netns (as libvirt does
    /// before starting QEMU), brings it up on the bridge and opens it.
    pub fn add(lab: &Lab, name: &str, mac: Mac) -> TapPort {
        must(&[
            "ip", "-n", &lab.host, "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr",
        ]);
        let tun = match open_tap(&lab.host, name) {
            Ok(t) => t,
            Err(e) => {
                let _ = cmd(&["ip", "-n", &lab.host, "link", "del", name]);
                panic!("open tap {name}: {e:#}");
            }
        };
        // From here on, Drop removes the tap.
        let port = TapPort {
            name: name.into(),
            host_ns: lab.host.clone(),
            mac,
            tun,
        };
        must(&[
            "ip",
            "-n",
            &lab.host,
            "link",
            "set",
            name,
            "master",
            &lab.bridge,
        ]);
        must(&["ip", "-n", &lab.host, "link", "set", name, "up"]);
        port
    }

    /// Writes one frame with the given header; returns the frame bytes written.
    pub fn write(&self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<usize> {
        let mut buf = Vec::with_capacity(VNET_HDR_LEN + frame.len());
        buf.extend_from_slice(&hdr.bytes());
        buf.extend_from_slice(frame);
        let n = (&self.tun).write(&buf)?;
        Ok(n.saturating_sub(VNET_HDR_LEN))
    }

    /// Writes a frame with an empty header (complete checksums, no GSO).
    pub fn write_plain(&self, frame: &[u8]) -> io::Result<usize> {
        self.write(&VnetHdr::default(), frame)
    }
}

impl Drop for TapPort {
    fn drop(&mut self) {
        let _ = cmd(&["ip", "-n", &self.host_ns, "link", "del", &self.name]);
    }
}

/// Opens `/dev/net/tun` as tap `name` of netns `ns` with QEMU's settings
/// (from a thread that enters the namespace: TUNSETIFF looks the name up there).
fn open_tap(ns: &str, name: &str) -> Result<File> {
    let (ns, name) = (ns.to_string(), name.to_string());
    std::thread::spawn(move || -> Result<File> {
        enter_netns(&ns)?;
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .context("opening /dev/net/tun")?;
        let fd = tun.as_raw_fd();
        // SAFETY: a zeroed ifreq with a NUL-terminated name (shorter than
        // IFNAMSIZ, checked) and flags, as TUNSETIFF reads it.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        anyhow::ensure!(name.len() < libc::IFNAMSIZ, "tap name {name:?} too long");
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads (and may update) the ifreq we own.
        if unsafe { libc::ioctl(fd, TUNSETIFF, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error()).context("TUNSETIFF");
        }
        let hdr_sz: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer.
        if unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ, &hdr_sz) } < 0 {
            return Err(io::Error::last_os_error()).context("TUNSETVNETHDRSZ");
        }
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD, offloads as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error()).context("TUNSETOFFLOAD");
        }
        Ok(tun)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("tap open thread panicked"))?
}

/// One TCP segment's worth of header fields for [`tcp_gso_frame`].
#[derive(Clone, Copy, Debug)]
pub struct TcpFlow {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
}

/// A TCP/IPv4 or TCP/IPv6 frame carrying `payload` (up to ~64 KiB) with the
/// virtio-net header a guest's TSO would give it: GSO with `mss`, checksum
/// left partial (the pseudo-header sum in the TCP checksum field, offsets in
/// the header). `mss` 0 means no GSO (a single frame, checksum still partial).
pub fn tcp_gso_frame(
    flow: &TcpFlow,
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    payload: &[u8],
    mss: u16,
) -> (VnetHdr, Vec<u8>) {
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&flow.sport.to_be_bytes());
    tcp.extend_from_slice(&flow.dport.to_be_bytes());
    tcp.extend_from_slice(&flow.seq.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    tcp.extend_from_slice(&[0x50, 0x18]); // 20-byte header, PSH|ACK
    tcp.extend_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let (et, pkt, l3_len, gso_type) = match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            let sum = pseudo_sum4(s, d, tcp.len());
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            (
                f::ETH_P_IP,
                f::ipv4(s, d, f::IPPROTO_TCP, &tcp),
                20,
                VIRTIO_NET_HDR_GSO_TCPV4,
            )
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            let sum = pseudo_sum6(s, d, tcp.len());
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            (
                f::ETH_P_IPV6,
                f::ipv6(s, d, f::IPPROTO_TCP, 64, &tcp),
                40,
                VIRTIO_NET_HDR_GSO_TCPV6,
            )
        }
        _ => panic!("mixed address families"),
    };
    let frame = f::eth(flow.dst_mac, flow.src_mac, et, &pkt);
    let csum_start = (14 + l3_len) as u16;
    let hdr = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: if mss == 0 {
            VIRTIO_NET_HDR_GSO_NONE
        } else {
            gso_type
        },
        hdr_len: csum_start + 20,
        gso_size: mss,
        csum_start,
        csum_offset: 16,
    };
    (hdr, frame)
}

/// Folded (not inverted) one's-complement sum of the TCP pseudo-header, what
/// a CHECKSUM_PARTIAL packet carries in its checksum field.
fn pseudo_sum4(s: Ipv4Addr, d: Ipv4Addr, len: usize) -> u16 {
    let mut b = Vec::new();
    b.extend_from_slice(&s.octets());
    b.extend_from_slice(&d.octets());
    b.extend_from_slice(&[0, f::IPPROTO_TCP]);
    b.extend_from_slice(&(len as u16).to_be_bytes());
    !f::inet_checksum(&b)
}

fn pseudo_sum6(s: Ipv6Addr, d: Ipv6Addr, len: usize) -> u16 {
    let mut b = Vec::new();
    b.extend_from_slice(&s.octets());
    b.extend_from_slice(&d.octets());
    b.extend_from_slice(&(len as u32).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, f::IPPROTO_TCP]);
    !f::inet_checksum(&b)
}
