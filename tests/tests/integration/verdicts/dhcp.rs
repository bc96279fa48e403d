//! DHCP rules of sections 4 and 6 of docs/policy.md: DHCP server and client (IPv4), DHCPv6.
use super::*;

#[test]
fn s4_dhcp_server() {
    check(s4_dhcp_server_t());
}

pub(super) fn s4_dhcp_server_t() -> Vec<Phase> {
    let offer = f::dhcp_offer(M, own4(), PEER, f::v4("192.0.2.77"));
    let frag = |frag: u16| {
        f::ipv4_with(
            own4(),
            Ipv4Addr::BROADCAST,
            f::IPPROTO_UDP,
            &f::udp4_segment(own4(), Ipv4Addr::BROADCAST, 67, 68, b""),
            &f::Ipv4Opts {
                frag,
                ..Default::default()
            },
        )
    };
    let first = base();
    let p1 = rows! {
        row!("offer from own address", offer.clone(), Drop(Reason::DhcpServer)),
        row!("67 -> 68 unicast", e4(&f::udp4(own4(), peer4(), 67, 68, b"x")), Drop(Reason::DhcpServer)),
        row!("67 -> 68 first fragment", e4(&frag(0x2000)), Drop(Reason::DhcpServer)),
        row!("67 -> 68 non-first fragment", e4(&frag(0x0001)), Pass),
        row!("67 -> 68 spoofed src", e4(&f::udp4(peer4(), peer4(), 67, 68, b"x")), Drop(Reason::Ipv4Spoof)),
        row!("67 -> 68 from 0.0.0.0", e4(&f::udp4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 67, 68, b"x")), Drop(Reason::Ipv4Spoof)),
        row!("67 -> 69", e4(&f::udp4(own4(), peer4(), 67, 69, b"x")), Pass),
        row!("68 -> 67 from own, truncated BOOTP", e4(&f::udp4(own4(), peer4(), 68, 67, b"x")), Drop(Reason::Malformed)),
        row!("6767 -> 68 (server on another source port)", e4(&f::udp4(own4(), Ipv4Addr::BROADCAST, 6767, 68, &f::bootp_msg(2, PEER, &[53, 1, 2]))), Drop(Reason::DhcpServer)),
        row!("40000 -> 68, any content", e4(&f::udp4(own4(), peer4(), 40000, 68, b"")), Drop(Reason::DhcpServer)),
        row!("68 -> 53 (ephemeral source 68)", e4(&f::udp4(own4(), peer4(), 68, 53, b"query")), Pass),
        row!("67 -> 67 BOOTREPLY to a relay", e4(&f::udp4(own4(), peer4(), 67, 67, &f::bootp_msg(2, PEER, &[]))), Drop(Reason::DhcpServer)),
        row!("tcp 67 -> 68", e4(&f::ipv4(own4(), peer4(), 6, &[0, 67, 0, 68, 0, 0, 0, 0])), Pass),
    };
    let second = with(|b| b.allow_dhcp_server = true);
    let p2 = rows! {
        row!("offer allowed", offer, Pass),
        row!("6767 -> 68 allowed", e4(&f::udp4(own4(), Ipv4Addr::BROADCAST, 6767, 68, b"")), Pass),
        row!("relayed request (giaddr, foreign chaddr) allowed", e4(&f::udp4(own4(), peer4(), 67, 67, &{ let mut m = f::bootp_msg(1, PEER, &f::dhcp_opt_client_id(PEER)); m[24..28].copy_from_slice(&own4().octets()); m })), Pass),
        row!("67 -> 68 spoofed src still spoof", e4(&f::udp4(peer4(), peer4(), 67, 68, b"x")), Drop(Reason::Ipv4Spoof)),
    };
    vec![(first, p1), (second, p2)]
}

#[test]
fn s4_dhcp_client() {
    check(s4_dhcp_client_t());
}

