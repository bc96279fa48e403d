//! Types shared by the XDP program (`filter-ebpf`) and userspace (`filter-user`).
//!
//! Everything here crosses the kernel/user boundary through BPF maps, so every
//! type is `#[repr(C)]`, has explicit padding and a compile-time size check.
//! Bump [`LAYOUT_VERSION`] whenever any of them changes shape: userspace refuses
//! to reuse pinned maps written by a build with another layout.
#![no_std]

mod reason;

pub use reason::{Reason, N_REASONS};

/// Version of the pinned map layout (keys, values, map set). Stored in `META[0]`.
pub const LAYOUT_VERSION: u32 = 2;

/// Port slots of a pin directory whose maps are created without a chosen
/// capacity (`--max-ports`): slot 0 is reserved, so it holds 4,095 ports
/// (bindings or attached interfaces). The capacity is fixed when the maps are
/// created and read back from them afterwards (`PORTS`, `STATS`, `RATE` have
/// that many entries, `CONFIGS` twice as many).
pub const DEFAULT_MAX_PORTS: u32 = 4096;
/// The largest capacity `--max-ports` accepts: every slot costs
/// `size_of::<PortStats>()` bytes of counters on each possible CPU.
pub const MAX_PORTS_LIMIT: u32 = 1 << 16;
/// Entries of `PORT_INDEX`, the direct-mapped ifindex -> record cache (a power of two).
pub const PORT_INDEX_SLOTS: u32 = 1 << 16;
/// Exact addresses per family kept in the port record itself (no map lookup).
/// A binding with more host addresses of a family keeps all of them in `V*_ADDRS`.
pub const MAX_INLINE_ADDRS: usize = 4;
/// Maximum exact-address entries per family (all ports together, both generations).
pub const MAX_ADDRS: u32 = 1 << 22;
/// Maximum prefix entries per family.
pub const MAX_PREFIXES: u32 = 1 << 16;
/// Allowed extra EtherTypes per port.
pub const MAX_ETHERTYPES: usize = 8;
/// Allowed VLAN IDs per port.
pub const MAX_VLANS: usize = 16;
/// Bytes of the frame head copied into each drop event.
pub const EVENT_CAPTURE: usize = 128;
/// Size of the drop-event ring buffer.
pub const EVENTS_RINGBUF_BYTES: u32 = 1 << 20;
/// Maximum IPv6 extension headers walked before a frame is `malformed`.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// Maximum ND options inspected in one NS/NA before it is `nd_spoof`.
pub const MAX_ND_OPTIONS: usize = 4;
/// Maximum DHCPv4 options (pad bytes included) walked in a client message
/// before it is `dhcp_spoof` (docs/policy.md, DHCP).
pub const MAX_DHCP_OPTIONS: usize = 16;

/// `PortConfig::flags` bits.
pub mod flags {
    /// The port has at least one IPv4 prefix in `V4_PREFIXES` (consult the trie).
    pub const HAS_V4_PREFIX: u16 = 1 << 0;
    /// The port has at least one IPv6 prefix in `V6_PREFIXES`.
    pub const HAS_V6_PREFIX: u16 = 1 << 1;
    /// DHCP server and relay messages (anything to UDP 68/546, DHCPv6 server
    /// or relay types to 547) are allowed from this port, and its DHCP client
    /// messages are not inspected.
    pub const ALLOW_DHCP_SERVER: u16 = 1 << 2;
    /// Monitor mode: every check runs and is counted as a would-drop, the frame passes.
    pub const MONITOR: u16 = 1 << 3;
    /// The record holds a binding. Without it the port is attached but unbound:
    /// every frame is `unbound_port` (fail closed), counted in the port's slot.
    pub const BOUND: u16 = 1 << 4;
    /// The port's IPv4 host addresses are in `V4_ADDRS` (more than
    /// `MAX_INLINE_ADDRS` of them); otherwise they are all in `v4_inline`.
    pub const HAS_V4_TABLE: u16 = 1 << 5;
    /// The same for IPv6, `V6_ADDRS` and `v6_inline`.
    pub const HAS_V6_TABLE: u16 = 1 << 6;
    /// Userspace only: attached by a `[[guard]]` pattern (shown as
    /// guarded-unbound until a binding arrives). The data path ignores it.
    pub const GUARDED: u16 = 1 << 7;
}

/// One token bucket's configuration, as a GCRA: a frame conforms when the
/// bucket's theoretical arrival time is at most `tau_ns` ahead of now; each
/// conforming frame pushes it by `interval_ns`. `interval_ns == 0` disables the limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateCfg {
    pub interval_ns: u64,
    pub tau_ns: u64,
    /// As configured, for display (`interval_ns`/`tau_ns` are derived from them).
    pub pps: u32,
    pub burst: u32,
}

