//! Sampled drop events: decoding the `EVENTS` ring buffer records
//! ([`filter_common::DropEvent`]), converting their CLOCK_MONOTONIC stamps to
//! wall time, rendering them (human line / JSON object), and reading the ring
//! buffer as its single consumer ([`EventReader`]).
//!
//! The ring buffer has one consumer position shared by every process that
//! maps it, so two readers would steal each other's events. [`EventReader`]
//! therefore holds an exclusive `flock` on
//! `/run/portguard/<escaped pin dir>.events.lock` (bpffs cannot hold regular
//! files) for as long as it lives.
//!
//! [`EventReader::wait`] blocks in `poll(2)` (the daemon reads events on a
//! thread of its own); `EventReader` also implements `AsFd` for callers that
//! want to poll it themselves.
use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{Read, Seek, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{MapData, RingBuf};
use filter_common::{DropEvent, Reason, EVENT_CAPTURE};
use serde_json::{json, Value};
use thiserror::Error;

use crate::{
    clock::{rfc3339, ClockOffset},
    parse::Mac,
    pinned::Pinned,
};

/// Where the single-consumer locks live.
pub const EVENTS_LOCK_DIR: &str = "/run/portguard";

/// Size of one ring buffer record.
pub const RECORD_SIZE: usize = core::mem::size_of::<DropEvent>();

// Field offsets of the record, checked against the shared type.
const OFF_TS: usize = core::mem::offset_of!(DropEvent, ts_ns);
const OFF_IFINDEX: usize = core::mem::offset_of!(DropEvent, ifindex);
const OFF_FRAME_LEN: usize = core::mem::offset_of!(DropEvent, frame_len);
const OFF_REASON: usize = core::mem::offset_of!(DropEvent, reason);
const OFF_MONITOR: usize = core::mem::offset_of!(DropEvent, monitor);
const OFF_IP_VERSION: usize = core::mem::offset_of!(DropEvent, ip_version);
const OFF_CAP_LEN: usize = core::mem::offset_of!(DropEvent, cap_len);
const OFF_ETHERTYPE: usize = core::mem::offset_of!(DropEvent, ethertype);
const OFF_VLAN: usize = core::mem::offset_of!(DropEvent, vlan);
const OFF_SRC_MAC: usize = core::mem::offset_of!(DropEvent, src_mac);
const OFF_DST_MAC: usize = core::mem::offset_of!(DropEvent, dst_mac);
const OFF_SRC_IP: usize = core::mem::offset_of!(DropEvent, src_ip);
const OFF_DST_IP: usize = core::mem::offset_of!(DropEvent, dst_ip);
const OFF_DATA: usize = core::mem::offset_of!(DropEvent, data);
const _: () = assert!(OFF_DATA + EVENT_CAPTURE == RECORD_SIZE);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event record of {0} bytes is shorter than {RECORD_SIZE}")]
    Short(usize),
}

/// One decoded drop (or monitor-mode would-drop) event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    pub ifindex: u32,
    /// Length of the whole frame.
    pub frame_len: u32,
    /// Raw reason code; [`Event::reason`] names it.
    pub reason_code: u8,
    /// The port was in monitor mode: the frame passed.
    pub monitor: bool,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// EtherType after an allowed VLAN tag.
    pub ethertype: u16,
    /// Outer VLAN ID, `None` when untagged.
    pub vlan: Option<u16>,
    /// Source/destination address (only for IPv4/IPv6 frames with a full header).
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    /// The captured head of the frame (at most `EVENT_CAPTURE` bytes).
    pub data: Vec<u8>,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_ne_bytes(x)
}

fn arr<const N: usize>(b: &[u8], o: usize) -> [u8; N] {
    let mut x = [0u8; N];
    x.copy_from_slice(&b[o..o + N]);
    x
}