/// DHCPv4 client messages (to port 67): chaddr and client identifier.
pub(super) fn s4_dhcp_client_t() -> Vec<Phase> {
    let req = |chaddr: Mac, opts: &[u8]| {
        f::dhcp_client_frame(PEER, M, own4(), peer4(), &f::bootp_msg(1, chaddr, opts))
    };
    let discover = |chaddr: Mac| {
        f::dhcp_client_frame(
            f::BROADCAST,
            M,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            &f::bootp_msg(1, chaddr, &[53, 1, 1]),
        )
    };
    let cid = f::dhcp_opt_client_id;
    let release = |id: Mac| [vec![53, 1, 7, 54, 4, 192, 0, 2, 2], cid(id)].concat();
    let set = |mut fr: Vec<u8>, at: usize, v: &[u8]| {
        let o = 14 + 20 + 8 + at;
        fr[o..o + v.len()].copy_from_slice(v);
        fr
    };
    let p1 = rows! {
        row!("discover, own chaddr", discover(M), Pass),
        row!("discover, foreign chaddr (starvation)", discover(OTHER), Drop(Reason::DhcpSpoof)),
        row!("request, own chaddr + own client id", req(M, &[&[53, 1, 3][..], &cid(M)].concat()), Pass),
        row!("release, own chaddr + own client id", req(M, &release(M)), Pass),
        row!("release, foreign chaddr", req(PEER, &[53, 1, 7]), Drop(Reason::DhcpSpoof)),
        row!("release, own chaddr + neighbour's client id", req(M, &release(PEER)), Drop(Reason::DhcpSpoof)),
        row!("decline, neighbour's client id", req(M, &[&[53, 1, 4][..], &cid(PEER)].concat()), Drop(Reason::DhcpSpoof)),
        row!("client id type 255 (RFC 4361 DUID)", req(M, &[61, 9, 255, 0, 0, 0, 1, 0, 3, 0, 1]), Pass),
        row!("client id type 0 (text)", req(M, &[61, 4, 0, b'v', b'm', b'1']), Pass),
        row!("client id type 1, 5 bytes", req(M, &[61, 5, 1, 2, 0, 0, 0]), Drop(Reason::DhcpSpoof)),
        row!("client id length 1", req(M, &[61, 1, 1]), Drop(Reason::DhcpSpoof)),
        row!("option overload", req(M, &[52, 1, 3]), Drop(Reason::DhcpSpoof)),
        row!("htype 6", set(req(M, &[]), 1, &[6]), Drop(Reason::DhcpSpoof)),
        row!("hlen 16", set(req(M, &[]), 2, &[16]), Drop(Reason::DhcpSpoof)),
        row!("op 3", set(req(M, &[]), 0, &[3]), Drop(Reason::Malformed)),
        row!("giaddr set (relay)", set(req(OTHER, &[]), 24, &[192, 0, 2, 1]), Drop(Reason::DhcpServer)),
        row!("15 pads then own client id", req(M, &[vec![0; 15], cid(M)].concat()), Pass),
        row!("16 pads hide a client id", req(M, &[vec![0; 16], cid(PEER)].concat()), Drop(Reason::DhcpSpoof)),
        row!("16 options then END", req(M, &[[12u8, 1, b'x']; 16].concat()), Pass),
        row!("17 options", req(M, &[[12u8, 1, b'x']; 17].concat()), Drop(Reason::DhcpSpoof)),
        row!("option running past the end", f::dhcp_client_frame(PEER, M, own4(), peer4(), &[&f::bootp_msg(1, M, &[])[..240], &[12, 20, b'x']].concat()), Drop(Reason::Malformed)),
        row!("options end at the payload end without END", f::dhcp_client_frame(PEER, M, own4(), peer4(), &[&f::bootp_msg(1, M, &[])[..240], &[12, 1, b'x']].concat()), Pass),
        row!("BOOTP 235 bytes", f::dhcp_client_frame(PEER, M, own4(), peer4(), &f::bootp_msg(1, M, &[])[..235]), Drop(Reason::Malformed)),
        row!("plain BOOTP (no cookie), own chaddr", f::dhcp_client_frame(PEER, M, own4(), peer4(), &f::bootp_msg(1, M, &[])[..236]), Pass),
        row!("no cookie: a client id in the vend area is not an option", set(req(M, &cid(PEER)), 236, &[0]), Pass),
        row!("padded frame: options end at the IP length", f::pad_to(f::dhcp_client_frame(PEER, M, own4(), peer4(), &[&f::bootp_msg(1, M, &[])[..240], &[12, 1, b'x']].concat()), 400), Pass),
    };
    let p2 = rows! {
        row!("relay: foreign chaddr allowed with --allow-dhcp-server", req(PEER, &cid(PEER)), Pass),
    };
    vec![(base(), p1), (with(|b| b.allow_dhcp_server = true), p2)]
}

