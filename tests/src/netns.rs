//! Network-namespace lab for end-to-end tests.
//!
//! A [`Lab`] owns, for one test:
//! * a "host" netns `pgt-<pid>-<n>-h` holding a Linux bridge `br0` and the
//!   host ends of the VM veths (`vm1`, `vm2`, ...; names are per-namespace so
//!   labs never collide);
//! * one netns per VM, `pgt-<pid>-<n>-v<i>`, with the VM end `eth0` carrying
//!   the VM's MAC and addresses;
//! * a pin directory `/sys/fs/bpf/pgt-<pid>-<n>`.
//!
//! Dropping the lab (also while unwinding from a panic) removes the pin
//! directory first (unlinking pinned links detaches the programs), then the
//! namespaces (which destroys every link in them). Nothing outside the lab's
//! own namespaces and pin directory is touched, except that bpffs is mounted
//! on /sys/fs/bpf if nothing is mounted there yet.
//!
//! Frames are injected and captured in-process with AF_PACKET sockets on
//! threads that `setns` into the VM's namespace ([`send_raw`], [`Capture`]).
use std::{
    ffi::CString,
    fs::File,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        mpsc, Arc, Once,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use crate::frames::Mac;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static STALE_CLEANUP: Once = Once::new();

pub const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Runs a command, returning its output (no status check).
pub fn cmd(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Runs a command and panics with its stderr if it fails.
pub fn must(argv: &[&str]) -> Output {
    let o = cmd(argv);
    if !o.status.success() {
        panic!(
            "{argv:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    o
}

/// Runs `argv` inside netns `ns` via `ip netns exec` (fine for ordinary
/// tools; NOT for portguard, see [`crate::cli`]).
pub fn run_in(ns: &str, argv: &[&str]) -> Output {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(argv);
    cmd(&v)
}

/// [`run_in`] that panics on failure.
pub fn must_in(ns: &str, argv: &[&str]) -> Output {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(argv);
    must(&v)
}

/// Makes sure a bpffs is mounted on /sys/fs/bpf (serialized across
/// processes with a lock file so parallel test binaries don't stack mounts).
pub fn ensure_bpffs() {
    if is_bpffs(Path::new(BPFFS)) {
        return;
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/pgt-bpffs.lock")
        .expect("open /run/pgt-bpffs.lock");
    // SAFETY: plain flock on an fd we own.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if !is_bpffs(Path::new(BPFFS)) {
        must(&["mount", "-t", "bpf", "bpf", BPFFS]);
    }
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_UN) };
}

fn is_bpffs(p: &Path) -> bool {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Removes namespaces and pin dirs left by earlier test processes that died
/// without unwinding (SIGKILL, abort). Only `pgt-<pid>-...` of dead pids.
fn cleanup_stale() {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    let stale = |name: &str| -> bool {
        let mut it = name.split('-');
        it.next() == Some("pgt")
            && it
                .next()
                .is_some_and(|pid| pid.chars().all(|c| c.is_ascii_digit()) && !alive(pid))
    };
    if let Ok(rd) = std::fs::read_dir(BPFFS) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if stale(&n) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if stale(&n) {
                let _ = cmd(&["ip", "netns", "del", &n]);
            }
        }
    }
}

/// A fresh `pgt-<pid>-<n>` name (also makes sure bpffs is mounted and
/// leftovers of dead test processes are gone).
pub fn unique_id() -> String {
    STALE_CLEANUP.call_once(cleanup_stale);
    ensure_bpffs();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("pgt-{}-{}", std::process::id(), n)
}

/// A unique pin directory `/sys/fs/bpf/pgt-<pid>-<n>` (created), removed
/// with everything in it on drop (also on panic).
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new() -> PinDir {
        let path = Path::new(BPFFS).join(unique_id());
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        PinDir { path }
    }
}