/// Decodes one ring buffer record. Never panics: a short record is an error,
/// inconsistent fields are clamped (`cap_len` to `EVENT_CAPTURE`), unknown
/// reason codes are kept raw and an unknown `ip_version` means "no addresses".
pub fn decode(b: &[u8]) -> Result<Event, DecodeError> {
    if b.len() < RECORD_SIZE {
        return Err(DecodeError::Short(b.len()));
    }
    let ip_version = b[OFF_IP_VERSION];
    let (src_ip, dst_ip) = match ip_version {
        4 => {
            let s: [u8; 4] = arr(b, OFF_SRC_IP);
            let d: [u8; 4] = arr(b, OFF_DST_IP);
            (
                Some(IpAddr::V4(Ipv4Addr::from(s))),
                Some(IpAddr::V4(Ipv4Addr::from(d))),
            )
        }
        6 => {
            let s: [u8; 16] = arr(b, OFF_SRC_IP);
            let d: [u8; 16] = arr(b, OFF_DST_IP);
            (
                Some(IpAddr::V6(Ipv6Addr::from(s))),
                Some(IpAddr::V6(Ipv6Addr::from(d))),
            )
        }
        _ => (None, None),
    };
    let cap = (b[OFF_CAP_LEN] as usize).min(EVENT_CAPTURE);
    let vlan = match u16_at(b, OFF_VLAN) {
        0xffff => None,
        v => Some(v),
    };
    Ok(Event {
        ts_ns: u64_at(b, OFF_TS),
        ifindex: u32_at(b, OFF_IFINDEX),
        frame_len: u32_at(b, OFF_FRAME_LEN),
        reason_code: b[OFF_REASON],
        monitor: b[OFF_MONITOR] != 0,
        src_mac: Mac(arr(b, OFF_SRC_MAC)),
        dst_mac: Mac(arr(b, OFF_DST_MAC)),
        ethertype: u16_at(b, OFF_ETHERTYPE),
        vlan,
        src_ip,
        dst_ip,
        data: b[OFF_DATA..OFF_DATA + cap].to_vec(),
    })
}

/// Encodes an event as the kernel would write it (tests, fixtures).
pub fn encode(e: &DropEvent) -> Vec<u8> {
    let mut b = vec![0u8; RECORD_SIZE];
    b[OFF_TS..OFF_TS + 8].copy_from_slice(&e.ts_ns.to_ne_bytes());
    b[OFF_IFINDEX..OFF_IFINDEX + 4].copy_from_slice(&e.ifindex.to_ne_bytes());
    b[OFF_FRAME_LEN..OFF_FRAME_LEN + 4].copy_from_slice(&e.frame_len.to_ne_bytes());
    b[OFF_REASON] = e.reason;
    b[OFF_MONITOR] = e.monitor;
    b[OFF_IP_VERSION] = e.ip_version;
    b[OFF_CAP_LEN] = e.cap_len;
    b[OFF_ETHERTYPE..OFF_ETHERTYPE + 2].copy_from_slice(&e.ethertype.to_ne_bytes());
    b[OFF_VLAN..OFF_VLAN + 2].copy_from_slice(&e.vlan.to_ne_bytes());
    b[OFF_SRC_MAC..OFF_SRC_MAC + 6].copy_from_slice(&e.src_mac);
    b[OFF_DST_MAC..OFF_DST_MAC + 6].copy_from_slice(&e.dst_mac);
    b[OFF_SRC_IP..OFF_SRC_IP + 16].copy_from_slice(&e.src_ip);
    b[OFF_DST_IP..OFF_DST_IP + 16].copy_from_slice(&e.dst_ip);
    b[OFF_DATA..].copy_from_slice(&e.data);
    b
}

impl Event {
    pub fn reason(&self) -> Option<Reason> {
        Reason::from_u8(self.reason_code).filter(|r| *r != Reason::Pass)
    }

    /// The reason's public name, or `unknown_<code>`.
    pub fn reason_name(&self) -> String {
        match self.reason() {
            Some(r) => r.name().to_string(),
            None => format!("unknown_{}", self.reason_code),
        }
    }

    pub fn mode(&self) -> &'static str {
        if self.monitor {
            "monitor"
        } else {
            "enforce"
        }
    }

    /// Original frame length for a pcap record (never below the captured length).
    pub fn orig_len(&self) -> u32 {
        self.frame_len.max(self.data.len() as u32)
    }

    /// One JSON object (the `events --json` contract).
    pub fn to_json(&self, clock: &ClockOffset, port: &PortName) -> Value {
        let ip = |a: &Option<IpAddr>| match a {
            Some(a) => json!(a.to_string()),
            None => Value::Null,
        };
        json!({
            "ts": rfc3339(clock.wall_ns(self.ts_ns)),
            "iface": port.iface,
            "ifindex": self.ifindex,
            "tenant": port.tenant,
            "reason": self.reason_name(),
            "mode": self.mode(),
            "src_mac": self.src_mac.to_string(),
            "dst_mac": self.dst_mac.to_string(),
            "ethertype": format!("0x{:04x}", self.ethertype),
            "vlan": self.vlan,
            "src_ip": ip(&self.src_ip),
            "dst_ip": ip(&self.dst_ip),
            "len": self.frame_len,
            "cap_len": self.data.len(),
        })
    }

    /// One human-readable line.
    pub fn human(&self, clock: &ClockOffset, port: &PortName) -> String {
        let mut s = format!(
            "{} {} {} {} {} {} > {} 0x{:04x}",
            rfc3339(clock.wall_ns(self.ts_ns)),
            port.iface.as_deref().unwrap_or("?"),
            if port.tenant.is_empty() {
                "-"
            } else {
                port.tenant.as_str()
            },
            if self.monitor { "WOULD-DROP" } else { "DROP" },
            self.reason_name(),
            self.src_mac,
            self.dst_mac,
            self.ethertype,
        );
        if let Some(v) = self.vlan {
            s.push_str(&format!(" vlan {v}"));
        }
        if let (Some(a), Some(b)) = (&self.src_ip, &self.dst_ip) {
            s.push_str(&format!(" {a} > {b}"));
        }
        s.push_str(&format!(" len {}", self.frame_len));
        s
    }
}

