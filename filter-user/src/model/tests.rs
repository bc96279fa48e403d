//! One group of hand-built frames per rule of policy.md.
use std::net::{Ipv4Addr, Ipv6Addr};

use filter_common::{eui64_link_local, RateCfg, Reason};

use super::*;
use crate::{
    binding::{Binding, Limit, Mode},
    parse::Mac,
};

const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const OTHER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const BCAST: [u8; 6] = [0xff; 6];
const GW: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0xfe];

fn binding() -> Binding {
    Binding::new(
        Mac(MAC),
        vec![
            "192.0.2.10".parse().unwrap(),
            "198.51.100.0/28".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
            "2001:db8:1::/64".parse().unwrap(),
        ],
    )
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

fn eth(dst: [u8; 6], src: [u8; 6], et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn vlan(dst: [u8; 6], tpid: u16, tci: u16, inner: u16, payload: &[u8]) -> Vec<u8> {
    let mut tag = tci.to_be_bytes().to_vec();
    tag.extend_from_slice(&inner.to_be_bytes());
    tag.extend_from_slice(payload);
    eth(dst, MAC, tpid, &tag)
}

/// IPv4 header (no options) + payload; `frag` is the flags/offset field.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn udp(sport: u16, dport: u16, body: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(body);
    u
}

/// A BOOTP message (op, htype 1, hlen 6, `chaddr`) with the DHCP magic
/// cookie and `opts` (END appended), padded to 300 bytes.
fn bootp(op: u8, chaddr: [u8; 6], opts: &[u8]) -> Vec<u8> {
    let mut b = vec![op, 1, 6, 0];
    b.extend_from_slice(&[0; 24]);
    b.extend_from_slice(&chaddr);
    b.resize(236, 0);
    b.extend_from_slice(&[99, 130, 83, 99]);
    b.extend_from_slice(opts);
    b.push(255);
    b.resize(b.len().max(300), 0);
    b
}

fn v4_frame(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    eth(
        GW,
        MAC,
        0x0800,
        &ipv4(ip4(src), ip4(dst), proto, 0, payload),
    )
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa);
    a
}

fn arp_frame(op: u16, sha: [u8; 6], spa: &str, tpa: &str) -> Vec<u8> {
    eth(BCAST, MAC, 0x0806, &arp(op, sha, ip4(spa), ip4(tpa)))
}

fn ipv6(src: [u8; 16], dst: [u8; 16], nh: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, hop_limit]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn v6_frame(src: &str, dst: &str, nh: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let dmac = if dst.starts_with("ff") {
        [0x33, 0x33, 0, 0, 0, 1]
    } else {
        GW
    };
    eth(
        dmac,
        MAC,
        0x86dd,
        &ipv6(ip6(src), ip6(dst), nh, hop_limit, payload),
    )
}

fn icmp6(ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(body);
    m
}

/// NS/NA body after the 4-byte ICMPv6 header: reserved/flags + target + options.
fn nd_body(target: &str, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0; 4];
    b.extend_from_slice(&ip6(target));
    for o in opts {
        b.extend_from_slice(o);
    }
    b
}

fn lla(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

fn ext(nh: u8, len8: u8) -> Vec<u8> {
    let mut h = vec![nh, len8];
    h.resize((usize::from(len8) + 1) * 8, 0);
    h
}

fn frag(nh: u8, offset8: u16) -> Vec<u8> {
    let mut h = vec![nh, 0];
    h.extend_from_slice(&(offset8 << 3).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 7]);
    h
}

fn reason(b: &Binding, f: &[u8]) -> Reason {
    evaluate(Some(b), f).reason
}

