//! Section 4 of docs/policy.md: the IPv4 header, truncations, UDP and the source address.
use super::*;

#[test]
fn s4_ipv4_header_and_truncation() {
    check(s4_ipv4_header_and_truncation_t());
}

pub(super) fn s4_ipv4_header_and_truncation_t() -> Vec<Phase> {
    let good = u4(own4());
    let set = |mut p: Vec<u8>, i: usize, v: u8| {
        p[i] = v;
        f::fix_ipv4_checksum(&mut p);
        p
    };
    let total = |p: &[u8], t: u16| {
        let mut p = p.to_vec();
        p[2..4].copy_from_slice(&t.to_be_bytes());
        f::fix_ipv4_checksum(&mut p);
        p
    };
    let opts = f::Ipv4Opts {
        options: vec![1, 1, 1, 0], // NOP NOP NOP EOL
        ..Default::default()
    };
    let with_opts = f::ipv4_with(
        own4(),
        peer4(),
        f::IPPROTO_ICMP,
        &[8, 0, 0, 0, 0, 1, 0, 1],
        &opts,
    );
    vec![(
        base(),
        rows! {
            row!("legit udp", e4(&good), Pass),
            row!("0 bytes of IPv4", e4(&[]), Drop(Reason::Malformed)),
            row!("19 bytes of IPv4", e4(&good[..19]), Drop(Reason::Malformed)),
            row!("exactly 20 bytes, total 20, proto tcp", e4(&f::ipv4(own4(), peer4(), 6, &[])), Pass),
            row!("version 6 in 0x0800", e4(&set(good.clone(), 0, 0x65)), Drop(Reason::Malformed)),
            row!("version 0", e4(&set(good.clone(), 0, 0x05)), Drop(Reason::Malformed)),
            row!("IHL 4", e4(&set(good.clone(), 0, 0x44)), Drop(Reason::Malformed)),
            row!("IHL 0", e4(&set(good.clone(), 0, 0x40)), Drop(Reason::Malformed)),
            row!("IHL 6 with options", e4(&with_opts), Pass),
            row!("IHL 15 but total 35", e4(&set(good.clone(), 0, 0x4f)), Drop(Reason::Malformed)),
            row!("total < IHL*4", e4(&total(&good, 19)), Drop(Reason::Malformed)),
            row!("total 0", e4(&total(&good, 0)), Drop(Reason::Malformed)),
            // BIG TCP's total length 0 holds only past 65535 bytes (model tests).
            row!("total 0 on a 1500-byte tcp packet (not a super-frame)", e4(&total(&f::ipv4(own4(), peer4(), 6, &[0; 1480]), 0)), Drop(Reason::Malformed)),
            row!("total > frame by 1", e4(&total(&good, good.len() as u16 + 1)), Drop(Reason::Malformed)),
            row!("total 65535", e4(&total(&good, 0xffff)), Drop(Reason::Malformed)),
            row!("frame padded after total", f::pad_to(e4(&good), 60), Pass),
            row!("frame padded with garbage", [e4(&good), vec![0xaa; 30]].concat(), Pass),
            row!("total cut to 20 on tcp (shorter than frame)", e4(&total(&f::ipv4(own4(), peer4(), 6, &[0; 20]), 20)), Pass),
            // bad header checksum is not a policy matter
            row!("bad header checksum", e4(&{ let mut p = good.clone(); p[10] ^= 0xff; p }), Pass),
            row!("IHL 6 options cut", e4(&with_opts[..22]), Drop(Reason::Malformed)),
        },
    )]
}

#[test]
fn s4_ipv4_udp_and_source() {
    check(s4_ipv4_udp_and_source_t());
}