impl RateCfg {
    pub const DISABLED: RateCfg = RateCfg {
        interval_ns: 0,
        tau_ns: 0,
        pps: 0,
        burst: 0,
    };

    /// `pps == 0` means unlimited. `burst` is clamped to at least 1.
    pub const fn new(pps: u32, burst: u32) -> RateCfg {
        if pps == 0 {
            return RateCfg::DISABLED;
        }
        let burst = if burst == 0 { 1 } else { burst };
        let interval_ns = 1_000_000_000u64 / pps as u64;
        let interval_ns = if interval_ns == 0 { 1 } else { interval_ns };
        RateCfg {
            interval_ns,
            tau_ns: interval_ns * (burst as u64 - 1),
            pps,
            burst,
        }
    }
}

/// Where a port's live record is: `CONFIGS[cfg]`, with `cfg = slot * 2 + half`.
/// Value of `PORTS` (keyed by ifindex) and of `PORT_INDEX` (at `ifindex %
/// PORT_INDEX_SLOTS`, valid when its `ifindex` matches). A rebind writes the
/// other half of the slot, then flips `cfg`'s low bit: the only byte that
/// changes, so a reader sees the old or the new record, never a mix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRef {
    pub ifindex: u32,
    pub cfg: u32,
}

impl PortRef {
    pub const fn slot(&self) -> u32 {
        self.cfg >> 1
    }
}

/// The binding of one port, in `CONFIGS` (two halves per slot, see [`PortRef`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortConfig {
    // First 64 bytes: all that the IPv4/ARP path and drop accounting read, so
    // such a frame touches one cache line of its record.
    pub mac: [u8; 6],
    pub flags: u16,
    /// Address entries of this port are keyed with this generation; a rebind
    /// writes the next generation, then flips this field.
    pub generation: u32,
    pub ifindex: u32,
    /// Index of this port's counters in `STATS` and bucket state in `RATE` (1..capacity).
    pub slot: u32,
    pub n_v4_inline: u8,
    pub n_v6_inline: u8,
    pub n_ethertypes: u8,
    pub n_vlans: u8,
    /// IPv4 host addresses (network byte order, as read from the frame), first
    /// `n_v4_inline` valid; only without `HAS_V4_TABLE`.
    pub v4_inline: [u32; MAX_INLINE_ADDRS],
    pub events: RateCfg,
    // IPv6.
    /// fe80::/64 + modified EUI-64 of `mac`, always an allowed IPv6 source.
    pub eui64_ll: [u8; 16],
    /// IPv6 host addresses, first `n_v6_inline` valid; only without `HAS_V6_TABLE`.
    pub v6_inline: [[u8; 16]; MAX_INLINE_ADDRS],
    // Storm control, extra EtherTypes and VLANs.
    pub bcast: RateCfg,
    pub mcast: RateCfg,
    pub arp: RateCfg,
    /// Extra EtherTypes admitted (host byte order), first `n_ethertypes` valid.
    pub ethertypes: [u16; MAX_ETHERTYPES],
    /// VLAN IDs admitted for 802.1Q-tagged frames, first `n_vlans` valid.
    pub vlans: [u16; MAX_VLANS],
    // Not read by the data path.
    /// 0 not attached, `ATTACH_NATIVE`, `ATTACH_GENERIC` or `ATTACH_TC` (for `show`).
    pub attach_mode: u8,
    /// Why that mode (`portguard::attach_mode::AttachReason`), for `show`.
    pub attach_reason: u8,
    pub _pad: [u8; 6],
    /// Tenant label, NUL-padded UTF-8.
    pub tenant: [u8; 32],
    /// Interface name at bind time, NUL-padded.
    pub ifname: [u8; 16],
}

/// Key of `V4_ADDRS`, and (inside an LPM key, prefix length 64 + plen) of `V4_PREFIXES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct V4Key {
    pub ifindex: u32,
    pub generation: u32,
    /// Network byte order.
    pub addr: [u8; 4],
}

/// Key of `V6_ADDRS`, and (inside an LPM key, prefix length 64 + plen) of `V6_PREFIXES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct V6Key {
    pub ifindex: u32,
    pub generation: u32,
    pub addr: [u8; 16],
}

/// Key of `ADDR_INDEX`: the `idx`-th address of a port's generation. Userspace
/// only: it lists a port's entries without scanning the address maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexKey {
    pub ifindex: u32,
    pub generation: u32,
    pub idx: u32,
}