#[track_caller]
fn assert_reason(b: &Binding, f: &[u8], want: Reason) {
    let got = reason(b, f);
    assert_eq!(got, want, "frame {}", hex(f));
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- Section 1 ----

#[test]
fn unbound_port() {
    let f = v4_frame("192.0.2.10", "192.0.2.1", 6, &[0; 20]);
    assert_eq!(evaluate(None, &f).reason, Reason::UnboundPort);
    assert_eq!(evaluate(None, &[]).reason, Reason::UnboundPort);
    let o = outcome(None, Reason::UnboundPort);
    assert_eq!(o.action, XDP_DROP);
    assert_eq!(o.counted, Counted::Dropped(Reason::UnboundPort));
}

// ---- Section 2 ----

#[test]
fn short_frames_are_malformed() {
    let b = binding();
    let f = v4_frame("192.0.2.10", "192.0.2.1", 6, &[0; 20]);
    for n in 0..14 {
        assert_reason(&b, &f[..n], Reason::Malformed);
    }
    // 14 bytes of a good header: IPv4 with no IP header.
    assert_reason(&b, &f[..14], Reason::Malformed);
    assert_reason(&b, &f, Reason::Pass);
}

#[test]
fn source_mac() {
    let b = binding();
    let ip = ipv4(ip4("192.0.2.10"), ip4("192.0.2.1"), 6, 0, &[0; 20]);
    assert_reason(&b, &eth(GW, OTHER, 0x0800, &ip), Reason::MacSpoof);
    assert_reason(&b, &eth(GW, BCAST, 0x0800, &ip), Reason::MacSpoof);
    // Group bit: even a binding that (wrongly) holds a group MAC gets mac_spoof.
    let mut group = binding();
    group.mac = Mac([0x03, 0, 0, 0, 0, 1]);
    assert_reason(
        &group,
        &eth(GW, [0x03, 0, 0, 0, 0, 1], 0x0800, &ip),
        Reason::MacSpoof,
    );
    // The source MAC is checked before anything else of the frame.
    assert_reason(&b, &eth(GW, OTHER, 0x88a8, &[]), Reason::MacSpoof);
    assert_reason(&b, &eth(GW, MAC, 0x0800, &ip), Reason::Pass);
}

#[test]
fn vlan_tags() {
    let ip = ipv4(ip4("192.0.2.10"), ip4("192.0.2.1"), 6, 0, &[0; 20]);
    let mut b = binding();
    // No VLAN allowed.
    assert_reason(&b, &vlan(GW, 0x8100, 100, 0x0800, &ip), Reason::Vlan);
    assert_reason(&b, &eth(GW, MAC, 0x8100, &[]), Reason::Vlan);
    b.vlans = vec![0, 100];
    assert_reason(&b, &vlan(GW, 0x8100, 100, 0x0800, &ip), Reason::Pass);
    // Priority bits and DEI are not part of the VID.
    assert_reason(&b, &vlan(GW, 0x8100, 0xf064, 0x0800, &ip), Reason::Pass);
    assert_reason(&b, &vlan(GW, 0x8100, 0xe000, 0x0800, &ip), Reason::Pass);
    assert_reason(&b, &vlan(GW, 0x8100, 101, 0x0800, &ip), Reason::Vlan);
    // 802.1ad is refused whatever the allow-list.
    assert_reason(&b, &vlan(GW, 0x88a8, 100, 0x0800, &ip), Reason::Vlan);
    assert_reason(&b, &eth(GW, MAC, 0x88a8, &[]), Reason::Vlan);
    // Stacked tags.
    assert_reason(
        &b,
        &vlan(GW, 0x8100, 100, 0x8100, &[0, 100, 8, 0]),
        Reason::Vlan,
    );
    assert_reason(
        &b,
        &vlan(GW, 0x8100, 100, 0x88a8, &[0, 100, 8, 0]),
        Reason::Vlan,
    );
    // Truncated tag.
    let f = vlan(GW, 0x8100, 100, 0x0800, &[]);
    for n in 14..18 {
        assert_reason(&b, &f[..n], Reason::Malformed);
    }
    // The inner frame is checked as usual, at offset 18.
    let spoof = ipv4(ip4("192.0.2.99"), ip4("192.0.2.1"), 6, 0, &[0; 20]);
    assert_reason(
        &b,
        &vlan(GW, 0x8100, 100, 0x0800, &spoof),
        Reason::Ipv4Spoof,
    );
    assert_reason(
        &b,
        &vlan(GW, 0x8100, 100, 0x0800, &ip[..19]),
        Reason::Malformed,
    );
}

// ---- Section 3 ----

#[test]
fn ethertypes() {
    let mut b = binding();
    let lldp = eth([0x01, 0x80, 0xc2, 0, 0, 0x0e], MAC, 0x88cc, &[0; 46]);
    assert_reason(&b, &lldp, Reason::Ethertype);
    // 802.3 length field.
    assert_reason(&b, &eth(GW, MAC, 0x002e, &[0; 46]), Reason::Ethertype);
    assert_reason(&b, &eth(GW, MAC, 0x05dc, &[0; 46]), Reason::Ethertype);
    b.ethertypes = vec![0x88cc];
    assert_reason(&b, &lldp, Reason::Pass);
    assert_eq!(evaluate(Some(&b), &lldp).class, StormClass::Multicast);
    // An allowed EtherType needs no payload at all.
    assert_reason(&b, &eth(GW, MAC, 0x88cc, &[]), Reason::Pass);
    b.vlans = vec![7];
    assert_reason(&b, &vlan(GW, 0x8100, 7, 0x88cc, &[]), Reason::Pass);
    assert_reason(&b, &vlan(GW, 0x8100, 7, 0x88b5, &[]), Reason::Ethertype);
}

// ---- Section 4 ----

#[test]
fn ipv4_header_sanity() {
    let b = binding();
    let good = v4_frame("192.0.2.10", "192.0.2.1", 6, &[0; 20]);
    for n in 14..good.len() {
        assert_reason(&b, &good[..n], Reason::Malformed);
    }
    // Ethernet padding after the packet is fine.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xee; 30]);
    assert_reason(&b, &padded, Reason::Pass);
    // Version.
    let mut f = good.clone();
    f[14] = 0x65;
    assert_reason(&b, &f, Reason::Malformed);
    // IHL < 5.
    let mut f = good.clone();
    f[14] = 0x44;
    assert_reason(&b, &f, Reason::Malformed);
    // IHL 6 (options) with total length covering it: fine.
    let mut f = good.clone();
    f[14] = 0x46;
    assert_reason(&b, &f, Reason::Pass);
    // Total length < IHL*4.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_reason(&b, &f, Reason::Malformed);
    // Total length past the frame.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&41u16.to_be_bytes());
    assert_reason(&b, &f, Reason::Malformed);
    // Total length == header only: no L4 needed for TCP.
    let f = v4_frame("192.0.2.10", "192.0.2.1", 6, &[]);
    assert_reason(&b, &f, Reason::Pass);
}

#[test]
fn ipv4_udp_needs_header_in_first_fragment() {
    let b = binding();
    let f = v4_frame("192.0.2.10", "192.0.2.1", 17, &[0; 7]);
    assert_reason(&b, &f, Reason::Malformed);
    // The 8 bytes must be inside total length, not just in the padding.
    let mut padded = f.clone();
    padded.extend_from_slice(&[0; 20]);
    assert_reason(&b, &padded, Reason::Malformed);
    // Checked before the source: even a spoofed short UDP is malformed.
    let f = v4_frame("10.9.9.9", "192.0.2.1", 17, &[0; 3]);
    assert_reason(&b, &f, Reason::Malformed);
    // A non-first fragment needs no UDP header.
    let mf = eth(
        GW,
        MAC,
        0x0800,
        &ipv4(ip4("192.0.2.10"), ip4("192.0.2.1"), 17, 0x0010, &[0; 3]),
    );
    assert_reason(&b, &mf, Reason::Pass);
    // "More fragments" alone keeps it the first fragment.
    let first = eth(
        GW,
        MAC,
        0x0800,
        &ipv4(ip4("192.0.2.10"), ip4("192.0.2.1"), 17, 0x2000, &[0; 3]),
    );
    assert_reason(&b, &first, Reason::Malformed);
}

#[test]
fn ipv4_source() {
    let b = binding();
    assert_reason(
        &b,
        &v4_frame("192.0.2.10", "8.8.8.8", 6, &[0; 20]),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v4_frame("198.51.100.0", "8.8.8.8", 6, &[0; 20]),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v4_frame("198.51.100.15", "8.8.8.8", 1, &[8, 0, 0, 0]),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v4_frame("198.51.100.16", "8.8.8.8", 6, &[0; 20]),
        Reason::Ipv4Spoof,
    );
    assert_reason(
        &b,
        &v4_frame("192.0.2.11", "8.8.8.8", 17, &udp(1, 2, &[])),
        Reason::Ipv4Spoof,
    );
    assert_reason(
        &b,
        &v4_frame("0.0.0.0", "8.8.8.8", 6, &[0; 20]),
        Reason::Ipv4Spoof,
    );
    let none = Binding::new(Mac(MAC), vec![]);
    assert_reason(
        &none,
        &v4_frame("192.0.2.10", "8.8.8.8", 6, &[0; 20]),
        Reason::Ipv4Spoof,
    );
}

#[test]
fn ipv4_dhcp_client() {
    let none = Binding::new(Mac(MAC), vec![]);
    let discover = eth(
        BCAST,
        MAC,
        0x0800,
        &ipv4(
            [0; 4],
            [255; 4],
            17,
            0,
            &udp(68, 67, &bootp(1, MAC, &[53, 1, 1])),
        ),
    );
    assert_reason(&none, &discover, Reason::Pass);
    assert_eq!(
        evaluate(Some(&none), &discover).class,
        StormClass::Broadcast
    );
    // Wrong ports, destination or protocol: spoof.
    for (dst, sport, dport) in [
        ([255; 4], 67, 68),
        ([255; 4], 68, 68),
        ([192, 0, 2, 1], 68, 67),
    ] {
        let f = eth(
            BCAST,
            MAC,
            0x0800,
            &ipv4([0; 4], dst, 17, 0, &udp(sport, dport, &[])),
        );
        assert_reason(&none, &f, Reason::Ipv4Spoof);
    }
    let tcp = eth(
        BCAST,
        MAC,
        0x0800,
        &ipv4([0; 4], [255; 4], 6, 0, &udp(68, 67, &[])),
    );
    assert_reason(&none, &tcp, Reason::Ipv4Spoof);
    // Only the first fragment carries the ports.
    let later = eth(
        BCAST,
        MAC,
        0x0800,
        &ipv4([0; 4], [255; 4], 17, 1, &udp(68, 67, &[])),
    );
    assert_reason(&none, &later, Reason::Ipv4Spoof);
    // A bound client renewing from its own address is just a bound source.
    let renew = v4_frame(
        "192.0.2.10",
        "192.0.2.1",
        17,
        &udp(68, 67, &bootp(1, MAC, &[53, 1, 3])),
    );
    assert_reason(&none, &renew, Reason::Ipv4Spoof);
    assert_reason(&binding(), &renew, Reason::Pass);
}

#[test]
fn ipv4_dhcp_client_hardware_addresses() {
    let mut b = binding();
    let msg = |payload: &[u8]| v4_frame("192.0.2.10", "192.0.2.1", 17, &udp(68, 67, payload));
    let cid = |m: [u8; 6]| [&[61u8, 7, 1][..], &m].concat();
    // chaddr and client identifier (type 1) must be the bound MAC.
    assert_reason(&b, &msg(&bootp(1, MAC, &cid(MAC))), Reason::Pass);
    assert_reason(&b, &msg(&bootp(1, OTHER, &[53, 1, 1])), Reason::DhcpSpoof);
    assert_reason(&b, &msg(&bootp(1, MAC, &cid(OTHER))), Reason::DhcpSpoof);
    // A RELEASE with the own chaddr naming a neighbour's client id.
    let release = [&[53u8, 1, 7][..], &cid(OTHER)].concat();
    assert_reason(&b, &msg(&bootp(1, MAC, &release)), Reason::DhcpSpoof);
    // htype/hlen other than Ethernet/6.
    let mut p = bootp(1, MAC, &[]);
    p[1] = 6;
    assert_reason(&b, &msg(&p), Reason::DhcpSpoof);
    let mut p = bootp(1, MAC, &[]);
    p[2] = 16;
    assert_reason(&b, &msg(&p), Reason::DhcpSpoof);
    // Client ids of other types (DUID, RFC 4361) cannot be checked: pass;
    // type 1 with a wrong length and ids shorter than 2 bytes are refused.
    assert_reason(
        &b,
        &msg(&bootp(1, MAC, &[61, 5, 255, 1, 2, 3, 4])),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &msg(&bootp(1, MAC, &[61, 3, 0, b'a', b'b'])),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &msg(&bootp(1, MAC, &[61, 6, 1, 2, 0, 0, 0, 0])),
        Reason::DhcpSpoof,
    );
    assert_reason(&b, &msg(&bootp(1, MAC, &[61, 1, 0])), Reason::DhcpSpoof);
    // Option overload would move options out of the walked area.
    assert_reason(&b, &msg(&bootp(1, MAC, &[52, 1, 3])), Reason::DhcpSpoof);
    // The walk: 16 options (pads count) then END pass; one more option is refused.
    let pads = [0u8; 15];
    assert_reason(
        &b,
        &msg(&bootp(1, MAC, &[&pads[..], &cid(MAC)].concat())),
        Reason::Pass,
    );
    let hidden = [&vec![0u8; 16][..], &cid(OTHER)].concat();
    assert_reason(&b, &msg(&bootp(1, MAC, &hidden)), Reason::DhcpSpoof);
    // An option running past the end; a truncated BOOTP header.
    let mut p = bootp(1, MAC, &[]);
    p.truncate(240);
    p.extend_from_slice(&[12, 9, b'h']);
    assert_reason(&b, &msg(&p), Reason::Malformed);
    assert_reason(&b, &msg(&bootp(1, MAC, &[])[..235]), Reason::Malformed);
    // Plain BOOTP (no magic cookie): chaddr only.
    let mut p = bootp(1, MAC, &cid(OTHER));
    p[236] = 0;
    assert_reason(&b, &msg(&p), Reason::Pass);
    // BOOTREPLY to 67 (to a relay) and relayed requests (giaddr) are server/relay messages.
    assert_reason(&b, &msg(&bootp(2, MAC, &[])), Reason::DhcpServer);
    let mut p = bootp(1, OTHER, &[]);
    p[24..28].copy_from_slice(&[192, 0, 2, 10]);
    assert_reason(&b, &msg(&p), Reason::DhcpServer);
    let mut p = bootp(3, MAC, &[]);
    p[1] = 1;
    assert_reason(&b, &msg(&p), Reason::Malformed);
    // Fragmented client messages cannot be checked.
    let frag = eth(
        GW,
        MAC,
        0x0800,
        &ipv4(
            ip4("192.0.2.10"),
            ip4("192.0.2.1"),
            17,
            0x2000,
            &udp(68, 67, &bootp(1, MAC, &[])),
        ),
    );
    assert_reason(&b, &frag, Reason::Malformed);
    // A relay or server VM (--allow-dhcp-server) is not inspected.
    b.allow_dhcp_server = true;
    assert_reason(&b, &msg(&bootp(1, OTHER, &cid(OTHER))), Reason::Pass);
    assert_reason(&b, &frag, Reason::Pass);
}

#[test]
fn ipv4_dhcp_server() {
    let mut b = binding();
    let offer = v4_frame("192.0.2.10", "255.255.255.255", 17, &udp(67, 68, &[0; 240]));
    assert_reason(&b, &offer, Reason::DhcpServer);
    // Recognised by the destination port, whatever the source port or content.
    let odd = v4_frame("192.0.2.10", "255.255.255.255", 17, &udp(6767, 68, &[]));
    assert_reason(&b, &odd, Reason::DhcpServer);
    // A client's ephemeral source port 68 is fine.
    let dns = v4_frame("192.0.2.10", "192.0.2.1", 17, &udp(68, 53, &[0; 12]));
    assert_reason(&b, &dns, Reason::Pass);
    // Source first: a spoofed server reply is ipv4_spoof.
    let spoofed = v4_frame("192.0.2.77", "255.255.255.255", 17, &udp(67, 68, &[]));
    assert_reason(&b, &spoofed, Reason::Ipv4Spoof);
    // A server's reply to a relay (BOOTREPLY to 67).
    let f = v4_frame(
        "192.0.2.10",
        "192.0.2.1",
        17,
        &udp(67, 67, &bootp(2, OTHER, &[])),
    );
    assert_reason(&b, &f, Reason::DhcpServer);
    // Non-first fragments have no ports.
    let later = eth(
        GW,
        MAC,
        0x0800,
        &ipv4(ip4("192.0.2.10"), [255; 4], 17, 3, &udp(67, 68, &[])),
    );
    assert_reason(&b, &later, Reason::Pass);
    b.allow_dhcp_server = true;
    assert_reason(&b, &offer, Reason::Pass);
}

// ---- Section 5 ----

#[test]
fn arp_header_sanity() {
    let b = binding();
    let good = arp_frame(1, MAC, "192.0.2.10", "192.0.2.1");
    assert_reason(&b, &good, Reason::Pass);
    for n in 14..42 {
        assert_reason(&b, &good[..n], Reason::Malformed);
    }
    for (i, v) in [
        (14, 1),
        (15, 6),
        (16, 0x86),
        (17, 0xdd),
        (18, 8),
        (19, 16),
        (21, 3),
        (21, 0),
        (20, 1),
    ] {
        let mut f = good.clone();
        f[i] = v;
        assert_reason(&b, &f, Reason::Malformed);
    }
}

#[test]
fn arp_sender() {
    let b = binding();
    // Request, reply, gratuitous, probe.
    assert_reason(
        &b,
        &arp_frame(1, MAC, "192.0.2.10", "192.0.2.1"),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &arp_frame(2, MAC, "198.51.100.3", "192.0.2.1"),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &arp_frame(1, MAC, "192.0.2.10", "192.0.2.10"),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &arp_frame(2, MAC, "192.0.2.10", "192.0.2.10"),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &arp_frame(1, MAC, "0.0.0.0", "192.0.2.10"),
        Reason::Pass,
    );
    // A reply from 0.0.0.0 is not a probe.
    assert_reason(
        &b,
        &arp_frame(2, MAC, "0.0.0.0", "192.0.2.10"),
        Reason::ArpSpoof,
    );
    // Sender hardware address must be the bound MAC (Ethernet source is fine here).
    assert_reason(
        &b,
        &arp_frame(1, OTHER, "192.0.2.10", "192.0.2.1"),
        Reason::ArpSpoof,
    );
    assert_reason(
        &b,
        &arp_frame(1, MAC, "192.0.2.11", "192.0.2.1"),
        Reason::ArpSpoof,
    );
    assert_reason(
        &b,
        &arp_frame(2, MAC, "203.0.113.1", "192.0.2.1"),
        Reason::ArpSpoof,
    );
    // Trailing padding is fine.
    let mut padded = arp_frame(1, MAC, "192.0.2.10", "192.0.2.1");
    padded.extend_from_slice(&[0; 18]);
    assert_reason(&b, &padded, Reason::Pass);
}

#[test]
fn storm_classes() {
    let mut b = binding();
    let req = arp_frame(1, MAC, "192.0.2.10", "192.0.2.1");
    assert_eq!(evaluate(Some(&b), &req).class, StormClass::ArpRequest);
    // A request sent unicast is still an ARP request.
    let mut uni = req.clone();
    uni[..6].copy_from_slice(&GW);
    assert_eq!(evaluate(Some(&b), &uni).class, StormClass::ArpRequest);
    let reply = arp_frame(2, MAC, "192.0.2.10", "192.0.2.1");
    assert_eq!(evaluate(Some(&b), &reply).class, StormClass::Broadcast);
    let mut reply_uni = reply.clone();
    reply_uni[..6].copy_from_slice(&GW);
    assert_eq!(evaluate(Some(&b), &reply_uni).class, StormClass::Unicast);
    let mcast = v4_frame("192.0.2.10", "224.0.0.251", 17, &udp(5353, 5353, &[]));
    let mut mcast = mcast;
    mcast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 0xfb]);
    assert_eq!(evaluate(Some(&b), &mcast).class, StormClass::Multicast);
    // Behind an allowed VLAN tag too.
    b.vlans = vec![5];
    let tagged = vlan(
        BCAST,
        0x8100,
        5,
        0x0806,
        &arp(1, MAC, ip4("192.0.2.10"), ip4("192.0.2.1")),
    );
    assert_reason(&b, &tagged, Reason::Pass);
    assert_eq!(evaluate(Some(&b), &tagged).class, StormClass::ArpRequest);
}

