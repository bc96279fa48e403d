//! A userspace "VM NIC" for the tap case of Tier D: moves frames between a
//! veth (the sending namespace's stack on the other end) and a tap's file
//! descriptor, both with virtio-net headers, as QEMU's userspace virtio-net
//! does without vhost. GSO frames (TSO up to 64 KiB) cross whole in both
//! directions: the packet socket reads them with PACKET_VNET_HDR, the tap
//! takes them with IFF_VNET_HDR and offloads TUN_F_CSUM|TSO4|TSO6.
use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
};

use anyhow::{anyhow, bail, Context, Result};

use super::sys;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// A 64 KiB GSO frame plus the 10-byte virtio_net_hdr, with room to spare.
const BUF: usize = 128 * 1024;
/// sizeof(struct virtio_net_hdr), the default of both ends.
const VNET_HDR: u64 = 10;

/// The relay: two threads, stopped and joined on drop.
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
    /// Frames moved (VM to tap, tap to VM).
    pub frames: [Arc<AtomicU64>; 2],
    /// Bytes of those frames (without the virtio-net header).
    pub bytes: [Arc<AtomicU64>; 2],
    /// Those larger than a 1514-byte Ethernet frame: GSO frames.
    pub gso: [Arc<AtomicU64>; 2],
}

/// Opens the existing tap `tap` in netns `tap_ns` with a virtio-net header
/// and the offloads a virtio-net guest offers.
fn open_tap(tap_ns: &str, tap: &str) -> Result<OwnedFd> {
    let (ns, name) = (tap_ns.to_string(), tap.to_string());
    // tun binds a device by name in the netns of the opening thread.
    thread::spawn(move || -> Result<OwnedFd> {
        sys::enter_netns(&ns)?;
        let f = File::options()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .context("opening /dev/net/tun")?;
        let fd = OwnedFd::from(f);
        #[repr(C)]
        struct IfReq {
            name: [u8; 16],
            flags: libc::c_short,
            _pad: [u8; 22],
        }
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF/TUNSETOFFLOAD with a correctly laid out ifreq / a plain integer.
        unsafe {
            if libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) != 0 {
                bail!("TUNSETIFF {name}: {}", io::Error::last_os_error());
            }
            if libc::ioctl(
                fd.as_raw_fd(),
                TUNSETOFFLOAD,
                TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
            ) != 0
            {
                bail!("TUNSETOFFLOAD {name}: {}", io::Error::last_os_error());
            }
        }
        Ok(fd)
    })
    .join()
    .map_err(|_| anyhow!("tap open thread panicked"))?
}

/// An AF_PACKET socket on `iface` (netns `ns`) exchanging frames with a
/// virtio_net_hdr in front, ignoring its own transmissions.
fn open_packet(ns: &str, iface: &str) -> Result<OwnedFd> {
    let (ns, iface) = (ns.to_string(), iface.to_string());
    thread::spawn(move || -> Result<OwnedFd> {
        sys::enter_netns(&ns)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket syscalls with checked results.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto as i32,
            )
        };
        if fd < 0 {
            bail!("socket(AF_PACKET): {}", io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let set = |level, opt, v: libc::c_int| -> Result<()> {
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    level,
                    opt,
                    &v as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            if r != 0 {
                bail!("setsockopt {opt}: {}", io::Error::last_os_error());
            }
            Ok(())
        };
        set(libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
        set(libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20)?;
        set(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 16 << 20)?;
        let c = CString::new(iface.clone())?;
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
        if ifindex == 0 {
            bail!("no interface {iface}");
        }
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            bail!("bind AF_PACKET {iface}: {}", io::Error::last_os_error());
        }
        Ok(fd)
    })
    .join()
    .map_err(|_| anyhow!("packet socket thread panicked"))?
}

/// Waits up to 100 ms for `fd` to be readable.
fn readable(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 100) > 0 }
}

/// Copies frames from `from` to `to` until `stop` (read/write keep each
/// frame and its header whole; a frame the receiver cannot take is dropped,
/// as a NIC would).
fn pump(
    from: Arc<OwnedFd>,
    to: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    n: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    gso: Arc<AtomicU64>,
) -> Result<()> {
    let mut buf = vec![0u8; BUF];
    while !stop.load(Ordering::Relaxed) {
        if !readable(&from) {
            continue;
        }
        // SAFETY: reading into / writing from our own buffer.
        let r = unsafe {
            libc::read(
                from.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                continue;
            }
            bail!("relay read: {e}");
        }
        let w = unsafe {
            libc::write(
                to.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                r as usize,
            )
        };
        if w < 0 {
            let e = io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
            ) {
                bail!("relay write ({r} bytes): {e}");
            }
        }
        n.fetch_add(1, Ordering::Relaxed);
        let len = (r as u64).saturating_sub(VNET_HDR);
        bytes.fetch_add(len, Ordering::Relaxed);
        if len > 1514 {
            gso.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

impl Relay {
    /// Relays between `vm_if` (a veth end in `vm_ns`) and the tap `tap` in `tap_ns`.
    pub fn start(vm_ns: &str, vm_if: &str, tap_ns: &str, tap: &str) -> Result<Relay> {
        let tapfd = Arc::new(open_tap(tap_ns, tap)?);
        let pkt = Arc::new(open_packet(vm_ns, vm_if)?);
        let stop = Arc::new(AtomicBool::new(false));
        let frames = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let bytes = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let gso = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let mut threads = Vec::new();
        for (i, (from, to)) in [(pkt.clone(), tapfd.clone()), (tapfd, pkt)]
            .into_iter()
            .enumerate()
        {
            let (s, n, b, g) = (
                stop.clone(),
                frames[i].clone(),
                bytes[i].clone(),
                gso[i].clone(),
            );
            threads.push(
                thread::Builder::new()
                    .name(format!("relay-{i}"))
                    .spawn(move || pump(from, to, s, n, b, g))?,
            );
        }
        Ok(Relay {
            stop,
            threads,
            frames,
            bytes,
            gso,
        })
    }

    /// Stops both threads; an error either hit is returned.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut res = Ok(());
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => res = Err(e),
                Err(_) => res = Err(anyhow!("relay thread panicked")),
            }
        }
        res
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