/// What an event's port is called.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortName {
    /// Interface name from the port record, else from the kernel, else `None`.
    pub iface: Option<String>,
    /// Tenant label ("" when none or unknown).
    pub tenant: String,
}

/// ifindex -> name/tenant, from the port records, refreshed (at most once a
/// second) when an event names an unknown ifindex.
pub struct PortNames {
    map: HashMap<u32, PortName>,
    last_refresh: Option<Instant>,
}

impl Default for PortNames {
    fn default() -> Self {
        Self::new()
    }
}

impl PortNames {
    pub fn new() -> PortNames {
        PortNames {
            map: HashMap::new(),
            last_refresh: None,
        }
    }

    pub fn refresh(&mut self, p: &Pinned) -> Result<()> {
        self.map.clear();
        for info in p.ports()? {
            self.map.insert(
                info.ifindex,
                PortName {
                    iface: Some(info.ifname.clone()),
                    tenant: info.tenant.clone(),
                },
            );
        }
        self.last_refresh = Some(Instant::now());
        Ok(())
    }

    pub fn get(&mut self, p: &Pinned, ifindex: u32) -> PortName {
        if !self.map.contains_key(&ifindex)
            && self
                .last_refresh
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            let _ = self.refresh(p);
        }
        match self.map.get(&ifindex) {
            Some(n) => n.clone(),
            None => PortName {
                iface: crate::iface::name(ifindex),
                tenant: String::new(),
            },
        }
    }
}

/// Which events to keep.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub iface: Option<String>,
    /// Empty = every reason.
    pub reasons: Vec<Reason>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event, port: &PortName) -> bool {
        if let Some(i) = &self.iface {
            if port.iface.as_deref() != Some(i.as_str()) {
                return false;
            }
        }
        if !self.reasons.is_empty() && !e.reason().is_some_and(|r| self.reasons.contains(&r)) {
            return false;
        }
        true
    }
}

/// `systemd-escape`-style, injective: `/sys/fs/bpf/portguard` -> `sys-fs-bpf-portguard`.
pub fn escape_path(p: &Path) -> String {
    let s = p.as_os_str().as_encoded_bytes();
    let s = s.strip_prefix(b"/").unwrap_or(s);
    let s = s.strip_suffix(b"/").unwrap_or(s);
    let mut out = String::new();
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// The lock file serializing consumers of `pin_dir`'s ring buffer.
pub fn events_lock_path(pin_dir: &Path) -> PathBuf {
    let abs = fs::canonicalize(pin_dir).unwrap_or_else(|_| {
        if pin_dir.is_absolute() {
            pin_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(pin_dir))
                .unwrap_or_else(|_| pin_dir.to_path_buf())
        }
    });
    Path::new(EVENTS_LOCK_DIR).join(format!("{}.events.lock", escape_path(&abs)))
}

/// The exclusive consumer lock (released on drop).
#[derive(Debug)]
pub struct EventsLock {
    file: File,
    path: PathBuf,
}