// ---- Section 6 ----

const LL: &str = "fe80::ff:fe00:1"; // EUI-64 of 02:00:00:00:00:01

#[test]
fn eui64_is_allowed() {
    assert_eq!(ip6(LL), eui64_link_local(MAC));
    let b = binding();
    assert!(allowed_v6(&b, LL.parse().unwrap()));
    assert!(!allowed_v6(&b, "fe80::1".parse().unwrap()));
    assert!(allowed_v6(&b, "2001:db8:1::abcd".parse().unwrap()));
    assert!(!allowed_v6(&b, "2001:db8:2::".parse().unwrap()));
}

#[test]
fn ipv6_header_sanity() {
    let b = binding();
    let good = v6_frame("2001:db8::10", "2001:db8::1", 6, 64, &[0; 20]);
    assert_reason(&b, &good, Reason::Pass);
    for n in 14..good.len() {
        assert_reason(&b, &good[..n], Reason::Malformed);
    }
    let mut f = good.clone();
    f[14] = 0x40;
    assert_reason(&b, &f, Reason::Malformed);
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xff; 9]);
    assert_reason(&b, &padded, Reason::Pass);
    // No next header at all, empty payload.
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 59, 64, &[]),
        Reason::Pass,
    );
}

/// Sections 4.1 / 6.1: BIG TCP super-frames (over 64 KiB) carry length 0.
#[test]
fn big_tcp_super_frames() {
    let b = binding();
    // An IPv4 super-frame: total length 0, `l3_bytes` bytes from the IP header on.
    let v4 = |src: &str, proto: u8, l3_bytes: usize| {
        let mut f = v4_frame(src, "192.0.2.1", proto, &udp(40000, 5201, &[]));
        f.resize(14 + l3_bytes, 0x5a);
        f[16..18].copy_from_slice(&[0, 0]);
        f
    };
    assert_reason(&b, &v4("192.0.2.10", 6, 65_536), Reason::Pass);
    assert_reason(&b, &v4("192.0.2.10", 6, 185_000), Reason::Pass);
    assert_reason(&b, &v4("192.0.2.11", 6, 185_000), Reason::Ipv4Spoof);
    // Later checks still see the packet: a DHCP server reply stays one.
    let mut dhcp = v4("192.0.2.10", 17, 70_000);
    dhcp[34..38].copy_from_slice(&[0, 67, 0, 68]);
    assert_reason(&b, &dhcp, Reason::DhcpServer);
    // A length the field could have held, or a short frame: still malformed.
    assert_reason(&b, &v4("192.0.2.10", 6, 65_535), Reason::Malformed);
    assert_reason(&b, &v4("192.0.2.10", 6, 60), Reason::Malformed);
    let mut bad_ihl = v4("192.0.2.10", 6, 70_000);
    bad_ihl[14] = 0x44;
    assert_reason(&b, &bad_ihl, Reason::Malformed);
    // Behind an allowed 802.1Q tag the same rule holds from the inner header.
    let vb = Binding {
        vlans: vec![5],
        ..binding()
    };
    let mut tagged = v4("192.0.2.10", 6, 70_000);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    assert_reason(&vb, &tagged, Reason::Pass);

    // IPv6: payload length 0 and more than 65535 payload bytes in the frame.
    let v6 = |src: &str, nh: u8, payload: &[u8], payload_bytes: usize| {
        let mut f = v6_frame(src, "2001:db8::1", nh, 64, payload);
        f.resize(14 + 40 + payload_bytes, 0x5a);
        f[18..20].copy_from_slice(&[0, 0]);
        f
    };
    let udp6 = udp(40000, 5201, &[]);
    assert_reason(&b, &v6("2001:db8::10", 6, &[], 65_536), Reason::Pass);
    assert_reason(&b, &v6("2001:db8::10", 17, &udp6, 185_000), Reason::Pass);
    assert_reason(&b, &v6("2001:db8::11", 6, &[], 185_000), Reason::Ipv6Spoof);
    // 65535 payload bytes fit the field: length 0 means an empty payload,
    // which has no room for the UDP header.
    assert_reason(
        &b,
        &v6("2001:db8::10", 17, &udp6, 65_535),
        Reason::Malformed,
    );
    assert_reason(&b, &v6("2001:db8::10", 17, &udp6, 8), Reason::Malformed);
    // RFC 2675 jumbogram (hop-by-hop jumbo option, as Linux before 6.x put in
    // BIG TCP packets): walked like any hop-by-hop header.
    let mut hbh = vec![6, 0, 0xc2, 4];
    hbh.extend_from_slice(&185_000u32.to_be_bytes());
    assert_reason(&b, &v6("2001:db8::10", 0, &hbh, 185_000), Reason::Pass);
    assert_reason(&b, &v6("2001:db8::10", 0, &hbh, 1_000), Reason::Malformed);
}

