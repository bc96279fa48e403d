//! How the data path finds a port's record (filter-common `PortRef`):
//! `PORT_INDEX[ifindex % PORT_INDEX_SLOTS]` when that entry is the port's,
//! else the `PORTS` hash; records in `CONFIGS`, two halves per slot; and the
//! two homes of a port's host addresses (inline in the record, or the
//! exact-address map beyond `MAX_INLINE_ADDRS`).
//!
//! Interfaces with chosen ifindexes (`ip link add ... index N`) in a private
//! network namespace; frames go through BPF_PROG_TEST_RUN from a thread
//! inside it (the kernel resolves `ingress_ifindex` in the caller's netns).
//!
//! Needs root. Run through `cargo xtask test`.
use std::{net::Ipv4Addr, path::Path};

use aya::maps::{Array, Map, MapData};
use filter_common::{
    flags, IndexEntry, IndexKey, PortRef, Reason, V4Key, V6Key, MAX_INLINE_ADDRS, PORT_INDEX_SLOTS,
};
use portguard::{
    binding::{Binding, Limit},
    parse::{IpNet, Mac as PMac},
    pinned::{NewOutcome, NewPort, Pinned},
    testrun::run_frame,
};
use portguard_tests::{
    frames::{self as f, Mac},
    netns::{cmd, enter_netns, map_max_entries, must, unique_id, PinDir},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const MAC_A: Mac = [0x02, 0, 0, 0, 0xa0, 0x01];
const MAC_B: Mac = [0x02, 0, 0, 0, 0xb0, 0x01];
/// Two ifindexes that share a PORT_INDEX entry.
const IFX_A: u32 = 7;
const IFX_B: u32 = 7 + PORT_INDEX_SLOTS;

/// A network namespace removed on drop (also on panic).
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = unique_id();
        must(&["ip", "netns", "add", &name]);
        Ns(name)
    }

    /// A veth (peer in the same namespace, both up) with the given ifindex.
    fn veth(&self, name: &str, ifindex: u32) {
        let peer = format!("{name}p");
        must(&[
            "ip",
            "-n",
            &self.0,
            "link",
            "add",
            "name",
            name,
            "index",
            &ifindex.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        must(&["ip", "-n", &self.0, "link", "set", name, "up"]);
        must(&["ip", "-n", &self.0, "link", "set", &peer, "up"]);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        cmd(&["ip", "netns", "del", &self.0]);
    }
}

fn binding(mac: Mac, ips: &[&str]) -> Binding {
    let ips = ips.iter().map(|s| s.parse::<IpNet>().unwrap()).collect();
    let mut b = Binding::new(PMac(mac), ips);
    let off = Limit { pps: 0, burst: 0 };
    b.broadcast = off;
    b.multicast = off;
    b.arp = off;
    b.normalize().unwrap()
}

fn udp(src_mac: Mac, src: Ipv4Addr) -> Vec<u8> {
    let pkt = f::udp4(src, f::v4("203.0.113.1"), 4000, 5000, b"portguard");
    f::eth_ipv4([0x02, 0, 0, 0, 0, 0xfe], src_mac, &pkt)
}

fn index_entry(pin: &Path, ifindex: u32) -> PortRef {
    let data = MapData::from_pin(pin.join("maps/PORT_INDEX")).expect("open PORT_INDEX");
    let arr: Array<MapData, PortRef> = Array::try_from(Map::Array(data)).unwrap();
    arr.get(&(ifindex % PORT_INDEX_SLOTS), 0).unwrap()
}

/// A namespace with these veths (name, ifindex) and a fresh pin dir.
fn setup(veths: &[(&str, u32)]) -> (Ns, PinDir) {
    let ns = Ns::new();
    for (name, ifindex) in veths {
        ns.veth(name, *ifindex);
    }
    (ns, PinDir::new())
}

/// Runs `body` with the maps of `pin`, on a thread inside `ns` (test_run
/// resolves ifindexes in the caller's namespace).
fn inside(ns: &Ns, pin: &PinDir, body: impl FnOnce(&mut Pinned) + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&ns.0).expect("setns");
            let mut p = Pinned::open(&pin.path).expect("Pinned::open");
            body(&mut p);
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

#[test]
fn ports_sharing_an_index_entry_are_both_enforced() {
    let (ns, pin) = setup(&[("pga", IFX_A), ("pgb", IFX_B)]);
    inside(&ns, &pin, |p| {
        p.bind(IFX_A, "pga", &binding(MAC_A, &["192.0.2.1"]))
            .unwrap();
        p.bind(IFX_B, "pgb", &binding(MAC_B, &["192.0.2.2"]))
            .unwrap();
        let a = udp(MAC_A, f::v4("192.0.2.1"));
        let b = udp(MAC_B, f::v4("192.0.2.2"));
        let run = |p: &mut Pinned, ifx: u32, frame: &[u8]| {
            run_frame(p.program().unwrap(), ifx, frame).unwrap()
        };

        // A holds the shared entry; B is found through PORTS.
        assert_eq!(index_entry(&pin.path, IFX_A).ifindex, IFX_A);
        assert_eq!(run(p, IFX_A, &a), XDP_PASS);
        assert_eq!(run(p, IFX_A, &b), XDP_DROP, "B's frame on A");
        assert_eq!(run(p, IFX_B, &b), XDP_PASS);
        assert_eq!(run(p, IFX_B, &a), XDP_DROP, "A's frame on B");
        assert_eq!(
            p.counters(IFX_B).unwrap().dropped[Reason::MacSpoof as usize].packets,
            1
        );
        assert_eq!(
            p.counters(IFX_A).unwrap().dropped[Reason::MacSpoof as usize].packets,
            1
        );

        // Rebinds of the port without the entry flip through PORTS alone.
        for i in 3..6u8 {
            let ip = format!("192.0.2.{i}");
            p.bind(IFX_B, "pgb", &binding(MAC_B, &[&ip])).unwrap();
            assert_eq!(run(p, IFX_B, &udp(MAC_B, f::v4(&ip))), XDP_PASS, "{ip}");
            assert_eq!(run(p, IFX_B, &b), XDP_DROP, "old address after rebind {i}");
        }

        // A goes away: its entry is freed and its frames meet no record.
        p.unbind(IFX_A).unwrap();
        assert_eq!(index_entry(&pin.path, IFX_A), PortRef::default());
        assert_eq!(run(p, IFX_A, &a), XDP_DROP);
        assert!(p.config(IFX_A).unwrap().is_none());

        // B's next change claims the entry; both ways of finding it agree.
        p.bind(IFX_B, "pgb", &binding(MAC_B, &["192.0.2.2"]))
            .unwrap();
        let e = index_entry(&pin.path, IFX_B);
        assert_eq!(e.ifindex, IFX_B);
        assert_eq!(p.config(IFX_B).unwrap().unwrap().slot, e.slot());
        assert_eq!(run(p, IFX_B, &b), XDP_PASS);
        assert_eq!(run(p, IFX_A, &a), XDP_DROP);

        // A comes back while B holds the entry: found through PORTS.
        p.bind(IFX_A, "pga", &binding(MAC_A, &["192.0.2.1"]))
            .unwrap();
        assert_eq!(index_entry(&pin.path, IFX_A).ifindex, IFX_B);
        assert_eq!(run(p, IFX_A, &a), XDP_PASS);
        assert_eq!(run(p, IFX_B, &b), XDP_PASS);
        assert_eq!(run(p, IFX_A, &b), XDP_DROP);
        let listed: Vec<u32> = p.ports().unwrap().iter().map(|i| i.ifindex).collect();
        assert_eq!(listed, vec![IFX_A, IFX_B]);
    });
}

#[test]
fn rebinds_alternate_the_halves_of_a_slot() {
    let (ns, pin) = setup(&[("pga", IFX_A)]);
    inside(&ns, &pin, |p| {
        p.bind(IFX_A, "pga", &binding(MAC_A, &["192.0.2.1"]))
            .unwrap();
        let first = index_entry(&pin.path, IFX_A);
        p.bind(IFX_A, "pga", &binding(MAC_A, &["192.0.2.9"]))
            .unwrap();
        let second = index_entry(&pin.path, IFX_A);
        assert_eq!(first.slot(), second.slot());
        assert_eq!(
            first.cfg ^ 1,
            second.cfg,
            "the flip changes the low bit only"
        );
        assert_eq!(
            run_frame(p.program().unwrap(), IFX_A, &udp(MAC_A, f::v4("192.0.2.1"))).unwrap(),
            XDP_DROP
        );
        assert_eq!(
            run_frame(p.program().unwrap(), IFX_A, &udp(MAC_A, f::v4("192.0.2.9"))).unwrap(),
            XDP_PASS
        );
    });
}

/// Host addresses beyond MAX_INLINE_ADDRS per family live in the exact-address
/// maps; rebinding between the two layouts leaves nothing of the other behind.
#[test]
fn addresses_move_between_the_record_and_the_maps() {
    let (ns, pin) = setup(&[("pga", IFX_A)]);
    let many: Vec<String> = (1..=MAX_INLINE_ADDRS + 2)
        .map(|i| format!("192.0.2.{i}"))
        .chain((1..=MAX_INLINE_ADDRS + 2).map(|i| format!("2001:db8::{i:x}")))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    inside(&ns, &pin, |p| {
        let run = |p: &mut Pinned, src: &str| {
            run_frame(p.program().unwrap(), IFX_A, &udp(MAC_A, f::v4(src))).unwrap()
        };
        let run6 = |p: &mut Pinned, src: &str| {
            let pkt = f::udp6(f::v6(src), f::v6("2001:db8:ffff::1"), 4000, 5000, b"pg");
            let frame = f::eth_ipv6([0x02, 0, 0, 0, 0, 0xfe], MAC_A, &pkt);
            run_frame(p.program().unwrap(), IFX_A, &frame).unwrap()
        };

        p.bind(IFX_A, "pga", &binding(MAC_A, &many)).unwrap();
        let c = p.config(IFX_A).unwrap().unwrap();
        assert_eq!(
            c.flags & (flags::HAS_V4_TABLE | flags::HAS_V6_TABLE),
            flags::HAS_V4_TABLE | flags::HAS_V6_TABLE
        );
        for i in 1..=MAX_INLINE_ADDRS + 2 {
            assert_eq!(run(p, &format!("192.0.2.{i}")), XDP_PASS, "table v4 {i}");
            assert_eq!(
                run6(p, &format!("2001:db8::{i:x}")),
                XDP_PASS,
                "table v6 {i}"
            );
        }
        assert_eq!(run(p, "192.0.2.99"), XDP_DROP);
        assert_eq!(run6(p, "2001:db8::99"), XDP_DROP);

        // Down to inline: the map entries of the old generation are gone and
        // the addresses no longer bound drop.
        p.bind(IFX_A, "pga", &binding(MAC_A, &["192.0.2.2", "2001:db8::2"]))
            .unwrap();
        let c = p.config(IFX_A).unwrap().unwrap();
        assert_eq!(c.flags & (flags::HAS_V4_TABLE | flags::HAS_V6_TABLE), 0);
        assert_eq!((c.n_v4_inline, c.n_v6_inline), (1, 1));
        assert_eq!(addr_entries(&pin.path), 0);
        assert_eq!(run(p, "192.0.2.2"), XDP_PASS);
        assert_eq!(run6(p, "2001:db8::2"), XDP_PASS);
        assert_eq!(run(p, "192.0.2.1"), XDP_DROP);
        assert_eq!(run6(p, "2001:db8::1"), XDP_DROP);
        let b = p.port(IFX_A).unwrap().unwrap().binding.unwrap();
        assert_eq!(b.ips.len(), 2, "show lists exactly the inline addresses");

        // And back to the maps.
        p.bind(IFX_A, "pga", &binding(MAC_A, &many)).unwrap();
        assert_eq!(addr_entries(&pin.path), 2 * (MAX_INLINE_ADDRS + 2));
        assert_eq!(
            run(p, &format!("192.0.2.{}", MAX_INLINE_ADDRS + 2)),
            XDP_PASS
        );
    });
}

/// Entries in a pinned hash map keyed by `K` (walks its keys).
fn map_len<K: aya::Pod>(pin: &Path, name: &str) -> usize {
    let data = MapData::from_pin(pin.join("maps").join(name)).unwrap();
    aya::maps::HashMap::<_, K, u8>::try_from(Map::HashMap(data))
        .unwrap()
        .keys()
        .count()
}

/// Exact-address entries of both families.
fn addr_entries(pin: &Path) -> usize {
    map_len::<V4Key>(pin, "V4_ADDRS") + map_len::<V6Key>(pin, "V6_ADDRS")
}

/// Slot allocation caches its scan of PORTS (a sync of N new ports would
/// otherwise be O(N^2)); two handles on one pin dir, as two processes would
/// hold them, allocating and freeing in turns must never share a slot.
#[test]
fn slots_stay_unique_across_handles_that_allocate_in_turns() {
    let pin = PinDir::new();
    let mut a = Pinned::open(&pin.path).expect("Pinned::open");
    let mut b = Pinned::open(&pin.path).expect("Pinned::open");
    let bind = |p: &mut Pinned, ifindex: u32| {
        p.bind(
            ifindex,
            &format!("pgs{ifindex}"),
            &binding(MAC_A, &["192.0.2.1"]),
        )
        .unwrap();
    };
    for i in 1000..1005 {
        bind(&mut a, i);
    }
    for i in 1005..1010 {
        bind(&mut b, i);
    }
    // `a` still holds its cache from before `b` allocated.
    for i in 1010..1015 {
        bind(&mut a, i);
    }
    a.unbind(1002).unwrap();
    b.unbind(1007).unwrap();
    for i in 1015..1020 {
        bind(&mut b, i);
        bind(&mut a, i + 100);
    }
    let mut slots: Vec<u32> = a.records().unwrap().iter().map(|c| c.slot).collect();
    // 3 x 5 bound, 2 unbound (their records go: not attached), 2 x 5 more.
    assert_eq!(slots.len(), 23, "{slots:?}");
    slots.sort_unstable();
    let n = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot was handed out twice: {slots:?}");
}

const MAC_C: Mac = [0x02, 0, 0, 0, 0xc0, 0x01];
const MAC_D: Mac = [0x02, 0, 0, 0, 0xd0, 0x01];

fn bind_new(p: &mut Pinned, ports: &[(u32, &str, &Binding)]) -> Vec<NewOutcome> {
    let batch: Vec<NewPort> = ports
        .iter()
        .map(|&(ifindex, ifname, binding)| NewPort {
            ifindex,
            ifname,
            binding,
        })
        .collect();
    p.bind_new(&batch).expect("bind_new")
}

/// `Pinned::bind_new` (an agent's sync of new ports, `apply` of a file of
/// them): two ports sharing an index entry, one with its addresses in the
/// maps and a prefix, one that has a record already and one with a group
/// MAC, in one batch. Each ends as one `bind` would leave it; the refused
/// one fails alone.
#[test]
fn a_batch_of_new_ports_binds_each_as_bind_would() {
    let (ns, pin) = setup(&[
        ("pga", IFX_A),
        ("pgb", IFX_B),
        ("pgc", 9),
        ("pgd", 10),
        ("pge", 11),
    ]);
    let many: Vec<String> = (1..=MAX_INLINE_ADDRS + 2)
        .map(|i| format!("192.0.2.{}", 20 + i))
        .chain(["198.51.100.0/28".to_string()])
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    inside(&ns, &pin, |p| {
        p.bind(10, "pgd", &binding(MAC_D, &["192.0.2.40"])).unwrap();
        let mut group = binding(MAC_D, &["192.0.2.50"]);
        group.mac = PMac([0x03, 0, 0, 0, 0xe0, 0x01]);
        let (a, b, c, d) = (
            binding(MAC_A, &["192.0.2.1"]),
            binding(MAC_B, &["192.0.2.2"]),
            binding(MAC_C, &many),
            binding(MAC_D, &["192.0.2.41"]),
        );
        let out = bind_new(
            p,
            &[
                (IFX_A, "pga", &a),
                (IFX_B, "pgb", &b),
                (9, "pgc", &c),
                (10, "pgd", &d),
                (11, "pge", &group),
            ],
        );
        for (k, ifindex) in [IFX_A, IFX_B, 9, 10].into_iter().enumerate() {
            let got = out[k]
                .result
                .as_ref()
                .unwrap_or_else(|e| panic!("{ifindex}: {e}"));
            let read = p.port(ifindex).unwrap().expect("a record");
            assert_eq!(
                got.binding, read.binding,
                "what bind_new says is what is pinned"
            );
            assert_eq!((got.slot, got.generation), (read.slot, read.generation));
        }
        assert!(out[0].before.is_none());
        assert_eq!(
            out[3].before.as_ref().and_then(|i| i.binding.clone()),
            Some(binding(MAC_D, &["192.0.2.40"])),
            "a port with a record goes through bind"
        );
        let err = out[4].result.as_ref().unwrap_err();
        assert!(err.contains("not a unicast address"), "{err}");
        assert!(
            p.port(11).unwrap().is_none(),
            "the refused port has no record"
        );

        let run = |p: &mut Pinned, ifx: u32, mac: Mac, src: &str| {
            run_frame(p.program().unwrap(), ifx, &udp(mac, f::v4(src))).unwrap()
        };
        // The first of the two claims the shared entry; the other is found through PORTS.
        assert_eq!(index_entry(&pin.path, IFX_A).ifindex, IFX_A);
        assert_eq!(run(p, IFX_A, MAC_A, "192.0.2.1"), XDP_PASS);
        assert_eq!(run(p, IFX_A, MAC_A, "192.0.2.2"), XDP_DROP);
        assert_eq!(run(p, IFX_B, MAC_B, "192.0.2.2"), XDP_PASS);
        assert_eq!(run(p, IFX_B, MAC_A, "192.0.2.1"), XDP_DROP);
        let c_rec = p.config(9).unwrap().unwrap();
        assert_eq!(c_rec.flags & flags::HAS_V4_TABLE, flags::HAS_V4_TABLE);
        for i in 1..=MAX_INLINE_ADDRS + 2 {
            let ip = format!("192.0.2.{}", 20 + i);
            assert_eq!(run(p, 9, MAC_C, &ip), XDP_PASS, "{ip}");
        }
        assert_eq!(run(p, 9, MAC_C, "198.51.100.5"), XDP_PASS, "prefix");
        assert_eq!(run(p, 9, MAC_C, "198.51.100.20"), XDP_DROP);
        assert_eq!(run(p, 10, MAC_D, "192.0.2.41"), XDP_PASS);
        assert_eq!(run(p, 10, MAC_D, "192.0.2.40"), XDP_DROP, "rebound");
        assert_eq!(run(p, 11, MAC_D, "192.0.2.50"), XDP_DROP, "no record");
        assert_eq!(addr_entries(&pin.path), MAX_INLINE_ADDRS + 2);

        let mut slots: Vec<u32> = p.records().unwrap().iter().map(|c| c.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 4, "{slots:?}");
        // The slot cache stays right for the next single bind.
        p.bind(11, "pge", &binding(MAC_D, &["192.0.2.50"])).unwrap();
        let mut slots: Vec<u32> = p.records().unwrap().iter().map(|c| c.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 5, "{slots:?}");
    });
}

/// A batch writer that dies after writing addresses (and records) but
/// before the `PORTS` flips leaves entries under generation 1 that nothing
/// names. The next batch must not make them visible: a port then passes
/// exactly its new addresses.
#[test]
fn leftovers_of_an_interrupted_batch_never_become_visible() {
    let (ns, pin) = setup(&[("pga", IFX_A)]);
    inside(&ns, &pin, |p| {
        // Written as the batch writes them: index entry, then address.
        let open = |name: &str| MapData::from_pin(pin.path.join("maps").join(name)).unwrap();
        let mut index: aya::maps::HashMap<_, IndexKey, IndexEntry> =
            aya::maps::HashMap::try_from(Map::HashMap(open("ADDR_INDEX"))).unwrap();
        let mut v4: aya::maps::HashMap<_, V4Key, u8> =
            aya::maps::HashMap::try_from(Map::HashMap(open("V4_ADDRS"))).unwrap();
        for idx in 0..(MAX_INLINE_ADDRS as u32 + 2) {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&[192, 0, 2, 90 + idx as u8]);
            let key = IndexKey {
                ifindex: IFX_A,
                generation: 1,
                idx,
            };
            let e = IndexEntry {
                family: 4,
                prefix_len: 32,
                _pad: [0; 2],
                addr,
            };
            index.insert(key, e, 0).unwrap();
            let k = V4Key {
                ifindex: IFX_A,
                generation: 1,
                addr: [addr[0], addr[1], addr[2], addr[3]],
            };
            v4.insert(k, 1, 0).unwrap();
        }
        assert!(p.port(IFX_A).unwrap().is_none(), "nothing names them");
        let run = |p: &mut Pinned, src: &str| {
            run_frame(p.program().unwrap(), IFX_A, &udp(MAC_A, f::v4(src))).unwrap()
        };
        assert_eq!(run(p, "192.0.2.90"), XDP_DROP);

        // A batch of two (a batch of one would be a plain bind anyway).
        let many: Vec<String> = (1..=MAX_INLINE_ADDRS + 1)
            .map(|i| format!("192.0.2.{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (a, group) = (binding(MAC_A, &many), {
            let mut g = binding(MAC_B, &["192.0.2.2"]);
            g.mac = PMac([0x01, 0, 0, 0, 0, 1]);
            g
        });
        let out = bind_new(p, &[(IFX_A, "pga", &a), (IFX_B, "pgb", &group)]);
        out[0].result.as_ref().unwrap();
        assert_eq!(p.config(IFX_A).unwrap().unwrap().generation, 1);
        for i in 0..(MAX_INLINE_ADDRS as u8 + 2) {
            let ip = format!("192.0.2.{}", 90 + i);
            assert_eq!(run(p, &ip), XDP_DROP, "leftover {ip} passed");
        }
        assert_eq!(run(p, "192.0.2.1"), XDP_PASS);
        assert_eq!(addr_entries(&pin.path), MAX_INLINE_ADDRS + 1);
        assert_eq!(
            p.port(IFX_A).unwrap().unwrap().binding.unwrap().ips.len(),
            MAX_INLINE_ADDRS + 1,
            "show lists the new addresses only"
        );
    });
}