impl EventsLock {
    /// Takes the lock without waiting; fails naming the holder's pid.
    pub fn acquire(pin_dir: &Path) -> Result<EventsLock> {
        let path = events_lock_path(pin_dir);
        fs::create_dir_all(EVENTS_LOCK_DIR)
            .with_context(|| format!("cannot create {EVENTS_LOCK_DIR}"))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        if let Err(e) = file.try_lock() {
            if let std::fs::TryLockError::Error(e) = e {
                bail!("cannot lock {}: {e}", path.display());
            }
            // The holder writes its pid right after locking; give it a moment.
            let mut holder = String::new();
            for _ in 0..10 {
                holder.clear();
                let _ = file.rewind();
                let _ = file.read_to_string(&mut holder);
                if !holder.trim().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let who = match holder.trim().parse::<u32>() {
                Ok(pid) => format!("process {pid}"),
                Err(_) => "another process".to_string(),
            };
            bail!(
                "{who} is already reading the drop events of {} (lock {}); the ring buffer has a single consumer: stop it first",
                pin_dir.display(),
                path.display()
            );
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(EventsLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EventsLock {
    fn drop(&mut self) {
        // The file stays (unlinking a lock file races with the next locker).
        let _ = self.file.set_len(0);
    }
}

/// The single consumer of a pin dir's `EVENTS` ring buffer.
pub struct EventReader {
    ring: RingBuf<MapData>,
    _lock: EventsLock,
}

impl EventReader {
    /// Takes the consumer lock, then the ring buffer of `p`.
    pub fn open(p: &mut Pinned) -> Result<EventReader> {
        let lock = EventsLock::acquire(p.dir())?;
        let map = p.take_events()?;
        let ring = RingBuf::try_from(map).context("map EVENTS is not a ring buffer")?;
        Ok(EventReader { ring, _lock: lock })
    }

    /// Consumes available records, decoding each, until the ring is empty or
    /// `f` returns `false`. Returns the number of records consumed.
    pub fn drain(&mut self, mut f: impl FnMut(Result<Event, DecodeError>) -> bool) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            let ev = decode(&item);
            drop(item);
            n += 1;
            if !f(ev) {
                break;
            }
        }
        n
    }

    /// Waits up to `timeout` for the ring to become readable (`poll(2)`).
    /// Returns `Ok(false)` on timeout or when interrupted by a signal.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.ring, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) => Ok(n > 0),
            // A signal (e.g. SIGINT ending `events --follow`).
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(anyhow!("poll on the EVENTS ring buffer: {e}")),
        }
    }
}

impl AsRawFd for EventReader {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl AsFd for EventReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DropEvent {
        let mut data = [0u8; EVENT_CAPTURE];
        for (i, d) in data.iter_mut().enumerate() {
            *d = i as u8;
        }
        DropEvent {
            ts_ns: 123_456_789_012,
            ifindex: 7,
            frame_len: 60,
            reason: Reason::Ipv4Spoof as u8,
            monitor: 1,
            ip_version: 4,
            cap_len: 60,
            ethertype: 0x0800,
            vlan: 0xffff,
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: [2, 0, 0, 0, 0, 2],
            _pad: 0,
            src_ip: [192, 0, 2, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst_ip: [192, 0, 2, 250, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            data,
        }
    }

    #[test]
    fn roundtrip_fields() {
        let e = decode(&encode(&sample())).unwrap();
        assert_eq!(e.ifindex, 7);
        assert_eq!(e.reason(), Some(Reason::Ipv4Spoof));
        assert!(e.monitor);
        assert_eq!(e.vlan, None);
        assert_eq!(e.data.len(), 60);
        assert_eq!(e.src_ip, Some("192.0.2.99".parse().unwrap()));
        let clock = ClockOffset {
            offset_ns: 1_700_000_000_000_000_000,
        };
        let port = PortName {
            iface: Some("vm1".into()),
            tenant: "acme".into(),
        };
        let j = e.to_json(&clock, &port);
        assert_eq!(j["ts"], "2023-11-14T22:15:23.456789012Z");
        assert_eq!(j["mode"], "monitor");
        assert_eq!(j["ethertype"], "0x0800");
        assert_eq!(j["vlan"], Value::Null);
        assert_eq!(j["src_mac"], "02:00:00:00:00:09");
        assert_eq!(j["dst_ip"], "192.0.2.250");
        assert_eq!(j["reason"], "ipv4_spoof");
        assert_eq!(j["len"], 60);
        let h = e.human(&clock, &port);
        assert!(h.contains("vm1 acme WOULD-DROP ipv4_spoof"), "{h}");
    }

    #[test]
    fn odd_values() {
        let mut s = sample();
        s.cap_len = 255;
        s.ip_version = 9;
        s.reason = 200;
        s.vlan = 100;
        let e = decode(&encode(&s)).unwrap();
        assert_eq!(e.data.len(), EVENT_CAPTURE);
        assert_eq!(e.src_ip, None);
        assert_eq!(e.reason_name(), "unknown_200");
        assert_eq!(e.vlan, Some(100));
        assert_eq!(e.orig_len(), EVENT_CAPTURE as u32);
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Short(10)));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape_path(Path::new("/sys/fs/bpf/portguard")),
            "sys-fs-bpf-portguard"
        );
        assert_eq!(escape_path(Path::new("/a-b/c")), "a\\x2db-c");
        assert_ne!(
            escape_path(Path::new("/a/b")),
            escape_path(Path::new("/a-b"))
        );
    }
}