#[test]
fn ipv6_source() {
    let b = binding();
    for (src, want) in [
        ("2001:db8::10", Reason::Pass),
        ("2001:db8:1::5", Reason::Pass),
        (LL, Reason::Pass),
        ("2001:db8::11", Reason::Ipv6Spoof),
        ("fe80::1", Reason::Ipv6Spoof),
        ("::", Reason::Ipv6Spoof),
    ] {
        assert_reason(&b, &v6_frame(src, "2001:db8::1", 6, 64, &[0; 20]), want);
        let echo = icmp6(128, 0, &[0; 4]);
        assert_reason(&b, &v6_frame(src, "2001:db8::1", 58, 64, &echo), want);
        let u = udp(1000, 53, &[]);
        assert_reason(&b, &v6_frame(src, "2001:db8::1", 17, 64, &u), want);
    }
}

#[test]
fn ipv6_extension_headers() {
    let b = binding();
    let tcp = [0u8; 20];
    // hop-by-hop -> dest opts -> routing -> TCP.
    let mut p = ext(60, 0);
    p.extend(ext(43, 1));
    p.extend(ext(6, 0));
    p.extend_from_slice(&tcp);
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 0, 64, &p),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v6_frame("2001:db8::99", "2001:db8::1", 0, 64, &p),
        Reason::Ipv6Spoof,
    );
    // Extension header longer than the payload.
    let mut p = ext(6, 0);
    p.truncate(7);
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 0, 64, &p),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 0, 64, &[6]),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 60, 64, &[]),
        Reason::Malformed,
    );
    // ... also when the frame's padding would hold it.
    let mut f = v6_frame("2001:db8::10", "2001:db8::1", 0, 64, &[6, 0]);
    f.extend_from_slice(&[0; 30]);
    assert_reason(&b, &f, Reason::Malformed);
    // Six headers then TCP: fine. Seven: malformed.
    let chain = |n: usize| {
        let mut p = Vec::new();
        for i in 0..n {
            p.extend(ext(if i + 1 == n { 6 } else { 60 }, 0));
        }
        p.extend_from_slice(&tcp);
        v6_frame("2001:db8::10", "2001:db8::1", 60, 64, &p)
    };
    assert_reason(&b, &chain(6), Reason::Pass);
    assert_reason(&b, &chain(7), Reason::Malformed);
    // Six headers ending in a seventh extension header that is never walked.
    let mut p = Vec::new();
    for _ in 0..6 {
        p.extend(ext(60, 0));
    }
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 60, 64, &p),
        Reason::Malformed,
    );
}

