//! Event decoding and rendering never panic, whatever the ring buffer holds;
//! well-formed records round-trip; pcap output parses back.
use filter_common::{DropEvent, EVENT_CAPTURE};
use portguard::{
    clock::ClockOffset,
    events::{decode, encode, PortName, RECORD_SIZE},
    pcap::{self, PcapWriter, Precision},
};
use proptest::prelude::*;

fn clock() -> impl Strategy<Value = ClockOffset> {
    prop_oneof![
        Just(ClockOffset { offset_ns: 0 }),
        Just(ClockOffset {
            offset_ns: 1_700_000_000_000_000_000
        }),
        any::<i64>().prop_map(|o| ClockOffset {
            offset_ns: o as i128
        }),
        Just(ClockOffset {
            offset_ns: i128::MIN / 2
        }),
        Just(ClockOffset {
            offset_ns: i128::MAX / 2
        }),
    ]
}

fn port() -> impl Strategy<Value = PortName> {
    (proptest::option::of(".{0,15}"), ".{0,31}")
        .prop_map(|(iface, tenant)| PortName { iface, tenant })
}

fn drop_event() -> impl Strategy<Value = DropEvent> {
    (
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
        ),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            proptest::collection::vec(any::<u8>(), EVENT_CAPTURE),
        ),
    )
        .prop_map(
            |(
                (ts_ns, ifindex, frame_len, reason, monitor, ip_version, cap_len),
                (ethertype, vlan, src_mac, dst_mac),
                (src_ip, dst_ip, data),
            )| {
                let mut d = [0u8; EVENT_CAPTURE];
                d.copy_from_slice(&data);
                DropEvent {
                    ts_ns,
                    ifindex,
                    frame_len,
                    reason,
                    monitor,
                    ip_version,
                    cap_len,
                    ethertype,
                    vlan,
                    src_mac,
                    dst_mac,
                    _pad: 0,
                    src_ip,
                    dst_ip,
                    data: d,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes of any length: decode returns Ok/Err, rendering works.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..(RECORD_SIZE * 2)), c in clock(), p in port()) {
        match decode(&bytes) {
            Err(_) => prop_assert!(bytes.len() < RECORD_SIZE),
            Ok(e) => {
                prop_assert!(bytes.len() >= RECORD_SIZE);
                prop_assert!(e.data.len() <= EVENT_CAPTURE);
                let j = e.to_json(&c, &p);
                for k in ["ts", "iface", "ifindex", "tenant", "reason", "mode", "src_mac", "dst_mac", "ethertype", "vlan", "src_ip", "dst_ip", "len"] {
                    prop_assert!(j.get(k).is_some(), "missing {}", k);
                }
                prop_assert!(j["mode"] == "enforce" || j["mode"] == "monitor");
                let _ = e.human(&c, &p);
                let mut w = PcapWriter::new(Vec::new(), Precision::Nano).unwrap();
                w.write(c.wall_ns(e.ts_ns), &e.data, e.orig_len()).unwrap();
                let (lt, recs) = pcap::parse(&w.into_inner()).unwrap();
                prop_assert_eq!(lt, pcap::LINKTYPE_ETHERNET);
                prop_assert_eq!(recs.len(), 1);
                prop_assert_eq!(&recs[0].data, &e.data);
                prop_assert!(recs[0].orig_len as usize >= recs[0].data.len());
            }
        }
    }

    /// Whatever the kernel writes, the decoded fields are the written ones.
    #[test]
    fn roundtrip(ev in drop_event(), c in clock(), p in port()) {
        let e = decode(&encode(&ev)).unwrap();
        prop_assert_eq!(e.ts_ns, ev.ts_ns);
        prop_assert_eq!(e.ifindex, ev.ifindex);
        prop_assert_eq!(e.frame_len, ev.frame_len);
        prop_assert_eq!(e.reason_code, ev.reason);
        prop_assert_eq!(e.monitor, ev.monitor != 0);
        prop_assert_eq!(e.src_mac.0, ev.src_mac);
        prop_assert_eq!(e.dst_mac.0, ev.dst_mac);
        prop_assert_eq!(e.ethertype, ev.ethertype);
        prop_assert_eq!(e.vlan, (ev.vlan != 0xffff).then_some(ev.vlan));
        let cap = (ev.cap_len as usize).min(EVENT_CAPTURE);
        prop_assert_eq!(&e.data[..], &ev.data[..cap]);
        prop_assert_eq!(e.src_ip.is_some(), ev.ip_version == 4 || ev.ip_version == 6);
        let j = e.to_json(&c, &p);
        prop_assert_eq!(j["ethertype"].as_str().unwrap().len(), 6);
        if ev.vlan == 0xffff {
            prop_assert!(j["vlan"].is_null());
        }
        if ev.ip_version != 4 && ev.ip_version != 6 {
            prop_assert!(j["src_ip"].is_null() && j["dst_ip"].is_null());
        }
    }

    /// The pcap reader never panics on arbitrary bytes.
    #[test]
    fn pcap_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), magic in prop_oneof![Just(pcap::MAGIC_NANO), Just(pcap::MAGIC_MICRO), any::<u32>()]) {
        let mut b = magic.to_le_bytes().to_vec();
        b.extend_from_slice(&bytes);
        let _ = pcap::parse(&b);
        let _ = pcap::parse(&bytes);
    }
}
