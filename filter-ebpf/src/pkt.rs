//! Bounds-checked access to the frame. Every read of packet memory goes
//! through `Pkt::bytes` or `Pkt::header`, which compare against `data_end` right before the
//! pointer is formed, the shape the verifier can follow.
//!
//! Two lengths: reads are bounded by the bytes in reach (`start..end`),
//! length checks (IP total/payload length, BIG TCP) use the frame's length
//! on the wire. They are the same in XDP; in tc (`skb.rs`) an skb's paged
//! part is out of reach but still part of the frame.
use aya_ebpf::programs::{TcContext, XdpContext};
use filter_common::PortConfig;

/// Largest offset any parser may reach; keeps variable offsets provably bounded.
pub const MAX_OFFSET: usize = 0x3fff;

#[derive(Clone, Copy)]
pub struct Pkt {
    pub start: usize,
    pub end: usize,
    /// The frame's length (`skb->len` in tc; `end - start` in XDP).
    pub wire: usize,
    /// tc only: the 802.1Q/802.1ad tag the kernel carries outside the frame
    /// (`skb->vlan_*`), as (TPID, TCI). The kernel moves a frame's outer tag
    /// there before tc runs (and a VLAN device with tx offload never puts it
    /// in the frame); XDP sees in-band tags only.
    pub meta_tag: Option<(u16, u16)>,
}

impl Pkt {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Pkt {
        let (start, end) = (ctx.data(), ctx.data_end());
        Pkt {
            start,
            end,
            wire: end - start,
            meta_tag: None,
        }
    }

    /// The linear part of an skb in reach; `wire` covers its paged part too.
    #[inline(always)]
    pub fn skb(ctx: &TcContext) -> Pkt {
        let skb = ctx.skb.skb;
        // SAFETY: `skb` is the program's context; plain u32 ctx fields.
        let (present, proto, tci) =
            unsafe { ((*skb).vlan_present, (*skb).vlan_proto, (*skb).vlan_tci) };
        Pkt {
            start: ctx.data(),
            end: ctx.data_end(),
            wire: ctx.len() as usize,
            // vlan_proto holds the TPID in network byte order.
            meta_tag: (present != 0).then(|| (u16::from_be(proto as u16), tci as u16)),
        }
    }

    /// The frame's length on the wire (what counters and IP length checks use).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.wire
    }

    /// The length counters record: the frame on the wire, with a tag
    /// carried outside it.
    #[inline(always)]
    pub fn counted_len(&self) -> usize {
        if self.meta_tag.is_some() {
            self.wire + 4
        } else {
            self.wire
        }
    }

    /// Bytes in reach of `bytes`/`header`: all of them in XDP, the linear part of an skb.
    #[inline(always)]
    pub fn in_reach(&self) -> usize {
        self.end - self.start
    }

    /// The header `T` (a network-types layout) at `off`, or `None` when the
    /// frame is shorter. Only byte-aligned layouts: a frame offset gives no
    /// alignment, so a reference to anything more aligned would be unsound.
    #[inline(always)]
    pub fn header<T>(&self, off: usize) -> Option<&T> {
        const { assert!(core::mem::align_of::<T>() == 1) };
        let p = self.checked(off, core::mem::size_of::<T>())?;
        // SAFETY: [p, p + size_of::<T>()) lies inside the frame, T has
        // alignment 1 and is plain bytes (any bit pattern is valid).
        Some(unsafe { &*(p as *const T) })
    }

    /// `N` bytes at `off`, or `None` when the frame is shorter.
    #[inline(always)]
    pub fn bytes<const N: usize>(&self, off: usize) -> Option<&[u8; N]> {
        let p = self.checked(off, N)?;
        // SAFETY: [p, p + N) lies inside [data, data_end), checked by `checked`.
        Some(unsafe { &*(p as *const [u8; N]) })
    }

    /// The address of `off` when `n` bytes from there are inside the frame.
    #[inline(always)]
    fn checked(&self, off: usize, n: usize) -> Option<usize> {
        if off > MAX_OFFSET {
            return None;
        }
        let p = self.start + off;
        if p + n > self.end {
            return None;
        }
        Some(p)
    }
}

/// One frame under inspection, handed by reference through the L3/L4
/// parsers (katran's `packet_description`): its bounds, where the L3 header
/// starts (after an optional 802.1Q tag) and the record of the port it
/// arrived on.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    pub pkt: Pkt,
    pub l3: usize,
    pub port: &'a PortConfig,
}

impl Frame<'_> {
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.pkt.len()
    }

    /// `N` bytes at `off`, or `None` when the frame is shorter.
    #[inline(always)]
    pub fn bytes<const N: usize>(&self, off: usize) -> Option<&[u8; N]> {
        self.pkt.bytes(off)
    }

    /// The header `T` at `off` (see `Pkt::header`).
    #[inline(always)]
    pub fn header<T>(&self, off: usize) -> Option<&T> {
        self.pkt.header(off)
    }
}

/// Hides `v`'s provenance from LLVM. Logical bounds (IP length fields) are
/// checked against the frame length first; without this, LLVM proves later
/// packet bounds checks redundant and drops them, and the verifier, which
/// cannot follow that reasoning, rejects the access.
#[inline(always)]
pub fn opaque(v: usize) -> usize {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&v) }
}
