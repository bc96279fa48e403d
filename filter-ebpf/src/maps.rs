//! Every map of the data path. All are pinned by name under `<pin-dir>/maps`,
//! so bindings, counters and bucket state outlive the loader and survive upgrades.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use filter_common::{
    DropEvent, IndexEntry, IndexKey, PortConfig, PortStats, RateState, V4Key, V6Key,
    EVENTS_RINGBUF_BYTES, MAX_ADDRS, MAX_PORTS, MAX_PREFIXES,
};

const NO_PREALLOC: u32 = aya_ebpf::bindings::BPF_F_NO_PREALLOC;

/// ifindex -> the port's binding (or its attach-only record).
#[map]
pub static PORTS: HashMap<u32, PortConfig> = HashMap::pinned(MAX_PORTS, 0);

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
pub static STATS: PerCpuArray<PortStats> = PerCpuArray::pinned(MAX_PORTS, 0);

/// Token-bucket state by port slot, shared by all CPUs (updated with cmpxchg).
#[map]
pub static RATE: Array<RateState> = Array::pinned(MAX_PORTS, 0);

/// Sampled drop events.
#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_RINGBUF_BYTES, 0);

/// (ifindex, generation, i) -> i-th bound address of that generation. Written
/// and read by userspace only, so a rebind never scans the address maps.
#[map]
pub static ADDR_INDEX: HashMap<IndexKey, IndexEntry> =
    HashMap::pinned(MAX_ADDRS + 2 * MAX_PREFIXES, NO_PREALLOC);

/// [0] = layout version of the maps above, written and checked by userspace.
#[map]
pub static META: Array<u32> = Array::pinned(1, 0);

/// Keeps the event type in the object's BTF/type info for tooling.
#[allow(dead_code)]
pub type Event = DropEvent;