#[test]
fn s6_dhcpv6() {
    check(s6_dhcpv6_t());
}

pub(super) fn s6_dhcpv6_t() -> Vec<Phase> {
    let adv = f::dhcpv6_advertise(M, PEER, f::v6("2001:db8::77"));
    let first = base();
    let p1 = rows! {
        row!("solicit 546 -> 547", e6(&f::dhcpv6_solicit(M)), Pass),
        row!("advertise 547 -> 546", e6(&adv), Drop(Reason::DhcpServer)),
        row!("547 -> 546 from global", e6(&f::udp6(own6(), peer6(), 547, 546, b"x")), Drop(Reason::DhcpServer)),
        row!("547 -> 546 behind hbh", e6(&f::ipv6(ll(), peer6(), 0, 64, &[f::hop_by_hop(17, &[]), f::udp6_segment(ll(), peer6(), 547, 546, b"x")] .concat())), Drop(Reason::DhcpServer)),
        row!("547 -> 546 first fragment", e6(&f::ipv6(own6(), peer6(), 44, 64, &[f::fragment(17, 0, true, 1), f::udp6_segment(own6(), peer6(), 547, 546, b"x")] .concat())), Drop(Reason::DhcpServer)),
        row!("547 -> 546 first fragment from LL (link scope first)", e6(&f::ipv6(ll(), peer6(), 44, 64, &[f::fragment(17, 0, true, 1), f::udp6_segment(ll(), peer6(), 547, 546, b"x")] .concat())), Drop(Reason::Malformed)),
        row!("random source port -> 546 (atk6-fake_dhcps6)", e6(&f::udp6(ll(), peer6(), 40123, 546, &[2, 0, 0, 1])), Drop(Reason::DhcpServer)),
        row!("547 -> 546 spoofed", e6(&f::udp6(peer6(), own6(), 547, 546, b"x")), Drop(Reason::Ipv6Spoof)),
        row!("547 -> 547 truncated", e6(&f::udp6(ll(), peer6(), 547, 547, b"x")), Drop(Reason::Malformed)),
        row!("546 -> 546", e6(&f::udp6(ll(), peer6(), 546, 546, b"x")), Drop(Reason::DhcpServer)),
        row!("546 -> 53 (ephemeral source 546)", e6(&f::udp6(ll(), peer6(), 546, 53, b"x")), Pass),
        row!("tcp 547 -> 546", e6(&f::ipv6(ll(), peer6(), 6, 64, &[2, 35, 2, 34, 0, 0, 0, 0])), Pass),
    };
    // Message types to 547: client types pass, server/relay types do not.
    let to547 = |ty: u8| {
        e6(&f::udp6(
            ll(),
            f::ALL_DHCP_AGENTS,
            547,
            547,
            &[ty, 1, 2, 3, 0, 1],
        ))
    };
    let mut p1 = p1;
    for (ty, name) in [
        (1, "SOLICIT"),
        (3, "REQUEST"),
        (5, "RENEW"),
        (8, "RELEASE"),
        (9, "DECLINE"),
        (11, "INFORMATION-REQUEST"),
        (20, "DHCPV4-QUERY"),
    ] {
        p1.push(row!(&format!("{name} to 547"), to547(ty), Pass));
    }
    for (ty, name) in [
        (2, "ADVERTISE"),
        (7, "REPLY"),
        (10, "RECONFIGURE"),
        (12, "RELAY-FORW"),
        (13, "RELAY-REPL"),
        (15, "LEASEQUERY-REPLY"),
        (21, "DHCPV4-RESPONSE"),
        (0, "type 0"),
        (200, "type 200"),
    ] {
        p1.extend(rows! {
            row!(&format!("{name} to 547"), to547(ty), Drop(Reason::DhcpServer)),
        });
    }
    let second = with(|b| b.allow_dhcp_server = true);
    let p2 = rows! {
        row!("advertise allowed", e6(&adv), Pass),
        row!("RELAY-FORW allowed", e6(&f::udp6(ll(), f::ALL_DHCP_AGENTS, 547, 547, &[12, 0, 0, 0])), Pass),
        row!("547 -> 546 spoofed still spoof", e6(&f::udp6(peer6(), own6(), 547, 546, b"x")), Drop(Reason::Ipv6Spoof)),
    };
    vec![(first, p1), (second, p2)]
}