/// `max_entries` of map `name` pinned under `<pin_dir>/maps`.
pub fn map_max_entries(pin_dir: &Path, name: &str) -> u32 {
    aya::maps::MapInfo::from_pin(pin_dir.join("maps").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .max_entries()
}

impl Default for PinDir {
    fn default() -> Self {
        PinDir::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(crate::cli::audit_log_for(&self.path));
        crate::cli::remove_lock_files(&self.path);
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("removing {}: {e}", self.path.display());
            }
        }
    }
}

/// What one VM looks like.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub mac: Mac,
    /// Addresses configured on the VM's eth0 (with prefix length).
    pub v4: Vec<(Ipv4Addr, u8)>,
    pub v6: Vec<(Ipv6Addr, u8)>,
    /// Keep IPv6 enabled on the VM's eth0. Off by default: an IPv6-enabled
    /// interface sends DAD/MLD/RS on its own, which would disturb exact
    /// counter checks.
    pub ipv6: bool,
}

impl VmSpec {
    /// VM number `i` (1-based): MAC 02:00:00:00:00:<i>, 192.0.2.<i>/24 and
    /// (only configured when `ipv6` is set) 2001:db8::<i>/64.
    pub fn numbered(i: u8) -> VmSpec {
        VmSpec {
            mac: [0x02, 0, 0, 0, 0, i],
            v4: vec![(Ipv4Addr::new(192, 0, 2, i), 24)],
            v6: vec![(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16), 64)],
            ipv6: false,
        }
    }

    pub fn with_ipv6(mut self) -> VmSpec {
        self.ipv6 = true;
        self
    }
}

/// A VM of a [`Lab`].
#[derive(Clone, Debug)]
pub struct Vm {
    /// The VM's netns.
    pub ns: String,
    /// Interface inside the VM netns.
    pub iface: String,
    /// Host-side veth (in the lab's host netns), the port portguard guards.
    pub host_if: String,
    pub host_ifindex: u32,
    pub spec: VmSpec,
}

impl Vm {
    pub fn mac(&self) -> Mac {
        self.spec.mac
    }

    /// First IPv4 address.
    pub fn ip4(&self) -> Ipv4Addr {
        self.spec.v4[0].0
    }

    /// First IPv6 address.
    pub fn ip6(&self) -> Ipv6Addr {
        self.spec.v6[0].0
    }

    /// Sends raw frames out of the VM's eth0 (they reach the host-side veth's XDP hook).
    pub fn send(&self, frames: &[Vec<u8>]) {
        send_raw(&self.ns, &self.iface, frames).expect("send_raw")
    }

    /// Starts capturing frames arriving at the VM's eth0.
    pub fn capture(&self) -> Capture {
        Capture::start(&self.ns, &self.iface).expect("capture")
    }

    /// Runs a command in the VM netns.
    pub fn run(&self, argv: &[&str]) -> Output {
        run_in(&self.ns, argv)
    }
}

/// The lab; see the module docs.
pub struct Lab {
    /// `pgt-<pid>-<n>`: prefix of every namespace and the pin dir name.
    pub id: String,
    /// Host netns (bridge + host-side veths).
    pub host: String,
    pub bridge: String,
    pub pin_dir: PathBuf,
    pub vms: Vec<Vm>,
}

impl Lab {
    /// A lab with `n` numbered VMs ([`VmSpec::numbered`]).
    pub fn new(n: u8) -> Lab {
        Lab::with_vms((1..=n).map(VmSpec::numbered).collect())
    }