/// Value of `ADDR_INDEX`: one bound address or prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// 4 or 6.
    pub family: u8,
    pub prefix_len: u8,
    pub _pad: [u8; 2],
    /// IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

/// Bits of an LPM key's data before the address: ifindex + generation.
pub const LPM_PORT_BITS: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Per-port, per-CPU counters (`STATS`, a per-CPU array indexed by port slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStats {
    /// Frames the program passed (monitor-mode would-drops included).
    pub passed: Counter,
    /// Drop events suppressed by the per-port, per-reason sampling bucket
    /// (next to `passed`: a sampled-out drop touches this line and its reason's).
    pub sampled_out: u64,
    /// Drop events lost because the ring buffer was full.
    pub events_lost: u64,
    /// Indexed by `Reason as usize`; index 0 is unused.
    pub dropped: [Counter; N_REASONS],
    /// Monitor mode: what would have been dropped, by reason.
    pub would_drop: [Counter; N_REASONS],
}

impl PortStats {
    pub const ZERO: PortStats = PortStats {
        passed: Counter {
            packets: 0,
            bytes: 0,
        },
        dropped: [Counter {
            packets: 0,
            bytes: 0,
        }; N_REASONS],
        would_drop: [Counter {
            packets: 0,
            bytes: 0,
        }; N_REASONS],
        sampled_out: 0,
        events_lost: 0,
    };
}

/// Token-bucket state of one port (`RATE`, shared across CPUs, updated with
/// atomic compare-and-exchange so the limit holds whatever CPU a frame lands on).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    pub bcast_tat: u64,
    pub mcast_tat: u64,
    pub arp_tat: u64,
    pub _pad: u64,
    /// Event sampling, one bucket per reason.
    pub events_tat: [u64; N_REASONS],
}

pub const ATTACH_NATIVE: u8 = 1;
pub const ATTACH_GENERIC: u8 = 2;
/// The checks run as a tc ingress program (tcx link), not XDP.
pub const ATTACH_TC: u8 = 3;

/// A sampled drop (or monitor-mode would-drop), written to the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns); userspace converts to wall time.
    pub ts_ns: u64,
    pub ifindex: u32,
    /// Length of the whole frame.
    pub frame_len: u32,
    pub reason: u8,
    /// 1 when the port is in monitor mode (the frame passed).
    pub monitor: u8,
    /// 0 none, 4 or 6: which of `src_ip`/`dst_ip` are valid.
    pub ip_version: u8,
    /// Bytes valid in `data`.
    pub cap_len: u8,
    /// EtherType after an allowed VLAN tag (host byte order).
    pub ethertype: u16,
    /// Outer VLAN ID, or 0xffff when untagged.
    pub vlan: u16,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub _pad: u32,
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub data: [u8; EVENT_CAPTURE],
}

// The kernel and userspace must agree on these to the byte.
const _: () = assert!(core::mem::size_of::<RateCfg>() == 24);
const _: () = assert!(core::mem::size_of::<PortConfig>() == 320);
const _: () = assert!(core::mem::offset_of!(PortConfig, events) + 24 == 64);
const _: () = assert!(core::mem::size_of::<PortRef>() == 8);
const _: () = assert!(PORT_INDEX_SLOTS.is_power_of_two());
const _: () = assert!(core::mem::size_of::<V4Key>() == 12);
const _: () = assert!(core::mem::size_of::<V6Key>() == 24);
const _: () = assert!(core::mem::size_of::<IndexKey>() == 12);
const _: () = assert!(core::mem::size_of::<IndexEntry>() == 20);
const _: () = assert!(core::mem::size_of::<PortStats>() == 16 + 2 * 16 * N_REASONS + 16);
const _: () = assert!(core::mem::size_of::<RateState>() == 32 + 8 * N_REASONS);
const _: () = assert!(core::mem::size_of::<DropEvent>() == 72 + EVENT_CAPTURE);

/// Modified EUI-64 link-local address (fe80::/64) of a MAC (RFC 4291 appendix A).
pub const fn eui64_link_local(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: all of these are repr(C), Copy, with explicit padding fields and no
    // pointers, so every bit pattern is valid and none has implicit padding.
    unsafe impl aya::Pod for PortConfig {}
    unsafe impl aya::Pod for PortRef {}
    unsafe impl aya::Pod for V4Key {}
    unsafe impl aya::Pod for V6Key {}
    unsafe impl aya::Pod for IndexKey {}
    unsafe impl aya::Pod for IndexEntry {}
    unsafe impl aya::Pod for PortStats {}
    unsafe impl aya::Pod for RateState {}
    unsafe impl aya::Pod for DropEvent {}
}
