//! Section 6 of docs/policy.md: the IPv6 header and sources, extension headers, RA guard and ICMPv6 types.
use super::*;

#[test]
fn s6_ipv6_header_and_sources() {
    check(s6_ipv6_header_and_sources_t());
}

pub(super) fn s6_ipv6_header_and_sources_t() -> Vec<Phase> {
    let good = u6(own6());
    vec![(
        base(),
        rows! {
            row!("legit udp", e6(&good), Pass),
            row!("39 bytes", e6(&good[..39]), Drop(Reason::Malformed)),
            row!("0 bytes", e6(&[]), Drop(Reason::Malformed)),
            row!("version 4 in 0x86dd", e6(&{ let mut p = good.clone(); p[0] = 0x40; p }), Drop(Reason::Malformed)),
            row!("traffic class/flow label set", e6(&{ let mut p = good.clone(); p[0] = 0x6f; p[1] = 0xff; p[3] = 0x12; p }), Pass),
            row!("payload length > frame by 1", e6(&plen(good.clone(), good.len() as u16 - 40 + 1)), Drop(Reason::Malformed)),
            row!("payload length 0xffff", e6(&plen(good.clone(), 0xffff)), Drop(Reason::Malformed)),
            row!("padded after payload", f::pad_to(e6(&good), 120), Pass),
            row!("no next header (59), empty payload", e6(&v6raw(own6(), f::IPPROTO_NONE, 64, &[])), Pass),
            // BIG TCP's payload length 0 holds only past 65535 bytes (model tests).
            row!("payload length 0 on a 1500-byte udp packet (not a super-frame)", e6(&plen(f::udp6(own6(), peer6(), 40000, 9, &[0; 1452]), 0)), Drop(Reason::Malformed)),
            row!("payload length 0, jumbo hop-by-hop option, 1500-byte packet", e6(&plen(v6raw(own6(), 0, 64, &[&[6, 0, 0xc2, 4, 0, 0, 5, 0xb4][..], &[0; 1452]].concat()), 0)), Drop(Reason::Malformed)),
            row!("header only, udp claimed, payload 0", e6(&v6raw(own6(), f::IPPROTO_UDP, 64, &[])), Drop(Reason::Malformed)),
            row!("udp 7 bytes", e6(&v6raw(own6(), f::IPPROTO_UDP, 64, &[0; 7])), Drop(Reason::Malformed)),
            row!("udp 8 bytes", e6(&v6raw(own6(), f::IPPROTO_UDP, 64, &[0; 8])), Pass),
            row!("udp 8 bytes present but payload length 7", e6(&plen(v6raw(own6(), f::IPPROTO_UDP, 64, &[0; 8]), 7)), Drop(Reason::Malformed)),
            row!("tcp, 0 bytes", e6(&v6raw(own6(), f::IPPROTO_TCP, 64, &[])), Pass),
            // sources
            row!("src exact", e6(&u6(own6())), Pass),
            row!("src in prefix", e6(&u6(pfx6())), Pass),
            row!("src prefix base", e6(&u6(f::v6("2001:db8:1::"))), Pass),
            row!("src EUI-64 link-local", e6(&u6(ll())), Pass),
            row!("src other link-local", e6(&u6(f::v6("fe80::1"))), Drop(Reason::Ipv6Spoof)),
            row!("src LL of another MAC", e6(&u6(f::eui64_ll(PEER))), Drop(Reason::Ipv6Spoof)),
            row!("src peer", e6(&u6(peer6())), Drop(Reason::Ipv6Spoof)),
            row!("src next /64", e6(&u6(f::v6("2001:db8:2::1"))), Drop(Reason::Ipv6Spoof)),
            row!("src prefix but other /64", e6(&u6(f::v6("2001:db8:1:1::1"))), Drop(Reason::Ipv6Spoof)),
            row!("src multicast", e6(&u6(f::v6("ff02::1"))), Drop(Reason::Ipv6Spoof)),
            row!("src ::1", e6(&u6(Ipv6Addr::LOCALHOST)), Drop(Reason::Ipv6Spoof)),
            row!("src :: udp", e6(&u6(UNSPEC6)), Drop(Reason::Ipv6Spoof)),
            row!("src :: echo", e6(&f::icmpv6_echo(UNSPEC6, peer6(), 1, 1, b"")), Drop(Reason::Ipv6Spoof)),
            row!("src :: RS", e6(&f::rs(UNSPEC6, None)), Drop(Reason::Ipv6Spoof)),
            row!("src :: NA", e6(&na(UNSPEC6, own6(), &[])), Drop(Reason::Ipv6Spoof)),
            row!("src :: RA", e6(&f::ra(UNSPEC6, None, None)), Drop(Reason::Ipv6Spoof)),
            row!("src :: DAD NS", e6(&f::nd_dad(own6())), Pass),
            row!("src :: DAD NS for a foreign target", e6(&f::nd_dad(f::v6("2001:db8::99:1234"))), Drop(Reason::NdSpoof)),
            row!("src :: DAD NS inside bound prefix", e6(&f::nd_dad(pfx6())), Pass),
            row!("src :: DAD NS for the EUI-64 LL", e6(&f::nd_dad(ll())), Pass),
            row!("src :: DAD NS for another LL", e6(&f::nd_dad(f::eui64_ll(PEER))), Drop(Reason::NdSpoof)),
            row!("src :: DAD NS for a neighbour's address", e6(&f::nd_dad(peer6())), Drop(Reason::NdSpoof)),
            row!("src :: NS to wrong solicited-node", e6(&f::nd_ns(UNSPEC6, f::solicited_node(peer6()), own6(), None)), Drop(Reason::Ipv6Spoof)),
            row!("src :: NS to all-nodes", e6(&f::nd_ns(UNSPEC6, f::ALL_NODES, own6(), None)), Drop(Reason::Ipv6Spoof)),
            row!("src :: NS to the target itself", e6(&f::nd_ns(UNSPEC6, own6(), own6(), None)), Drop(Reason::Ipv6Spoof)),
            row!("src :: MLDv2 report", e6(&f::mldv2_report(UNSPEC6, &[f::solicited_node(own6())])), Pass),
            row!("src LL MLDv2 report", e6(&f::mldv2_report(ll(), &[f::solicited_node(own6())])), Pass),
            row!("src other MLDv2 report", e6(&f::mldv2_report(f::v6("fe80::1"), &[f::ALL_NODES])), Drop(Reason::Ipv6Spoof)),
            row!("src :: MLDv2 without hop-by-hop", e6(&f::icmpv6_packet(UNSPEC6, f::ALL_MLDV2_ROUTERS, 1, f::ICMPV6_MLDV2_REPORT, 0, &[0, 0, 0, 0])), Pass),
            row!("src :: MLDv1 report (131)", e6(&f::icmpv6_packet(UNSPEC6, f::ALL_MLDV2_ROUTERS, 1, 131, 0, &[0; 20])), Drop(Reason::Ipv6Spoof)),
            row!("echo from own", e6(&f::icmpv6_echo(own6(), peer6(), 1, 1, b"hi")), Pass),
            row!("icmpv6 3 bytes", e6(&v6raw(own6(), f::IPPROTO_ICMPV6, 64, &[128, 0, 0])), Drop(Reason::Malformed)),
            row!("icmpv6 4 bytes", e6(&v6raw(own6(), f::IPPROTO_ICMPV6, 64, &[128, 0, 0, 0])), Pass),
            row!("icmpv6 3 bytes from ::", e6(&v6raw(UNSPEC6, f::IPPROTO_ICMPV6, 64, &[143, 0, 0])), Drop(Reason::Malformed)),
        },
    )]
}