    /// A lab with the given VMs; host-side veths are named `vm1`, `vm2`, ...
    pub fn with_vms(specs: Vec<VmSpec>) -> Lab {
        let id = unique_id();
        let host = format!("{id}-h");
        let mut lab = Lab {
            pin_dir: Path::new(BPFFS).join(&id),
            host: host.clone(),
            bridge: "br0".into(),
            id: id.clone(),
            vms: Vec::new(),
        };
        // From here on, Drop cleans up whatever was created.
        must(&["ip", "netns", "add", &host]);
        std::fs::create_dir_all(&lab.pin_dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", lab.pin_dir.display()));
        must_in(
            &host,
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        );
        must_in(
            &host,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        );
        must(&["ip", "-n", &host, "link", "set", "lo", "up"]);
        must(&[
            "ip",
            "-n",
            &host,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        must(&["ip", "-n", &host, "link", "set", "br0", "up"]);
        for (i, spec) in specs.into_iter().enumerate() {
            let i = i + 1;
            let ns = format!("{id}-v{i}");
            let host_if = format!("vm{i}");
            must(&["ip", "netns", "add", &ns]);
            lab.vms.push(Vm {
                ns: ns.clone(),
                iface: "eth0".into(),
                host_if: host_if.clone(),
                host_ifindex: 0,
                spec: spec.clone(),
            });
            if !spec.ipv6 {
                must_in(&ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
                must_in(
                    &ns,
                    &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
                );
            } else {
                // No stray router solicitations; DAD is skipped per address (nodad).
                must_in(
                    &ns,
                    &[
                        "sysctl",
                        "-qw",
                        "net.ipv6.conf.default.router_solicitations=0",
                    ],
                );
                must_in(
                    &ns,
                    &["sysctl", "-qw", "net.ipv6.conf.all.router_solicitations=0"],
                );
                must_in(
                    &ns,
                    &["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"],
                );
            }
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            must(&[
                "ip", "-n", &host, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            let m = crate::frames::mac_str(&spec.mac);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "address", &m]);
            for (a, l) in &spec.v4 {
                must(&[
                    "ip",
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{a}/{l}"),
                    "dev",
                    "eth0",
                ]);
            }
            if spec.ipv6 {
                for (a, l) in &spec.v6 {
                    must(&[
                        "ip",
                        "-n",
                        &ns,
                        "-6",
                        "addr",
                        "add",
                        &format!("{a}/{l}"),
                        "dev",
                        "eth0",
                        "nodad",
                    ]);
                }
            }
            must(&["ip", "-n", &host, "link", "set", &host_if, "master", "br0"]);
            must(&["ip", "-n", &host, "link", "set", &host_if, "up"]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            let idx = ifindex_in(&host, &host_if).expect("host ifindex");
            lab.vms.last_mut().unwrap().host_ifindex = idx;
        }
        lab.wait_forwarding();
        lab
    }

    /// Waits until every bridge port is forwarding (forward_delay 0 makes it quick).
    fn wait_forwarding(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let o = cmd(&[
                "ip", "-n", &self.host, "-br", "link", "show", "master", "br0",
            ]);
            let s = String::from_utf8_lossy(&o.stdout);
            let up = s.lines().filter(|l| l.contains("UP")).count();
            if up >= self.vms.len() || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn vm(&self, i: usize) -> &Vm {
        &self.vms[i - 1]
    }

    /// Adds a device in the host netns (for error tests), e.g.
    /// `add_host_link(&["tuntap", "add", "mode", "tun", "dev", "tun0"])`
    /// (the words after `ip -n HOST`).
    pub fn host_ip(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "-n", self.host.as_str()];
        v.extend_from_slice(args);
        cmd(&v)
    }

    /// `vm`'s port counters, from `stats --json`.
    pub fn counters(&self, vm: &Vm) -> crate::cli::PortCounters {
        crate::cli::counters(&self.host, &self.pin_dir, &vm.host_if)
    }

    pub fn host_ifindex(&self, iface: &str) -> Option<u32> {
        ifindex_in(&self.host, iface)
    }

    /// Runs the portguard CLI in the host netns with this lab's pin dir.
    pub fn pg(&self, args: &[&str]) -> Output {
        crate::cli::portguard(&self.host, &self.pin_dir, args)
    }

    /// [`Lab::pg`] that panics on a non-zero exit.
    pub fn pg_ok(&self, args: &[&str]) -> Output {
        crate::cli::portguard_ok(&self.host, &self.pin_dir, args)
    }

    /// Names of the programs on `iface`'s tcx ingress chain, first to last
    /// (BPF_PROG_QUERY in the host netns; empty when none or no such interface).
    pub fn tcx_ingress(&self, iface: &str) -> Vec<String> {
        self.tcx_ingress_progs(iface)
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    /// (id, name) of the programs on `iface`'s tcx ingress chain.
    pub fn tcx_ingress_progs(&self, iface: &str) -> Vec<(u32, String)> {
        let (ns, iface) = (self.host.clone(), iface.to_string());
        thread::spawn(move || -> Vec<(u32, String)> {
            if enter_netns(&ns).is_err() {
                return Vec::new();
            }
            use aya::programs::{SchedClassifier, TcAttachType};
            match SchedClassifier::query_tcx(&iface, TcAttachType::Ingress) {
                Ok((_, progs)) => progs
                    .iter()
                    .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_string()))
                    .collect(),
                Err(_) => Vec::new(),
            }
        })
        .join()
        .unwrap_or_default()
    }

    /// How the checks run on `iface`, as the kernel reports it: "native" or
    /// "generic" (XDP, from `ip link`), "tc" (portguard's tc program on tcx
    /// ingress), or None: not attached.
    pub fn check_mode(&self, iface: &str) -> Option<String> {
        if let Some(m) = self.xdp_mode(iface) {
            return Some(m);
        }
        self.tcx_ingress(iface)
            .iter()
            .any(|n| n == "portguard_skb")
            .then(|| "tc".to_string())
    }

    /// XDP attachment as `ip -d link` reports it for a host-side interface:
    /// `Some("xdp")` (native), `Some("xdpgeneric")`, ... or None.
    pub fn xdp_mode(&self, iface: &str) -> Option<String> {
        let o = cmd(&[
            "ip", "-n", &self.host, "-d", "-j", "link", "show", "dev", iface,
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let x = v.get(0)?.get("xdp")?;
        let mode = x.get("mode")?.as_u64()?;
        // XDP_ATTACHED_DRV = 1, SKB = 2, HW = 3, MULTI = 4
        Some(
            match mode {
                1 => "native",
                2 => "generic",
                3 => "offload",
                4 => "multi",
                _ => "none",
            }
            .to_string(),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(crate::cli::audit_log_for(&self.pin_dir));
        crate::cli::remove_lock_files(&self.pin_dir);
        // Unlinking the pins releases the links, which detaches the programs.
        if let Err(e) = std::fs::remove_dir_all(&self.pin_dir) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("lab {}: removing {}: {e}", self.id, self.pin_dir.display());
            }
        }
        for vm in &self.vms {
            let _ = cmd(&["ip", "netns", "del", &vm.ns]);
        }
        let _ = cmd(&["ip", "netns", "del", &self.host]);
    }
}

/// ifindex of `iface` inside netns `ns`.
pub fn ifindex_in(ns: &str, iface: &str) -> Option<u32> {
    let o = cmd(&["ip", "-n", ns, "-j", "link", "show", "dev", iface]);
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    v.get(0)?.get("ifindex")?.as_u64().map(|i| i as u32)
}

// ---------------------------------------------------------------- AF_PACKET

/// Moves the calling thread into netns `ns` (only this thread).
pub fn enter_netns(ns: &str) -> Result<()> {
    let f = File::open(format!("/run/netns/{ns}")).with_context(|| format!("open netns {ns}"))?;
    // SAFETY: valid fd; CLONE_NEWNET only affects this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns}: {}", io::Error::last_os_error());
    }
    Ok(())
}

/// Opens an AF_PACKET raw socket bound to `iface` (in the current thread's netns).
/// `protocol` is the host-order EtherType to receive (0 = receive nothing).
pub fn packet_socket(iface: &str, protocol: u16) -> Result<(OwnedFd, i32)> {
    let proto_be = protocol.to_be();
    // SAFETY: plain syscalls with checked results.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto_be as i32,
        )
    };
    if fd < 0 {
        bail!("socket(AF_PACKET): {}", io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = CString::new(iface)?;
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
    if ifindex == 0 {
        bail!("no interface {iface}: {}", io::Error::last_os_error());
    }
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto_be;
    sll.sll_ifindex = ifindex;
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        bail!("bind AF_PACKET to {iface}: {}", io::Error::last_os_error());
    }
    Ok((fd, ifindex))
}

/// Sends `frames` (complete Ethernet frames, at least 14 bytes) out of
/// `iface` in netns `ns`, from a thread that enters the namespace.
pub fn send_raw(ns: &str, iface: &str, frames: &[Vec<u8>]) -> Result<()> {
    let ns = ns.to_string();
    let iface = iface.to_string();
    let frames = frames.to_vec();
    thread::spawn(move || -> Result<()> {
        enter_netns(&ns)?;
        let (fd, ifindex) = packet_socket(&iface, 0)?;
        for f in &frames {
            let n = send_frame(&fd, ifindex, f)
                .map_err(|e| anyhow!("sendto {iface} in {ns} ({} bytes): {e}", f.len()))?;
            if n != f.len() {
                bail!("short send on {iface}: {n} of {}", f.len());
            }
        }
        Ok(())
    })
    .join()
    .expect("send thread panicked")
}

/// Sends `frames` out of `iface` in netns `ns` as paged skbs: a packet
/// socket with a virtio-net header (PACKET_VNET_HDR) whose `hdr_len` asks
/// for only `linear` bytes in the skb's linear part. The kernel honours it
/// for frames of a page or more (the rest goes to page fragments), so their
/// headers lie beyond what a tc program reaches directly.
pub fn send_paged(ns: &str, iface: &str, frames: &[Vec<u8>], linear: u16) -> Result<()> {
    const PACKET_VNET_HDR: libc::c_int = 15;
    let (ns, iface, frames) = (ns.to_string(), iface.to_string(), frames.to_vec());
    thread::spawn(move || -> Result<()> {
        enter_netns(&ns)?;
        let (fd, ifindex) = packet_socket(&iface, 0)?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a plain int option on a valid socket.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_VNET_HDR,
                &on as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            bail!("PACKET_VNET_HDR on {iface}: {}", io::Error::last_os_error());
        }
        for f in &frames {
            // struct virtio_net_hdr: no checksum or GSO, only hdr_len.
            let mut buf = vec![0u8; 10];
            buf[2..4].copy_from_slice(&linear.to_le_bytes());
            buf.extend_from_slice(f);
            let n = send_frame(&fd, ifindex, &buf)
                .map_err(|e| anyhow!("sendto {iface} in {ns} ({} bytes): {e}", f.len()))?;
            if n != buf.len() {
                bail!("short send on {iface}: {n} of {}", buf.len());
            }
        }
        Ok(())
    })
    .join()
    .expect("send thread panicked")
}

/// Sends one complete Ethernet frame on a socket from [`packet_socket`];
/// returns the bytes sent.
pub fn send_frame(fd: &OwnedFd, ifindex: i32, frame: &[u8]) -> io::Result<usize> {
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    // The address is informational for SOCK_RAW; any 6 bytes do.
    sll.sll_addr[..6].copy_from_slice(&frame[..6.min(frame.len())]);
    // SAFETY: valid socket, buffer and address.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A running capture on one interface (incoming frames only). Stop it with
/// [`Capture::finish`].
pub struct Capture {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<Vec<Vec<u8>>>>>,
}

impl Capture {
    /// Starts capturing on `iface` in netns `ns`; returns once the socket is bound.
    pub fn start(ns: &str, iface: &str) -> Result<Capture> {
        let ns = ns.to_string();
        let iface = iface.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (tx, rx) = mpsc::channel::<Result<()>>();
        let handle = thread::spawn(move || -> Result<Vec<Vec<u8>>> {
            let setup = (|| -> Result<(OwnedFd, i32)> {
                enter_netns(&ns)?;
                let (fd, ifindex) = packet_socket(&iface, libc::ETH_P_ALL as u16)?;
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 20_000,
                };
                let one: libc::c_int = 1;
                // SAFETY: setsockopt with correctly sized option values.
                unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        &tv as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::timeval>() as u32,
                    );
                    // Room for bursts of 64 KiB GSO frames on a loaded machine.
                    let rcvbuf: libc::c_int = 16 << 20;
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUFFORCE,
                        &rcvbuf as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as u32,
                    );
                    // Ask for the VLAN tag the receive path strips into metadata.
                    if libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_PACKET,
                        libc::PACKET_AUXDATA,
                        &one as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as u32,
                    ) != 0
                    {
                        bail!("PACKET_AUXDATA: {}", io::Error::last_os_error());
                    }
                }
                Ok((fd, ifindex))
            })();
            let (fd, ifindex) = match setup {
                Ok(v) => {
                    let _ = tx.send(Ok(()));
                    v
                }
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("{e:#}")));
                    return Err(e);
                }
            };
            let mut out = Vec::new();
            let mut buf = vec![0u8; 65536];
            // Keep reading after `stop` until the socket is drained.
            loop {
                match recv_frame(&fd, &mut buf) {
                    Ok(Some((idx, pkttype, frame))) => {
                        if idx == ifindex && pkttype != libc::PACKET_OUTGOING {
                            out.push(frame);
                        }
                    }
                    Ok(None) => {
                        if stop2.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(Capture {
                stop,
                handle: Some(handle),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => match handle.join() {
                Ok(Err(e)) => Err(e),
                _ => bail!("capture thread died"),
            },
        }
    }

    /// Waits `settle` for in-flight frames, stops and returns every frame received.
    pub fn finish_after(mut self, settle: Duration) -> Vec<Vec<u8>> {
        thread::sleep(settle);
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("capture thread panicked")
            .expect("capture failed")
    }

    /// [`Capture::finish_after`] with a 300 ms settle time.
    pub fn finish(self) -> Vec<Vec<u8>> {
        self.finish_after(Duration::from_millis(300))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Receives one frame: `Ok(None)` on timeout, else (ifindex, pkttype,
/// frame) with a VLAN tag the kernel moved into metadata re-inserted, so
/// the frame reads as it was on the wire.
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> Result<Option<(i32, u8, Vec<u8>)>> {
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 16];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => bail!("recvmsg: {e}"),
        };
    }
    let mut frame = buf[..n as usize].to_vec();
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::tpacket_auxdata);
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && frame.len() >= 12 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        crate::frames::ETH_P_8021Q
                    };
                    let mut tag = tpid.to_be_bytes().to_vec();
                    tag.extend_from_slice(&aux.tp_vlan_tci.to_be_bytes());
                    frame.splice(12..12, tag);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some((sll.sll_ifindex, sll.sll_pkttype, frame)))
}

