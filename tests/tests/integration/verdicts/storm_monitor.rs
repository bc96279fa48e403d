//! Sections 7 and 8 of docs/policy.md: storm-control buckets, monitor mode, byte counts.
use super::*;

#[test]
fn s7_storm_control_buckets() {
    // pps 1 (one token per second) and small bursts: back-to-back frames in
    // a test run see no time passing worth a token.
    let b = with(|b| {
        b.broadcast = Limit { pps: 1, burst: 3 };
        b.multicast = Limit { pps: 1, burst: 2 };
        b.arp = Limit { pps: 1, burst: 4 };
    });
    let bcast = f::eth(f::BROADCAST, M, f::ETH_P_IP, &u4(own4()));
    let mcast = f::eth(
        f::ipv6_mcast_mac(f::ALL_NODES),
        M,
        f::ETH_P_IPV6,
        &u6(own6()),
    );
    let arpq = earp(&arp_req(M, own4()));
    let arp_reply_bcast = earp(&f::arp(f::ARP_REPLY, M, own4(), f::BROADCAST, own4()));
    let unicast = e4(&u4(own4()));
    let mut t = Vec::new();
    for i in 0..4 {
        t.push(row!(&format!("arp request {i}"), arpq.clone(), Pass));
    }
    t.extend(rows! {
        row!("arp request over", arpq.clone(), Drop(Reason::ArpLimit)),
        // An ARP reply to broadcast is charged to the broadcast bucket.
        row!("bcast 0 (arp reply)", arp_reply_bcast, Pass),
        row!("bcast 1", bcast.clone(), Pass),
        row!("bcast 2", bcast.clone(), Pass),
        row!("bcast over", bcast.clone(), Drop(Reason::BcastLimit)),
        row!("mcast 0", mcast.clone(), Pass),
        row!("mcast 1", mcast.clone(), Pass),
        row!("mcast over", mcast.clone(), Drop(Reason::McastLimit)),
    });
    for i in 0..50 {
        t.push(row!(&format!("unicast {i}"), unicast.clone(), Pass));
    }
    // Frames that fail earlier checks are not charged (and not limited).
    t.extend(rows! {
        row!("spoofed bcast", f::eth(f::BROADCAST, M, f::ETH_P_IP, &u4(peer4())), Drop(Reason::Ipv4Spoof)),
    });
    check(vec![(b, t)]);
}

#[test]
fn s7_pps_zero_disables_a_bucket() {
    let bcast = f::eth(f::BROADCAST, M, f::ETH_P_IP, &u4(own4()));
    let t = (0..100)
        .map(|i| row!(&format!("bcast {i}"), bcast.clone(), Pass))
        .collect();
    check(vec![(base(), t)]);
}

#[test]
fn s8_monitor_mode() {
    check(s8_monitor_mode_t());
}

pub(super) fn s8_monitor_mode_t() -> Vec<Phase> {
    let b = with(|b| {
        b.mode = Mode::Monitor;
        b.broadcast = Limit { pps: 1, burst: 1 };
    });
    let bcast = f::eth(f::BROADCAST, M, f::ETH_P_IP, &u4(own4()));
    vec![(
        b,
        rows! {
            row!("legit", e4(&u4(own4())), Pass),
            row!("mac spoof", f::eth(PEER, OTHER, f::ETH_P_IP, &u4(own4())), Drop(Reason::MacSpoof)),
            row!("vlan", f::vlan(PEER, M, 5, f::ETH_P_IP, &u4(own4())), Drop(Reason::Vlan)),
            row!("ipv4 spoof", e4(&u4(peer4())), Drop(Reason::Ipv4Spoof)),
            row!("arp spoof", earp(&arp_req(M, peer4())), Drop(Reason::ArpSpoof)),
            row!("ethertype", f::eth(PEER, M, 0x88b5, &[0; 46]), Drop(Reason::Ethertype)),
            row!("malformed", e4(&u4(own4())[..19]), Drop(Reason::Malformed)),
            row!("ipv6 spoof", e6(&u6(peer6())), Drop(Reason::Ipv6Spoof)),
            row!("nd spoof", e6(&ns(own6(), peer6(), &slla(OTHER))), Drop(Reason::NdSpoof)),
            row!("ra guard", e6(&f::ra(ll(), None, None)), Drop(Reason::RaGuard)),
            row!("dhcp server", e4(&f::udp4(own4(), peer4(), 67, 68, b"x")), Drop(Reason::DhcpServer)),
            row!("bcast within limit", bcast.clone(), Pass),
            row!("bcast over limit", bcast, Drop(Reason::BcastLimit)),
        },
    )]
}

#[test]
fn s8_counts_full_frame_length() {
    let mut rig = Rig::new(Some(base()));
    let frame = f::pad_to(e4(&u4(own4())), 1000);
    let before = rig.counters();
    for _ in 0..10 {
        assert_eq!(rig.run(&frame), XDP_PASS);
    }
    let d = sub_stats(&rig.counters(), &before);
    assert_eq!(d.passed.packets, 10);
    assert_eq!(d.passed.bytes, 10_000);
}