#[test]
fn s6_extension_headers() {
    check(s6_extension_headers_t());
}

pub(super) fn s6_extension_headers_t() -> Vec<Phase> {
    let udp = f::udp6_segment(own6(), peer6(), 40000, 9, b"ext");
    let icmp_ra = f::icmpv6(
        ll(),
        f::ALL_NODES,
        f::ICMPV6_RA,
        0,
        &[64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let d = |nh: u8| f::dstopts(nh, &[]);
    // n destination-options headers, then `last` as the upper layer
    let chain = |n: usize, last: u8, upper: &[u8]| {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend(d(if i + 1 == n { last } else { f::IPPROTO_DSTOPTS }));
        }
        v.extend_from_slice(upper);
        v
    };
    let pkt = |src: Ipv6Addr, nh: u8, body: &[u8]| e6(&f::ipv6(src, peer6(), nh, 64, body));
    vec![(
        base(),
        rows! {
            row!("hbh + udp", pkt(own6(), 0, &[f::hop_by_hop(17, &[]), udp.clone()].concat()), Pass),
            row!("hbh + dstopts + routing + udp", pkt(own6(), 0, &[f::hop_by_hop(60, &[]), f::dstopts(43, &[]), f::routing(17, 0, 0, &[]), udp.clone()] .concat()), Pass),
            row!("routing with an address + udp", pkt(own6(), 43, &[f::routing(17, 0, 1, &[peer6()]), udp.clone()].concat()), Pass),
            row!("dstopts with PadN + udp", pkt(own6(), 60, &[f::dstopts(17, &[1, 4, 0, 0, 0, 0, 1, 2, 0, 0]), udp.clone()].concat()), Pass),
            row!("6 ext headers + udp", pkt(own6(), 60, &chain(6, 17, &udp)), Pass),
            row!("7 ext headers + udp", pkt(own6(), 60, &chain(7, 17, &udp)), Drop(Reason::Malformed)),
            row!("6 ext headers then a 7th (fragment)", pkt(own6(), 60, &chain(6, 44, &[f::fragment(17, 0, false, 1), udp.clone()].concat())), Drop(Reason::Malformed)),
            row!("6 ext headers then a 7th (hbh)", pkt(own6(), 60, &chain(6, 0, &[f::hop_by_hop(17, &[]), udp.clone()].concat())), Drop(Reason::Malformed)),
            row!("6 ext headers + udp, spoofed", pkt(peer6(), 60, &chain(6, 17, &udp)), Drop(Reason::Ipv6Spoof)),
            row!("ext header cut: 1 byte", pkt(own6(), 60, &[17]), Drop(Reason::Malformed)),
            row!("ext header cut: 7 of 8 bytes", pkt(own6(), 60, &d(17)[..7]), Drop(Reason::Malformed)),
            row!("ext header len 1 but only 8 bytes", pkt(own6(), 60, &f::ext_hdr(17, 1, &[])[..8]), Drop(Reason::Malformed)),
            row!("ext header len 255 in a short packet", pkt(own6(), 0, &[f::ext_hdr(17, 255, &[])[..8].to_vec(), udp.clone()].concat()), Drop(Reason::Malformed)),
            row!("ext header exactly to the end, udp missing", pkt(own6(), 60, &d(17)), Drop(Reason::Malformed)),
            row!("ext header exactly to the end, no next header", pkt(own6(), 60, &d(59)), Pass),
            row!("ext header fits in frame but not in payload length", e6(&plen(f::ipv6(own6(), peer6(), 60, 64, &[f::ext_hdr(17, 1, &[]), udp.clone()].concat()), 8)), Drop(Reason::Malformed)),
            row!("udp after ext hdr present in frame, beyond payload length", e6(&plen(f::ipv6(own6(), peer6(), 60, 64, &[d(17), udp.clone()].concat()), 8)), Drop(Reason::Malformed)),
            row!("RA behind hbh", pkt(ll(), 0, &[f::hop_by_hop(58, &[]), icmp_ra.clone()].concat()), Drop(Reason::RaGuard)),
            row!("RA behind 6 ext headers", pkt(ll(), 60, &chain(6, 58, &icmp_ra)), Drop(Reason::RaGuard)),
            row!("RA behind 7 ext headers", pkt(ll(), 60, &chain(7, 58, &icmp_ra)), Drop(Reason::Malformed)),
        },
    )]
}

#[test]
fn s6_ra_guard_and_icmpv6_types() {
    check(s6_ra_guard_and_icmpv6_types_t());
}

pub(super) fn s6_ra_guard_and_icmpv6_types_t() -> Vec<Phase> {
    let first = base();
    let p1 = rows! {
        row!("RA from LL", e6(&f::ra(ll(), Some(M), Some(f::v6("2001:db8:1::")))), Drop(Reason::RaGuard)),
        row!("RA from own global", e6(&f::ra(own6(), None, None)), Drop(Reason::RaGuard)),
        row!("RA hop 64", e6(&hop(f::ra(ll(), None, None), 64)), Drop(Reason::RaGuard)),
        row!("RA spoofed src", e6(&f::ra(f::v6("fe80::1"), None, None)), Drop(Reason::Ipv6Spoof)),
        row!("RA minimal 4 bytes", e6(&v6raw(ll(), 58, 255, &[134, 0, 0, 0])), Drop(Reason::RaGuard)),
        row!("Redirect", e6(&f::redirect(ll(), peer6(), f::v6("fe80::99"), f::v6("2001:db8:5::1"))), Drop(Reason::RaGuard)),
        row!("Redirect spoofed", e6(&f::redirect(f::v6("fe80::1"), peer6(), f::v6("fe80::99"), f::v6("2001:db8:5::1"))), Drop(Reason::Ipv6Spoof)),
        row!("RS", e6(&f::rs(ll(), Some(M))), Pass),
        row!("RS with other SLLA (not checked)", e6(&f::rs(ll(), Some(OTHER))), Pass),
        row!("echo reply", e6(&f::icmpv6_packet(own6(), peer6(), 64, f::ICMPV6_ECHO_REPLY, 0, &[0, 1, 0, 1])), Pass),
        row!("dest unreachable", e6(&f::icmpv6_packet(own6(), peer6(), 64, 1, 4, &[0; 52])), Pass),
        row!("MLDv2 report from own global", e6(&f::mldv2_report(own6(), &[f::ALL_NODES])), Pass),
        row!("type 255", e6(&f::icmpv6_packet(own6(), peer6(), 64, 255, 0, &[])), Pass),
    };
    vec![(first, p1)]
}