#[test]
fn ipv6_fragments() {
    let b = binding();
    // Non-first fragment: source only, even with garbage after it.
    let later = frag(58, 100);
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 44, 64, &later),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v6_frame("2001:db8::99", "2001:db8::1", 44, 64, &later),
        Reason::Ipv6Spoof,
    );
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1", 44, 64, &later),
        Reason::Ipv6Spoof,
    );
    // Fragment header cut short.
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "2001:db8::1", 44, 64, &later[..7]),
        Reason::Malformed,
    );
    // First fragment: the upper layer is inspected (an RA behind it is caught).
    let mut first = frag(58, 0);
    first.extend(icmp6(134, 0, &[0; 12]));
    assert_reason(
        &b,
        &v6_frame(LL, "ff02::1", 44, 255, &first),
        Reason::RaGuard,
    );
    // A non-first fragment as the 6th header is reached...
    let chain = |n_opts: usize| {
        let mut p = Vec::new();
        for i in 0..n_opts {
            p.extend(ext(if i + 1 == n_opts { 44 } else { 60 }, 0));
        }
        p.extend(frag(58, 1));
        v6_frame("2001:db8::10", "2001:db8::1", 60, 64, &p)
    };
    assert_reason(&b, &chain(5), Reason::Pass);
    // ... but not as the 7th.
    assert_reason(&b, &chain(6), Reason::Malformed);
}

/// A Fragment header with the M flag.
fn frag_more(nh: u8, offset8: u16) -> Vec<u8> {
    let mut h = frag(nh, offset8);
    h[3] |= 1;
    h
}

#[test]
fn ipv6_fragments_and_neighbor_discovery() {
    let b = binding();
    let g = "2001:db8::10";
    let with = |h: Vec<u8>, body: Vec<u8>| [h, body].concat();
    // Non-first fragments in link-local scope could carry ND/RA/MLD (RFC 7113).
    for (src, dst) in [
        (LL, "2001:db8::1"),
        (g, "fe80::1"),
        (g, "ff02::1"),
        (g, "ff02::1:ff00:1"),
    ] {
        assert_reason(
            &b,
            &v6_frame(src, dst, 44, 255, &frag(58, 100)),
            Reason::Malformed,
        );
    }
    assert_reason(
        &b,
        &v6_frame(g, "ff05::2", 44, 64, &frag(17, 100)),
        Reason::Pass,
    );
    // A later TCP fragment must not start inside the TCP header (RFC 1858).
    for (off, want) in [
        (1, Reason::Malformed),
        (2, Reason::Malformed),
        (3, Reason::Pass),
    ] {
        assert_reason(&b, &v6_frame(g, "2001:db8::1", 44, 64, &frag(6, off)), want);
    }
    // ND and MLD in any packet with a Fragment header, atomic or not (RFC 6980).
    let ns = icmp6(135, 0, &nd_body("2001:db8::1", &[]));
    let na = icmp6(136, 0, &nd_body(g, &[]));
    for h in [frag(58, 0), frag_more(58, 0)] {
        for (src, dst, msg) in [
            (g, "2001:db8::1", ns.clone()),
            (g, "2001:db8::1", na.clone()),
            (LL, "ff02::2", icmp6(133, 0, &[0; 4])),
            (LL, "ff02::16", icmp6(143, 0, &[0; 4])),
            (LL, "ff02::1", icmp6(130, 0, &[0; 20])),
        ] {
            assert_reason(
                &b,
                &v6_frame(src, dst, 44, 255, &with(h.clone(), msg)),
                Reason::NdSpoof,
            );
        }
        assert_reason(
            &b,
            &v6_frame(
                LL,
                "ff02::1",
                44,
                255,
                &with(h.clone(), icmp6(134, 0, &[0; 12])),
            ),
            Reason::RaGuard,
        );
    }
    // Other first fragments in link-local scope: malformed; atomic ones are whole packets.
    let echo = icmp6(128, 0, &[0; 8]);
    assert_reason(
        &b,
        &v6_frame(LL, "fe80::2", 44, 64, &with(frag_more(58, 0), echo.clone())),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame(LL, "fe80::2", 44, 64, &with(frag(58, 0), echo.clone())),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v6_frame(
            g,
            "2001:db8::1",
            44,
            64,
            &with(frag_more(58, 0), echo.clone()),
        ),
        Reason::Pass,
    );
    let u = udp(5353, 5353, &[0; 8]);
    assert_reason(
        &b,
        &v6_frame(LL, "ff02::fb", 44, 255, &with(frag_more(17, 0), u.clone())),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame(g, "ff02::fb", 44, 255, &with(frag_more(6, 0), vec![0; 20])),
        Reason::Malformed,
    );
    // RFC 7112: a first fragment carries the whole TCP header.
    assert_reason(
        &b,
        &v6_frame(
            g,
            "2001:db8::1",
            44,
            64,
            &with(frag_more(6, 0), vec![0; 19]),
        ),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame(
            g,
            "2001:db8::1",
            44,
            64,
            &with(frag_more(6, 0), vec![0; 20]),
        ),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v6_frame(g, "2001:db8::1", 44, 64, &with(frag(6, 0), vec![0; 4])),
        Reason::Pass,
    );
    // Nothing but the upper layer after a Fragment header (an overlapping
    // later fragment could rewrite what follows the first 8 bytes).
    let hidden = [frag_more(60, 0), ext(58, 0), echo.clone()].concat();
    assert_reason(
        &b,
        &v6_frame(g, "2001:db8::1", 44, 64, &hidden),
        Reason::Malformed,
    );
    let hidden = [frag(60, 0), ext(58, 0), echo].concat();
    assert_reason(
        &b,
        &v6_frame(g, "2001:db8::1", 44, 64, &hidden),
        Reason::Malformed,
    );
}

