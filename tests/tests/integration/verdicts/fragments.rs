//! Fragments (sections 4 and 6 of docs/policy.md): IPv6 fragments, fragmented ND (RFC 6980), IPv4 TCP fragments (RFC 1858).
use super::*;

#[test]
fn s6_fragments() {
    check(s6_fragments_t());
}

pub(super) fn s6_fragments_t() -> Vec<Phase> {
    let udp = f::udp6_segment(own6(), peer6(), 40000, 9, b"frag");
    let icmp_ra = f::icmpv6(
        ll(),
        f::ALL_NODES,
        f::ICMPV6_RA,
        0,
        &[64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let pkt = |src: Ipv6Addr, nh: u8, body: &[u8]| e6(&f::ipv6(src, peer6(), nh, 64, body));
    let frag = |off: u16, more: bool, nh: u8, rest: &[u8]| {
        [f::fragment(nh, off, more, 7), rest.to_vec()].concat()
    };
    vec![(
        base(),
        rows! {
            row!("first fragment + udp", pkt(own6(), 44, &frag(0, true, 17, &udp)), Pass),
            row!("first fragment + udp cut", pkt(own6(), 44, &frag(0, true, 17, &udp[..7])), Drop(Reason::Malformed)),
            row!("first fragment spoofed", pkt(peer6(), 44, &frag(0, true, 17, &udp)), Drop(Reason::Ipv6Spoof)),
            row!("first fragment with RA", pkt(ll(), 44, &frag(0, true, 58, &icmp_ra)), Drop(Reason::RaGuard)),
            row!("atomic fragment (offset 0, M=0) with RA", pkt(ll(), 44, &frag(0, false, 58, &icmp_ra)), Drop(Reason::RaGuard)),
            row!("fragment header cut to 7", pkt(own6(), 44, &f::fragment(17, 1, false, 7)[..7]), Drop(Reason::Malformed)),
            row!("non-first fragment, nothing after", pkt(own6(), 44, &f::fragment(17, 1, false, 7)), Pass),
            row!("non-first fragment with 3 bytes", pkt(own6(), 44, &frag(1, true, 17, &[1, 2, 3])), Pass),
            row!("non-first fragment carrying RA bytes (LL source, RFC 7113)", pkt(ll(), 44, &frag(185, false, 58, &icmp_ra)), Drop(Reason::Malformed)),
            row!("non-first fragment carrying DHCPv6 server bytes (LL source)", pkt(ll(), 44, &frag(2, false, 17, &[2, 35, 2, 34, 0, 8, 0, 0])), Drop(Reason::Malformed)),
            row!("non-first fragment, max offset", pkt(own6(), 44, &frag(0x1fff, false, 17, &[0; 8])), Pass),
            row!("non-first fragment from prefix", pkt(pfx6(), 44, &frag(1, false, 17, &[0; 8])), Pass),
            row!("non-first fragment from LL", pkt(ll(), 44, &frag(1, false, 17, &[0; 8])), Drop(Reason::Malformed)),
            row!("non-first fragment spoofed", pkt(peer6(), 44, &frag(1, false, 17, &[0; 8])), Drop(Reason::Ipv6Spoof)),
            row!("non-first fragment from ::", pkt(UNSPEC6, 44, &frag(1, false, 58, &[0; 8])), Drop(Reason::Ipv6Spoof)),
            row!("non-first fragment from :: carrying DAD bytes", pkt(UNSPEC6, 44, &frag(3, false, 58, &[135, 0, 0, 0, 0, 0, 0, 0])), Drop(Reason::Ipv6Spoof)),
            row!("reserved bits only (offset 0)", pkt(own6(), 44, &{ let mut h = frag(0, false, 17, &udp); h[3] |= 0x06; h }), Pass),
            row!("hbh + non-first fragment", pkt(own6(), 0, &[f::hop_by_hop(44, &[]), frag(5, true, 17, &[0; 8])].concat()), Pass),
            row!("5 dstopts + non-first fragment (6th header)", pkt(own6(), 60, &[f::dstopts(60, &[]), f::dstopts(60, &[]), f::dstopts(60, &[]), f::dstopts(60, &[]), f::dstopts(44, &[]), frag(5, true, 17, &[0; 8])] .concat()), Pass),
            row!("fragment + fragment + udp (nothing may follow a fragment header)", pkt(own6(), 44, &frag(0, true, 44, &frag(0, true, 17, &udp))), Drop(Reason::Malformed)),
        },
    )]
}

#[test]
fn s6_fragments_and_nd() {
    check(s6_fragments_and_nd_t());
}

/// RFC 6980 / 7113 / 7112 / 1858 per-frame fragment rules (policy.md "Fragments").
pub(super) fn s6_fragments_and_nd_t() -> Vec<Phase> {
    let e6to = |src: Ipv6Addr, dst: Ipv6Addr, nh: u8, hl: u8, body: &[u8]| {
        e6(&f::ipv6(src, dst, nh, hl, body))
    };
    let frag = |off: u16, more: bool, nh: u8, rest: &[u8]| {
        [f::fragment(nh, off, more, 9), rest.to_vec()].concat()
    };
    // An ICMPv6 message (checksummed as if unfragmented) behind a fragment header.
    let icmp = |src: Ipv6Addr, dst: Ipv6Addr, ty: u8, body: &[u8]| f::icmpv6(src, dst, ty, 0, body);
    let ns_body = [vec![0; 4], peer6().octets().to_vec()].concat();
    let na_body = [vec![0x60, 0, 0, 0], own6().octets().to_vec()].concat();
    let echo = |src, dst| icmp(src, dst, f::ICMPV6_ECHO_REQUEST, &[0, 1, 0, 1, 9, 9, 9, 9]);
    let g = own6();
    let mut t = Vec::new();
    for (more, what) in [(true, "first fragment"), (false, "atomic fragment")] {
        t.extend(rows! {
            row!(&format!("{what}: unicast NS between globals (RFC 6980)"), e6to(g, peer6(), 44, 255, &frag(0, more, 58, &icmp(g, peer6(), f::ICMPV6_NS, &ns_body))), Drop(Reason::NdSpoof)),
            row!(&format!("{what}: NA"), e6to(g, peer6(), 44, 255, &frag(0, more, 58, &icmp(g, peer6(), f::ICMPV6_NA, &na_body))), Drop(Reason::NdSpoof)),
            row!(&format!("{what}: RS"), e6to(ll(), f::ALL_ROUTERS, 44, 255, &frag(0, more, 58, &icmp(ll(), f::ALL_ROUTERS, 133, &[0; 4]))), Drop(Reason::NdSpoof)),
            row!(&format!("{what}: MLDv2 report"), e6to(ll(), f::ALL_MLDV2_ROUTERS, 44, 1, &frag(0, more, 58, &icmp(ll(), f::ALL_MLDV2_ROUTERS, 143, &[0; 4]))), Drop(Reason::NdSpoof)),
            row!(&format!("{what}: RA"), e6to(ll(), f::ALL_NODES, 44, 255, &frag(0, more, 58, &icmp(ll(), f::ALL_NODES, f::ICMPV6_RA, &[0; 12]))), Drop(Reason::RaGuard)),
        });
    }
    t.extend(rows! {
        row!("first fragment: echo between link-locals (RFC 7113)", e6to(ll(), f::eui64_ll(PEER), 44, 64, &frag(0, true, 58, &echo(ll(), f::eui64_ll(PEER)))), Drop(Reason::Malformed)),
        row!("atomic fragment: echo between link-locals (whole packet)", e6to(ll(), f::eui64_ll(PEER), 44, 64, &frag(0, false, 58, &echo(ll(), f::eui64_ll(PEER)))), Pass),
        row!("first fragment: echo between globals", e6to(g, peer6(), 44, 64, &frag(0, true, 58, &echo(g, peer6()))), Pass),
        row!("first fragment: udp from global to ff02::fb", e6to(g, f::v6("ff02::fb"), 44, 255, &frag(0, true, 17, &f::udp6_segment(g, f::v6("ff02::fb"), 5353, 5353, b"mdns"))), Drop(Reason::Malformed)),
        row!("first fragment: udp to site-scope multicast", e6to(g, f::v6("ff05::1:3"), 44, 64, &frag(0, true, 17, &f::udp6_segment(g, f::v6("ff05::1:3"), 546, 547, &[1, 0, 0, 0]))), Pass),
        row!("non-first fragment to a solicited-node group", e6to(g, f::solicited_node(peer6()), 44, 255, &frag(3, false, 58, &[0; 16])), Drop(Reason::Malformed)),
        row!("non-first fragment to all-nodes", e6to(g, f::ALL_NODES, 44, 255, &frag(3, false, 58, &[0; 16])), Drop(Reason::Malformed)),
        row!("non-first fragment to a link-local", e6to(g, f::eui64_ll(PEER), 44, 64, &frag(3, false, 58, &[0; 16])), Drop(Reason::Malformed)),
        row!("non-first fragment between globals", e6to(g, peer6(), 44, 64, &frag(3, false, 58, &[0; 16])), Pass),
        // RFC 1858 / 7112 for TCP.
        row!("first fragment: tcp header cut (19 bytes)", e6to(g, peer6(), 44, 64, &frag(0, true, 6, &[0; 19])), Drop(Reason::Malformed)),
        row!("first fragment: full tcp header", e6to(g, peer6(), 44, 64, &frag(0, true, 6, &[0; 20])), Pass),
        row!("non-first tcp fragment at offset 8 (inside the header)", e6to(g, peer6(), 44, 64, &frag(1, true, 6, &[0; 8])), Drop(Reason::Malformed)),
        row!("non-first tcp fragment at offset 16", e6to(g, peer6(), 44, 64, &frag(2, false, 6, &[0; 8])), Drop(Reason::Malformed)),
        row!("non-first tcp fragment at offset 24", e6to(g, peer6(), 44, 64, &frag(3, false, 6, &[0; 8])), Pass),
        row!("dstopts after a first-fragment header", e6to(g, peer6(), 44, 64, &frag(0, true, 60, &[f::dstopts(58, &[]), echo(g, peer6())].concat())), Drop(Reason::Malformed)),
        row!("dstopts after an atomic fragment header", e6to(g, peer6(), 44, 64, &frag(0, false, 60, &[f::dstopts(58, &[]), echo(g, peer6())].concat())), Drop(Reason::Malformed)),
        row!("dstopts before the fragment header", e6to(g, peer6(), 60, 64, &[f::dstopts(44, &[]), frag(0, true, 58, &echo(g, peer6()))].concat()), Pass),
    });
    vec![(base(), t)]
}

#[test]
fn s4_ipv4_tcp_fragments() {
    check(s4_ipv4_tcp_fragments_t());
}

/// RFC 1858: tiny first fragments and later fragments inside the TCP header.
pub(super) fn s4_ipv4_tcp_fragments_t() -> Vec<Phase> {
    let tcp = |frag: u16, body: &[u8]| {
        e4(&f::ipv4_with(
            own4(),
            peer4(),
            6,
            body,
            &f::Ipv4Opts {
                frag,
                ..Default::default()
            },
        ))
    };
    vec![(
        base(),
        rows! {
            row!("tcp first fragment, 19 bytes", tcp(0x2000, &[0; 19]), Drop(Reason::Malformed)),
            row!("tcp first fragment, 20 bytes", tcp(0x2000, &[0; 20]), Pass),
            row!("tcp unfragmented, 8 bytes", tcp(0x4000, &[0; 8]), Pass),
            row!("tcp fragment at offset 8", tcp(0x2001, &[0; 8]), Drop(Reason::Malformed)),
            row!("tcp fragment at offset 16", tcp(0x0002, &[0; 8]), Drop(Reason::Malformed)),
            row!("tcp fragment at offset 24", tcp(0x0003, &[0; 8]), Pass),
            row!("udp fragment at offset 8", e4(&f::ipv4_with(own4(), peer4(), 17, &[0; 8], &f::Ipv4Opts { frag: 1, ..Default::default() })), Pass),
        },
    )]
}