/// Captures on `iface` in `ns` for `duration` (blocking) and returns the frames.
pub fn capture(ns: &str, iface: &str, duration: Duration) -> Vec<Vec<u8>> {
    Capture::start(ns, iface)
        .expect("capture")
        .finish_after(duration)
}

/// Starts a capture on `rx_ns`/`rx_if`, sends `frames` from `tx_ns`/`tx_if`,
/// and returns how many captured frames equal one of the sent frames
/// (ignoring padding the receiver may see appended).
pub fn send_and_count(
    tx_ns: &str,
    tx_if: &str,
    rx_ns: &str,
    rx_if: &str,
    frames: &[Vec<u8>],
) -> usize {
    let cap = Capture::start(rx_ns, rx_if).expect("capture");
    send_raw(tx_ns, tx_if, frames).expect("send_raw");
    let got = cap.finish();
    got.iter()
        .filter(|g| frames.iter().any(|f| frame_matches(g, f)))
        .count()
}

/// `got` is `sent`, up to trailing zero padding added or removed on the way
/// (the bridge path trims Ethernet padding after the IP packet).
pub fn frame_matches(got: &[u8], sent: &[u8]) -> bool {
    let n = got.len().min(sent.len());
    got[..n] == sent[..n] && got[n..].iter().chain(&sent[n..]).all(|&b| b == 0)
}