#[test]
fn ipv4_tcp_fragments() {
    let b = binding();
    let f = |frag: u16, payload: &[u8]| {
        eth(
            GW,
            MAC,
            0x0800,
            &ipv4(ip4("192.0.2.10"), ip4("192.0.2.1"), 6, frag, payload),
        )
    };
    // Tiny first fragment (RFC 1858): the TCP header must be in it.
    assert_reason(&b, &f(0x2000, &[0; 19]), Reason::Malformed);
    assert_reason(&b, &f(0x2000, &[0; 20]), Reason::Pass);
    // Unfragmented short TCP is not this rule's business.
    assert_reason(&b, &f(0x4000, &[0; 8]), Reason::Pass);
    // A later fragment starting inside the TCP header (offset 8 or 16 bytes).
    assert_reason(&b, &f(1, &[0; 8]), Reason::Malformed);
    assert_reason(&b, &f(0x2002, &[0; 8]), Reason::Malformed);
    assert_reason(&b, &f(3, &[0; 8]), Reason::Pass);
    // Spoofed sources are still ipv4_spoof first.
    let spoof = eth(
        GW,
        MAC,
        0x0800,
        &ipv4(ip4("192.0.2.99"), ip4("192.0.2.1"), 6, 1, &[0; 8]),
    );
    assert_reason(&b, &spoof, Reason::Ipv4Spoof);
}

#[test]
fn icmpv6_lengths() {
    let b = binding();
    assert_reason(
        &b,
        &v6_frame(LL, "ff02::2", 58, 255, &[133, 0, 0]),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame(LL, "ff02::2", 58, 255, &[133, 0, 0, 0]),
        Reason::Pass,
    );
    let ns = icmp6(135, 0, &nd_body("2001:db8::1", &[]));
    assert_reason(
        &b,
        &v6_frame(LL, "ff02::1:ff00:1", 58, 255, &ns),
        Reason::Pass,
    );
    assert_reason(
        &b,
        &v6_frame(LL, "ff02::1:ff00:1", 58, 255, &ns[..23]),
        Reason::Malformed,
    );
    // Length is checked before the source.
    assert_reason(
        &b,
        &v6_frame("2001:db8::99", "ff02::2", 58, 255, &[1, 0, 0]),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame("2001:db8::99", "ff02::2", 17, 255, &[0; 7]),
        Reason::Malformed,
    );
}

#[test]
fn unspecified_source() {
    let b = binding();
    // DAD: NS from :: to the solicited-node address of its target, no SLLA.
    let ns = icmp6(135, 0, &nd_body("2001:db8::10", &[]));
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1:ff00:10", 58, 255, &ns),
        Reason::Pass,
    );
    // DAD only for an address the port may use: a foreign target is nd_spoof
    // (a VM answering its neighbours' DAD makes their addresses fail).
    let ns_foreign = icmp6(135, 0, &nd_body("2001:db8::abcd:77", &[]));
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1:ffcd:77", 58, 255, &ns_foreign),
        Reason::NdSpoof,
    );
    // Inside a bound prefix, and the EUI-64 link-local: pass.
    for t in ["2001:db8:1::1234:5678", "fe80::ff:fe00:1"] {
        let ns = icmp6(135, 0, &nd_body(t, &[]));
        let o = ip6(t);
        let dst = format!("ff02::1:ff{:02x}:{:02x}{:02x}", o[13], o[14], o[15]);
        assert_reason(&b, &v6_frame("::", &dst, 58, 255, &ns), Reason::Pass);
    }
    // Wrong destination.
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1:ff00:11", 58, 255, &ns),
        Reason::Ipv6Spoof,
    );
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1", 58, 255, &ns),
        Reason::Ipv6Spoof,
    );
    assert_reason(
        &b,
        &v6_frame("::", "2001:db8::10", 58, 255, &ns),
        Reason::Ipv6Spoof,
    );
    // DAD with an SLLA: nd_spoof.
    let ns_slla = icmp6(135, 0, &nd_body("2001:db8::10", &[lla(1, MAC)]));
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1:ff00:10", 58, 255, &ns_slla),
        Reason::NdSpoof,
    );
    // MLDv2 report.
    let mld = icmp6(143, 0, &[0, 0, 0, 0]);
    assert_reason(&b, &v6_frame("::", "ff02::16", 58, 1, &mld), Reason::Pass);
    // NA, RS, echo from :: are spoofs.
    let na = icmp6(136, 0, &nd_body("2001:db8::10", &[]));
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1", 58, 255, &na),
        Reason::Ipv6Spoof,
    );
    assert_reason(
        &b,
        &v6_frame("::", "ff02::2", 58, 255, &icmp6(133, 0, &[0; 4])),
        Reason::Ipv6Spoof,
    );
    // RA from :: is a spoof first.
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1", 58, 255, &icmp6(134, 0, &[0; 12])),
        Reason::Ipv6Spoof,
    );
}

