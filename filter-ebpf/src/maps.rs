//! Every map of the data path. All are pinned by name under `<pin-dir>/maps`,
//! so bindings, counters and bucket state outlive the loader and survive upgrades.
//! The sizes given to `PORTS`, `CONFIGS`, `STATS` and `RATE` are defaults:
//! userspace sizes them for the pin dir's port capacity when it creates them.
//! The program never assumes a size: array lookups are bounded by the kernel.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, ProgramArray, RingBuf},
};
use filter_common::{
    DropEvent, IndexEntry, IndexKey, PortConfig, PortRef, PortStats, RateState, V4Key, V6Key,
    DEFAULT_MAX_PORTS, EVENTS_RINGBUF_BYTES, MAX_ADDRS, MAX_PREFIXES, PORT_INDEX_SLOTS,
};

const NO_PREALLOC: u32 = aya_ebpf::bindings::BPF_F_NO_PREALLOC;

/// ifindex -> where the port's live record is in `CONFIGS`. Every port has
/// one; the data path reads it only when `PORT_INDEX` does not hold the port.
#[map]
pub static PORTS: HashMap<u32, PortRef> = HashMap::pinned(DEFAULT_MAX_PORTS, 0);

/// `ifindex % PORT_INDEX_SLOTS` -> the same `PortRef`, when that entry is this
/// port's (its `ifindex` matches): one array lookup, which the verifier
/// inlines, instead of a hash lookup per frame. Ports whose entry another port
/// holds (ifindexes `PORT_INDEX_SLOTS` apart) are found through `PORTS`.
#[map]
pub static PORT_INDEX: Array<PortRef> = Array::pinned(PORT_INDEX_SLOTS, 0);

/// Port records, two halves per slot (`PortRef::cfg`); index 0 (slot 0) is
/// never written: all zero, it is the unbound record of interfaces with none.
#[map]
pub static CONFIGS: Array<PortConfig> = Array::pinned(2 * DEFAULT_MAX_PORTS, 0);

/// (ifindex, generation, address) -> 1: exact bound addresses, O(1).
#[map]
pub static V4_ADDRS: HashMap<V4Key, u8> = HashMap::pinned(MAX_ADDRS, NO_PREALLOC);
#[map]
pub static V6_ADDRS: HashMap<V6Key, u8> = HashMap::pinned(MAX_ADDRS, NO_PREALLOC);

/// Real prefixes only, consulted only for ports flagged `HAS_V*_PREFIX`.
#[map]
pub static V4_PREFIXES: LpmTrie<V4Key, u8> = LpmTrie::pinned(MAX_PREFIXES, 0);
#[map]
pub static V6_PREFIXES: LpmTrie<V6Key, u8> = LpmTrie::pinned(MAX_PREFIXES, 0);

/// Counters by port slot (`PortConfig::slot`); slot 0 counts ports with no record.
#[map]
pub static STATS: PerCpuArray<PortStats> = PerCpuArray::pinned(DEFAULT_MAX_PORTS, 0);

/// Token-bucket state by port slot, shared by all CPUs (updated with cmpxchg).
#[map]
pub static RATE: Array<RateState> = Array::pinned(DEFAULT_MAX_PORTS, 0);

/// Sampled drop events.
#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_RINGBUF_BYTES, 0);

/// (ifindex, generation, i) -> i-th bound address of that generation. Written
/// and read by userspace only, so a rebind never scans the address maps.
#[map]
pub static ADDR_INDEX: HashMap<IndexKey, IndexEntry> =
    HashMap::pinned(MAX_ADDRS + 2 * MAX_PREFIXES, NO_PREALLOC);

/// [0] = the tc program `portguard_skb` itself, set by userspace when it
/// loads it: a paged skb whose first look ended in a drop is judged again,
/// from the start, once its headers are pulled in (skb.rs). A tail call, not
/// a second inlined copy of the checks: the verifier then walks them once.
#[map]
pub static SKB_RETRY: ProgramArray = ProgramArray::pinned(1, 0);

/// [0] = layout version of the maps above, written and checked by userspace.
#[map]
pub static META: Array<u32> = Array::pinned(1, 0);

#[expect(
    dead_code,
    reason = "keeps the event type in the object's BTF/type info for tooling"
)]
pub type Event = DropEvent;