/// A pin dir's port capacity is chosen when its maps are created
/// (`--max-ports`) and read back from them by every later open: a full pin
/// dir refuses the next port alone (batched or not), a freed slot is
/// reused, and a different capacity asked of existing maps changes nothing.
#[test]
fn capacity_is_chosen_at_creation_and_kept() {
    let pin = PinDir::new();
    let mut p = Pinned::open_sized(&pin.path, Some(8)).expect("Pinned::open_sized");
    assert_eq!(p.capacity(), 8);
    for (name, n) in [("PORTS", 8), ("CONFIGS", 16), ("STATS", 8), ("RATE", 8)] {
        assert_eq!(map_max_entries(&pin.path, name), n, "{name}");
    }
    let b = binding(MAC_A, &["192.0.2.1"]);
    let names: Vec<String> = (0..8).map(|i| format!("pgc{i}")).collect();
    let batch: Vec<(u32, &str, &Binding)> = (0..8)
        .map(|i| (2000 + i as u32, names[i].as_str(), &b))
        .collect();
    let out = bind_new(&mut p, &batch);
    for (i, o) in out[..7].iter().enumerate() {
        assert!(o.result.is_ok(), "port {i}: {:?}", o.result);
    }
    let err = out[7].result.as_ref().unwrap_err();
    assert!(err.contains("all 7 port slots"), "{err}");
    assert!(
        p.port(2007).unwrap().is_none(),
        "the refused port has no record"
    );
    let err = p.bind(2008, "pgc8", &b).unwrap_err().to_string();
    assert!(err.contains("all 7 port slots"), "{err}");
    assert_eq!(p.records().unwrap().len(), 7);

    p.unbind(2003).unwrap();
    p.bind(2008, "pgc8", &b).expect("a freed slot is reused");
    drop(p);

    let p = Pinned::open(&pin.path).unwrap();
    assert_eq!(p.capacity(), 8, "read back from the maps");
    let p = Pinned::open_sized(&pin.path, Some(64)).unwrap();
    assert_eq!(p.capacity(), 8, "existing maps keep their capacity");
    assert_eq!(map_max_entries(&pin.path, "STATS"), 8);
    assert_eq!(p.records().unwrap().len(), 7);
    assert!(
        Pinned::open_sized(&pin.path, Some(1)).is_err(),
        "out of range"
    );
}