#[test]
fn ra_guard() {
    let b = binding();
    for ty in [134, 137] {
        let m = icmp6(ty, 0, &[0; 36]);
        assert_reason(&b, &v6_frame(LL, "ff02::1", 58, 255, &m), Reason::RaGuard);
        assert_reason(
            &b,
            &v6_frame("fe80::1", "ff02::1", 58, 255, &m),
            Reason::Ipv6Spoof,
        );
    }
    let rs = icmp6(133, 0, &[0; 4]);
    assert_reason(&b, &v6_frame(LL, "ff02::2", 58, 255, &rs), Reason::Pass);
    assert_reason(
        &b,
        &v6_frame("2001:db8::10", "ff02::2", 58, 7, &rs),
        Reason::Pass,
    );
}

#[test]
fn neighbor_discovery() {
    let b = binding();
    let ns = |opts: &[Vec<u8>]| icmp6(135, 0, &nd_body("2001:db8::1", opts));
    let na = |target: &str, opts: &[Vec<u8>]| icmp6(136, 0, &nd_body(target, opts));
    let send = |m: &[u8], hl: u8| v6_frame("2001:db8::10", "2001:db8::1", 58, hl, m);

    assert_reason(&b, &send(&ns(&[lla(1, MAC)]), 255), Reason::Pass);
    assert_reason(&b, &send(&ns(&[]), 255), Reason::Pass);
    assert_reason(&b, &send(&ns(&[lla(1, MAC)]), 254), Reason::NdSpoof);
    let mut code1 = ns(&[]);
    code1[1] = 1;
    assert_reason(&b, &send(&code1, 255), Reason::NdSpoof);
    // SLLA with another MAC, or a longer SLLA.
    assert_reason(&b, &send(&ns(&[lla(1, OTHER)]), 255), Reason::NdSpoof);
    let mut long = lla(1, MAC);
    long[1] = 2;
    long.extend_from_slice(&[0; 8]);
    assert_reason(&b, &send(&ns(&[long]), 255), Reason::NdSpoof);
    // A TLLA in an NS is not checked; an SLLA in an NA is not either.
    assert_reason(&b, &send(&ns(&[lla(2, OTHER)]), 255), Reason::Pass);
    assert_reason(
        &b,
        &send(&na("2001:db8::10", &[lla(1, OTHER)]), 255),
        Reason::Pass,
    );
    // NA: target must be allowed, TLLA must be ours.
    assert_reason(
        &b,
        &send(&na("2001:db8::10", &[lla(2, MAC)]), 255),
        Reason::Pass,
    );
    assert_reason(&b, &send(&na("2001:db8:1::77", &[]), 255), Reason::Pass);
    assert_reason(&b, &send(&na(LL, &[]), 255), Reason::Pass);
    assert_reason(
        &b,
        &send(&na("2001:db8::1", &[lla(2, MAC)]), 255),
        Reason::NdSpoof,
    );
    assert_reason(
        &b,
        &send(&na("2001:db8::10", &[lla(2, OTHER)]), 255),
        Reason::NdSpoof,
    );
    // Hop limit is checked before the NA target.
    assert_reason(&b, &send(&na("2001:db8::1", &[]), 64), Reason::NdSpoof);
}

#[test]
fn nd_options() {
    let b = binding();
    let send = |opts: &[u8]| {
        let mut body = nd_body("2001:db8::1", &[]);
        body.extend_from_slice(opts);
        v6_frame(
            "2001:db8::10",
            "2001:db8::1",
            58,
            255,
            &icmp6(135, 0, &body),
        )
    };
    let nonce = [14u8, 1, 1, 2, 3, 4, 5, 6];
    // Length 0.
    assert_reason(&b, &send(&[14, 0, 0, 0, 0, 0, 0, 0]), Reason::NdSpoof);
    // Running past the end of payload.
    assert_reason(&b, &send(&[14, 2, 0, 0, 0, 0, 0, 0]), Reason::Malformed);
    // A lone byte: needs 2.
    assert_reason(&b, &send(&[14]), Reason::Malformed);
    // Up to 4 options, ending exactly at the end of payload.
    assert_reason(&b, &send(&[nonce; 4].concat()), Reason::Pass);
    assert_reason(
        &b,
        &send(&[nonce.to_vec(), lla(1, MAC), nonce.to_vec(), lla(1, MAC)].concat()),
        Reason::Pass,
    );
    // A fifth: nd_spoof, whatever it holds.
    assert_reason(&b, &send(&[nonce; 5].concat()), Reason::NdSpoof);
    assert_reason(
        &b,
        &send(&[[nonce; 4].concat(), vec![0]].concat()),
        Reason::NdSpoof,
    );
    // A bad SLLA after 3 good options is still seen.
    assert_reason(
        &b,
        &send(&[[nonce; 3].concat(), lla(1, OTHER)].concat()),
        Reason::NdSpoof,
    );
    // Frame padding after the payload is not options.
    let mut f = send(&[nonce; 4].concat());
    f.extend_from_slice(&[0; 16]);
    assert_reason(&b, &f, Reason::Pass);
}

#[test]
fn dhcpv6() {
    let mut b = binding();
    let client = udp(546, 547, &[1, 0, 0, 0]);
    assert_reason(&b, &v6_frame(LL, "ff02::1:2", 17, 1, &client), Reason::Pass);
    let server = udp(547, 546, &[2, 0, 0, 0]);
    assert_reason(
        &b,
        &v6_frame(LL, "fe80::2", 17, 64, &server),
        Reason::DhcpServer,
    );
    assert_reason(
        &b,
        &v6_frame("fe80::3", "fe80::2", 17, 64, &server),
        Reason::Ipv6Spoof,
    );
    // Recognised by destination port and message type, not the source port.
    assert_reason(
        &b,
        &v6_frame(LL, "fe80::2", 17, 64, &udp(40000, 546, &[2, 0, 0, 0])),
        Reason::DhcpServer,
    );
    for ty in [2u8, 7, 10, 12, 13, 15, 0, 255] {
        assert_reason(
            &b,
            &v6_frame(LL, "ff02::1:2", 17, 64, &udp(547, 547, &[ty, 0, 0, 0])),
            Reason::DhcpServer,
        );
    }
    for ty in [1u8, 3, 4, 5, 6, 8, 9, 11, 20] {
        assert_reason(
            &b,
            &v6_frame(LL, "ff02::1:2", 17, 1, &udp(546, 547, &[ty, 0, 0, 0])),
            Reason::Pass,
        );
    }
    // Truncated DHCPv6 to 547; a client's ephemeral source port 546 is fine.
    assert_reason(
        &b,
        &v6_frame(LL, "ff02::1:2", 17, 1, &udp(546, 547, &[1, 0, 0])),
        Reason::Malformed,
    );
    assert_reason(
        &b,
        &v6_frame(LL, "fe80::2", 17, 64, &udp(546, 53, &[])),
        Reason::Pass,
    );
    b.allow_dhcp_server = true;
    assert_reason(&b, &v6_frame(LL, "fe80::2", 17, 64, &server), Reason::Pass);
    // DHCP from :: is never acceptable.
    assert_reason(
        &b,
        &v6_frame("::", "ff02::1:2", 17, 1, &client),
        Reason::Ipv6Spoof,
    );
}

// ---- Section 7 ----