pub(super) fn s4_ipv4_udp_and_source_t() -> Vec<Phase> {
    let frag = |src: Ipv4Addr, dst: Ipv4Addr, frag: u16, payload: &[u8]| {
        f::ipv4_with(
            src,
            dst,
            f::IPPROTO_UDP,
            payload,
            &f::Ipv4Opts {
                frag,
                ..Default::default()
            },
        )
    };
    let dhcp_hdr = f::udp4_segment(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, b"");
    vec![(
        base(),
        rows! {
            // UDP needs 8 bytes inside the first fragment
            row!("udp 7 bytes", e4(&f::ipv4(own4(), peer4(), 17, &[0; 7])), Drop(Reason::Malformed)),
            row!("udp 0 bytes", e4(&f::ipv4(own4(), peer4(), 17, &[])), Drop(Reason::Malformed)),
            row!("udp exactly 8 bytes", e4(&f::ipv4(own4(), peer4(), 17, &[0; 8])), Pass),
            row!("udp first frag (MF) 7 bytes", e4(&frag(own4(), peer4(), 0x2000, &[0; 7])), Drop(Reason::Malformed)),
            row!("udp non-first frag 3 bytes", e4(&frag(own4(), peer4(), 0x0001, &[0; 3])), Pass),
            row!("udp non-first frag 0 bytes", e4(&frag(own4(), peer4(), 0x2010, &[])), Pass),
            row!("udp 7 bytes, spoofed src", e4(&f::ipv4(peer4(), peer4(), 17, &[0; 7])), Drop(Reason::Malformed)),
            row!("tcp 0 bytes is fine", e4(&f::ipv4(own4(), peer4(), 6, &[])), Pass),
            // sources
            row!("src exact", e4(&u4(own4())), Pass),
            row!("src prefix first", e4(&u4(f::v4("198.51.100.0"))), Pass),
            row!("src prefix last", e4(&u4(f::v4("198.51.100.15"))), Pass),
            row!("src just past prefix", e4(&u4(f::v4("198.51.100.16"))), Drop(Reason::Ipv4Spoof)),
            row!("src just before prefix", e4(&u4(f::v4("198.51.99.255"))), Drop(Reason::Ipv4Spoof)),
            row!("src peer", e4(&u4(peer4())), Drop(Reason::Ipv4Spoof)),
            row!("src 203.0.113.1", e4(&u4(f::v4("203.0.113.1"))), Drop(Reason::Ipv4Spoof)),
            row!("src broadcast", e4(&u4(Ipv4Addr::BROADCAST)), Drop(Reason::Ipv4Spoof)),
            row!("src 0.0.0.0 plain", e4(&u4(Ipv4Addr::UNSPECIFIED)), Drop(Reason::Ipv4Spoof)),
            row!("icmp spoofed", e4(&f::icmp4_echo(peer4(), own4(), 1, 1, b"")), Drop(Reason::Ipv4Spoof)),
            row!("non-first frag spoofed", e4(&frag(peer4(), own4(), 0x0001, &[0; 8])), Drop(Reason::Ipv4Spoof)),
            // DHCP client exception
            row!("dhcp discover", f::dhcp_discover(M), Pass),
            row!("dhcp discover padded", f::pad_to(f::dhcp_discover(M), 400), Pass),
            row!("dhcp shape, udp header only (truncated BOOTP)", f::eth(f::BROADCAST, M, f::ETH_P_IP, &f::ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, &dhcp_hdr)), Drop(Reason::Malformed)),
            row!("0.0.0.0:68 -> 255.255.255.255:68", e4(&f::udp4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 68, b"x")), Drop(Reason::Ipv4Spoof)),
            row!("0.0.0.0:67 -> 255.255.255.255:67", e4(&f::udp4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 67, 67, b"x")), Drop(Reason::Ipv4Spoof)),
            row!("0.0.0.0:68 -> subnet bcast:67", e4(&f::udp4(Ipv4Addr::UNSPECIFIED, f::v4("192.0.2.255"), 68, 67, b"x")), Drop(Reason::Ipv4Spoof)),
            row!("0.0.0.0:68 -> peer:67", e4(&f::udp4(Ipv4Addr::UNSPECIFIED, peer4(), 68, 67, b"x")), Drop(Reason::Ipv4Spoof)),
            row!("0.0.0.0 -> bcast tcp", e4(&f::ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 6, &[0, 68, 0, 67, 0, 0, 0, 0])), Drop(Reason::Ipv4Spoof)),
            row!("dhcp shape, non-first fragment", e4(&frag(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 0x0001, &dhcp_hdr)), Drop(Reason::Ipv4Spoof)),
            row!("dhcp shape, first fragment (MF): cannot be checked", e4(&frag(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 0x2000, &dhcp_hdr)), Drop(Reason::Malformed)),
            row!("dhcp shape, udp cut", e4(&f::ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, &dhcp_hdr[..7])), Drop(Reason::Malformed)),
        },
    )]
}