/// Above the default capacity the data path is unchanged: a port in slot
/// 4,200 of a pin dir created for 4,201 is judged and counted in that slot.
#[test]
fn ports_beyond_the_default_capacity_are_enforced_and_counted() {
    const N: u32 = 4_201;
    let (ns, pin) = setup(&[("pga", IFX_A)]);
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&ns.0).expect("setns");
            let mut p = Pinned::open_sized(&pin.path, Some(N)).expect("open_sized");
            // Slots 1..N-1 for bindings without interfaces, the last for pga.
            let b = binding(MAC_B, &["192.0.2.9"]);
            let names: Vec<String> = (0..N - 2).map(|i| format!("pgf{i}")).collect();
            let batch: Vec<(u32, &str, &Binding)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (100_000 + i as u32, n.as_str(), &b))
                .collect();
            for o in bind_new(&mut p, &batch) {
                o.result.expect("filler port");
            }
            p.bind(IFX_A, "pga", &binding(MAC_A, &["192.0.2.1"]))
                .unwrap();
            let slot = p.port(IFX_A).unwrap().expect("record").slot;
            assert_eq!(slot, N - 1);
            let legit = udp(MAC_A, f::v4("192.0.2.1"));
            let spoof = udp(MAC_A, f::v4("192.0.2.9"));
            assert_eq!(
                run_frame(p.program().unwrap(), IFX_A, &legit).unwrap(),
                XDP_PASS
            );
            assert_eq!(
                run_frame(p.program().unwrap(), IFX_A, &spoof).unwrap(),
                XDP_DROP
            );
            let c = p.slot_counters(slot).unwrap();
            assert_eq!(c.passed.packets, 1);
            assert_eq!(c.dropped[Reason::Ipv4Spoof as usize].packets, 1);
            let err = p.bind(IFX_B, "pgb", &b).unwrap_err().to_string();
            assert!(err.contains(&format!("all {} port slots", N - 1)), "{err}");
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}