#[test]
fn gcra_matches_ratecfg() {
    for (pps, burst) in [
        (0, 0),
        (0, 5),
        (1, 0),
        (1, 1),
        (100, 200),
        (3, 7),
        (2_000_000_000, 1),
        (u32::MAX, u32::MAX),
    ] {
        let g = Gcra::new(pps, burst);
        let c = RateCfg::new(pps, burst);
        assert_eq!(
            (g.interval_ns, g.tau_ns),
            (c.interval_ns, c.tau_ns),
            "{pps}/{burst}"
        );
    }
}

#[test]
fn gcra_burst_then_rate() {
    let mut g = Gcra::new(10, 3); // 100 ms interval, tau 200 ms
    let t0 = 5_000_000_000;
    assert!(g.conform(t0));
    assert!(g.conform(t0));
    assert!(g.conform(t0));
    assert!(!g.conform(t0));
    assert!(!g.conform(t0 + 99_999_999));
    assert!(g.conform(t0 + 100_000_000));
    assert!(!g.conform(t0 + 100_000_000));
    // After a long pause the full burst is back, no more.
    let t1 = t0 + 10_000_000_000;
    for _ in 0..3 {
        assert!(g.conform(t1));
    }
    assert!(!g.conform(t1));
    // At exactly the rate, every frame conforms.
    let mut g = Gcra::new(1000, 1);
    for i in 0..10_000u64 {
        assert!(g.conform(t0 + i * 1_000_000));
    }
    assert!(!g.conform(t0 + 9_999 * 1_000_000 + 1));
}

#[test]
fn gcra_disabled_and_clock_zero() {
    let mut g = Gcra::new(0, 10);
    for _ in 0..100_000 {
        assert!(g.conform(0));
    }
    // A fresh bucket at a small clock value admits its burst.
    let mut g = Gcra::new(1, 2);
    assert!(g.conform(0));
    assert!(g.conform(0));
    assert!(!g.conform(0));
}

#[test]
fn storm_buckets() {
    let mut b = binding();
    b.broadcast = Limit { pps: 1, burst: 2 };
    b.multicast = Limit { pps: 1, burst: 1 };
    b.arp = Limit { pps: 0, burst: 0 };
    let mut s = StormBuckets::new(&b);
    let t = 1_000_000_000;
    let bcast = v4_frame("192.0.2.10", "255.255.255.255", 6, &[0; 20]);
    let mut bcast = bcast;
    bcast[..6].copy_from_slice(&BCAST);
    let mut mcast = bcast.clone();
    mcast[..6].copy_from_slice(&[0x01, 0, 0x5e, 0, 0, 1]);
    let uni = v4_frame("192.0.2.10", "192.0.2.1", 6, &[0; 20]);
    let req = arp_frame(1, MAC, "192.0.2.10", "192.0.2.1");
    let spoof = v4_frame("192.0.2.99", "255.255.255.255", 6, &[0; 20]);
    let run = |b: &Binding, s: &mut StormBuckets, f: &[u8]| evaluate_with_storm(Some(b), s, f, t);
    assert_eq!(run(&b, &mut s, &bcast), Reason::Pass);
    // Spoofed frames never consume budget.
    assert_eq!(run(&b, &mut s, &spoof), Reason::Ipv4Spoof);
    assert_eq!(run(&b, &mut s, &bcast), Reason::Pass);
    assert_eq!(run(&b, &mut s, &bcast), Reason::BcastLimit);
    assert_eq!(run(&b, &mut s, &mcast), Reason::Pass);
    assert_eq!(run(&b, &mut s, &mcast), Reason::McastLimit);
    for _ in 0..1000 {
        assert_eq!(run(&b, &mut s, &uni), Reason::Pass);
        assert_eq!(run(&b, &mut s, &req), Reason::Pass);
    }
    // An ARP request to broadcast is charged to the ARP bucket, not broadcast.
    b.arp = Limit { pps: 1, burst: 1 };
    let mut s = StormBuckets::new(&b);
    assert_eq!(run(&b, &mut s, &req), Reason::Pass);
    assert_eq!(run(&b, &mut s, &req), Reason::ArpLimit);
    assert_eq!(run(&b, &mut s, &bcast), Reason::Pass);
}

// ---- Section 8 ----

#[test]
fn outcomes() {
    let mut b = binding();
    let o = outcome(Some(&b), Reason::Pass);
    assert_eq!((o.action, o.counted), (XDP_PASS, Counted::Passed));
    let o = outcome(Some(&b), Reason::Ipv4Spoof);
    assert_eq!(
        (o.action, o.counted),
        (XDP_DROP, Counted::Dropped(Reason::Ipv4Spoof))
    );
    let d = o.stats_delta(60);
    assert_eq!(d.dropped[Reason::Ipv4Spoof as usize].packets, 1);
    assert_eq!(d.dropped[Reason::Ipv4Spoof as usize].bytes, 60);
    assert_eq!(d.passed.packets, 0);
    b.mode = Mode::Monitor;
    let o = outcome(Some(&b), Reason::RaGuard);
    assert_eq!(
        (o.action, o.counted),
        (XDP_PASS, Counted::WouldDrop(Reason::RaGuard))
    );
    let d = o.stats_delta(90);
    assert_eq!(d.would_drop[Reason::RaGuard as usize].bytes, 90);
    assert_eq!((d.passed.packets, d.passed.bytes), (1, 90));
    assert_eq!(d.dropped[Reason::RaGuard as usize].packets, 0);
    let o = outcome(Some(&b), Reason::Pass);
    assert_eq!((o.action, o.counted), (XDP_PASS, Counted::Passed));
    // No binding: no monitor mode.
    let o = outcome(None, Reason::UnboundPort);
    assert_eq!(
        (o.action, o.counted),
        (XDP_DROP, Counted::Dropped(Reason::UnboundPort))
    );
}

// ---- Robustness ----

#[test]
fn never_panics_on_truncations_and_noise() {
    let mut b = binding();
    b.vlans = vec![1, 2];
    b.ethertypes = vec![0x88cc];
    let seeds = vec![
        v4_frame("192.0.2.10", "192.0.2.1", 17, &udp(68, 67, &[0; 10])),
        arp_frame(1, MAC, "192.0.2.10", "192.0.2.1"),
        v6_frame(
            "2001:db8::10",
            "2001:db8::1",
            58,
            255,
            &icmp6(135, 0, &nd_body("2001:db8::1", &[lla(1, MAC)])),
        ),
        v6_frame(
            "2001:db8::10",
            "2001:db8::1",
            0,
            64,
            &[ext(44, 0), frag(17, 0), udp(547, 546, &[])].concat(),
        ),
        vlan(GW, 0x8100, 1, 0x86dd, &[0x60; 80]),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for s in &seeds {
        for n in 0..=s.len() {
            let _ = evaluate(Some(&b), &s[..n]);
        }
        for _ in 0..2000 {
            let mut f = s.clone();
            let i = (next() as usize) % f.len();
            f[i] = next() as u8;
            let j = (next() as usize) % f.len();
            f[j] ^= 1 << (next() % 8);
            let d = evaluate(Some(&b), &f);
            let _ = outcome(Some(&b), d.reason);
        }
    }
    for len in 0..200 {
        let f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = evaluate(Some(&b), &f);
        let _ = evaluate(None, &f);
    }
}
