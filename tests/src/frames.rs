//! Frame builder for tests: pure functions returning `Vec<u8>`.
//!
//! Layering convention:
//! * [`eth`] / [`vlan`] / [`qinq`] build Ethernet frames around a payload.
//! * L3 builders ([`ipv4`], [`udp4`], [`icmp4_echo`], [`ipv6`], [`udp6`], the
//!   ND/RA/MLD builders, ...) return an **IP packet** (no Ethernet header);
//!   wrap it with [`eth`] (or the `eth_ipv4` / `eth_ipv6` shorthands).
//! * [`arp`] returns the 28-byte ARP body; wrap with `eth(.., ETH_P_ARP, ..)`
//!   or use [`arp_frame`].
//! * [`icmpv6`] returns an ICMPv6 *message* (header + body, checksummed for
//!   the given src/dst); [`ipv6`] wraps it.
//! * Extension headers ([`hop_by_hop`], [`dstopts`], [`routing`],
//!   [`fragment`], [`ext_hdr`]) return one header each; concatenate them in
//!   front of the upper-layer message and pass the first one's protocol number
//!   as `ipv6`'s `next_header`.
//! * The DHCP helpers [`dhcp_discover`] and [`dhcp_offer`] return complete
//!   Ethernet frames (their MACs are part of the message); `*_packet`
//!   variants return the IPv4 packet.
//!
//! All checksums are correct unless a function says otherwise; the
//! `set_*`/`fix_*` helpers let a test tamper with a packet and re-checksum.
use std::net::{Ipv4Addr, Ipv6Addr};

pub type Mac = [u8; 6];

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_LLDP: u16 = 0x88cc;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
pub const ICMPV6_RS: u8 = 133;
pub const ICMPV6_RA: u8 = 134;
pub const ICMPV6_NS: u8 = 135;
pub const ICMPV6_NA: u8 = 136;
pub const ICMPV6_REDIRECT: u8 = 137;
pub const ICMPV6_MLDV2_REPORT: u8 = 143;

/// ND option types.
pub const ND_OPT_SLLA: u8 = 1;
pub const ND_OPT_TLLA: u8 = 2;

/// NA flag bits (first byte after the ICMPv6 header).
pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

pub const BROADCAST: Mac = [0xff; 6];
pub const ZERO_MAC: Mac = [0; 6];

// ---------------------------------------------------------------- parsing helpers

/// Parses "aa:bb:cc:dd:ee:ff" (panics on bad input; for test literals).
pub fn mac(s: &str) -> Mac {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC {s:?}")))
        .collect();
    v.try_into().unwrap_or_else(|_| panic!("bad MAC {s:?}"))
}

/// Parses an IPv4 literal (panics on bad input).
pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|_| panic!("bad IPv4 {s:?}"))
}

/// Parses an IPv6 literal (panics on bad input).
pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or_else(|_| panic!("bad IPv6 {s:?}"))
}

pub fn mac_str(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// fe80::/64 + modified EUI-64 of `m`. Written out here on purpose rather
/// than calling `filter_common::eui64_link_local`: the frames are the oracle
/// the data path (which uses that function) is checked against.
pub fn eui64_ll(m: Mac) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// Solicited-node multicast address ff02::1:ffXX:XXXX of `a`.
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// Ethernet destination for an IPv6 multicast address (33:33 + last 32 bits).
pub fn ipv6_mcast_mac(a: Ipv6Addr) -> Mac {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// Ethernet destination for an IPv4 multicast address (01:00:5e + low 23 bits).
pub fn ipv4_mcast_mac(a: Ipv4Addr) -> Mac {
    let o = a.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
pub const ALL_DHCP_AGENTS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

// ---------------------------------------------------------------- checksums

/// One's-complement sum of 16-bit big-endian words (odd tail zero-padded), not folded.
fn sum16(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s = s.wrapping_add(u16::from_be_bytes([c[0], c[1]]) as u32);
    }
    if let [b] = chunks.remainder() {
        s = s.wrapping_add((*b as u32) << 8);
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Internet checksum of `data` (RFC 1071).
pub fn inet_checksum(data: &[u8]) -> u16 {
    fold(sum16(data))
}

fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    sum16(&src.octets()) + sum16(&dst.octets()) + proto as u32 + len as u32
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> u32 {
    sum16(&src.octets())
        + sum16(&dst.octets())
        + (len as u32 >> 16)
        + (len as u32 & 0xffff)
        + next as u32
}

/// Checksum of an L4 segment over the IPv4 pseudo-header.
pub fn l4_checksum4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    fold(pseudo4(src, dst, proto, seg.len()) + sum16(seg))
}

/// Checksum of an upper-layer message over the IPv6 pseudo-header.
pub fn l4_checksum6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, seg: &[u8]) -> u16 {
    fold(pseudo6(src, dst, next, seg.len()) + sum16(seg))
}

// ---------------------------------------------------------------- L2

/// Ethernet II frame.
pub fn eth(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// 802.1Q-tagged frame: TPID 0x8100, TCI = `vid` (PCP/DEI 0), then `inner_ethertype`.
pub fn vlan(dst: Mac, src: Mac, vid: u16, inner_ethertype: u16, payload: &[u8]) -> Vec<u8> {
    vlan_tpid(dst, src, ETH_P_8021Q, vid, inner_ethertype, payload)
}

/// A tagged frame with an arbitrary TPID and raw TCI.
pub fn vlan_tpid(
    dst: Mac,
    src: Mac,
    tpid: u16,
    tci: u16,
    inner_ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + payload.len());
    body.extend_from_slice(&tci.to_be_bytes());
    body.extend_from_slice(&inner_ethertype.to_be_bytes());
    body.extend_from_slice(payload);
    eth(dst, src, tpid, &body)
}

/// Double-tagged frame: outer TPID/VID (0x88a8 for 802.1ad, or 0x8100), inner 0x8100/VID.
pub fn qinq(
    dst: Mac,
    src: Mac,
    outer_tpid: u16,
    outer_vid: u16,
    inner_vid: u16,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut inner = Vec::with_capacity(4 + payload.len());
    inner.extend_from_slice(&inner_vid.to_be_bytes());
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    vlan_tpid(dst, src, outer_tpid, outer_vid, ETH_P_8021Q, &inner)
}

pub fn eth_ipv4(dst: Mac, src: Mac, pkt: &[u8]) -> Vec<u8> {
    eth(dst, src, ETH_P_IP, pkt)
}

pub fn eth_ipv6(dst: Mac, src: Mac, pkt: &[u8]) -> Vec<u8> {
    eth(dst, src, ETH_P_IPV6, pkt)
}

/// Pads a frame with zeros to at least `len` bytes (e.g. 60, the Ethernet minimum).
pub fn pad_to(mut f: Vec<u8>, len: usize) -> Vec<u8> {
    if f.len() < len {
        f.resize(len, 0);
    }
    f
}

/// First `len` bytes of `f`.
pub fn truncate(f: &[u8], len: usize) -> Vec<u8> {
    f[..len.min(f.len())].to_vec()
}

// ---------------------------------------------------------------- IPv4

/// IPv4 header fields beyond the basics, for [`ipv4_with`].
#[derive(Clone, Debug)]
pub struct Ipv4Opts {
    pub ttl: u8,
    pub id: u16,
    /// Flags (3 high bits) and fragment offset (in 8-byte units), as on the wire.
    pub frag: u16,
    pub tos: u8,
    /// IPv4 options, padded with zeros to a multiple of 4.
    pub options: Vec<u8>,
}

impl Default for Ipv4Opts {
    fn default() -> Self {
        Ipv4Opts {
            ttl: 64,
            id: 0x1234,
            frag: 0x4000, // DF
            tos: 0,
            options: Vec::new(),
        }
    }
}

/// IPv4 packet (20-byte header, DF, TTL 64) with a correct header checksum.
/// The payload is used as is (its L4 checksum is the caller's).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, proto, payload, &Ipv4Opts::default())
}

pub fn ipv4_with(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8], o: &Ipv4Opts) -> Vec<u8> {
    let mut opts = o.options.clone();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let hl = 20 + opts.len();
    assert!(hl <= 60, "IPv4 options too long");
    let total = hl + payload.len();
    let mut p = Vec::with_capacity(total);
    p.push(0x40 | (hl / 4) as u8);
    p.push(o.tos);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&o.id.to_be_bytes());
    p.extend_from_slice(&o.frag.to_be_bytes());
    p.push(o.ttl);
    p.push(proto);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&opts);
    let c = inet_checksum(&p[..hl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Recomputes the IPv4 header checksum of `pkt` (an IPv4 packet, no Ethernet header).
pub fn fix_ipv4_checksum(pkt: &mut [u8]) {
    let hl = ((pkt[0] & 0xf) as usize * 4).min(pkt.len());
    pkt[10] = 0;
    pkt[11] = 0;
    let c = inet_checksum(&pkt[..hl]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
}

/// UDP datagram (header + payload) with checksum over the IPv4 pseudo-header.
pub fn udp4_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut u = udp_header(sport, dport, payload);
    let mut c = l4_checksum4(src, dst, IPPROTO_UDP, &u);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

fn udp_header(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// IPv4/UDP packet.
pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    ipv4(
        src,
        dst,
        IPPROTO_UDP,
        &udp4_segment(src, dst, sport, dport, payload),
    )
}

/// IPv4 ICMP echo request packet.
pub fn icmp4_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    ipv4(src, dst, IPPROTO_ICMP, &icmp4_msg(8, 0, id, seq, payload))
}

/// IPv4 ICMP echo reply packet.
pub fn icmp4_echo_reply(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    ipv4(src, dst, IPPROTO_ICMP, &icmp4_msg(0, 0, id, seq, payload))
}

fn icmp4_msg(typ: u8, code: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

// ---------------------------------------------------------------- DHCPv4

const DHCP_MAGIC: [u8; 4] = [0x63, 0x82, 0x53, 0x63];

fn bootp(
    op: u8,
    xid: u32,
    chaddr: Mac,
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
    opts: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(300);
    b.push(op); // op
    b.push(1); // htype ethernet
    b.push(6); // hlen
    b.push(0); // hops
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&[0, 0]); // secs
    b.extend_from_slice(&0x8000u16.to_be_bytes()); // flags: broadcast
    b.extend_from_slice(&[0; 4]); // ciaddr
    b.extend_from_slice(&yiaddr.octets());
    b.extend_from_slice(&siaddr.octets());
    b.extend_from_slice(&[0; 4]); // giaddr
    b.extend_from_slice(&chaddr);
    b.extend_from_slice(&[0; 10]); // chaddr padding
    b.extend_from_slice(&[0; 64]); // sname
    b.extend_from_slice(&[0; 128]); // file
    b.extend_from_slice(&DHCP_MAGIC);
    b.extend_from_slice(opts);
    b.push(255); // end
    while b.len() < 300 {
        b.push(0);
    }
    b
}

fn xid_of(m: Mac) -> u32 {
    u32::from_be_bytes([m[2], m[3], m[4], m[5]]) ^ 0x5a5a_0000
}

/// BOOTP/DHCPDISCOVER payload (the UDP payload) for client `m`.
pub fn dhcp_discover_payload(m: Mac) -> Vec<u8> {
    let mut opts = vec![53, 1, 1]; // DHCP message type: DISCOVER
    opts.extend_from_slice(&[61, 7, 1]); // client identifier: htype 1 + MAC
    opts.extend_from_slice(&m);
    opts.extend_from_slice(&[55, 4, 1, 3, 6, 51]); // parameter request list
    opts.extend_from_slice(&[57, 2, 0x05, 0xdc]); // max message size 1500
    bootp(
        1,
        xid_of(m),
        m,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &opts,
    )
}

/// DHCPDISCOVER as an IPv4 packet: 0.0.0.0:68 -> 255.255.255.255:67.
pub fn dhcp_discover_packet(m: Mac) -> Vec<u8> {
    udp4(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        68,
        67,
        &dhcp_discover_payload(m),
    )
}

/// DHCPDISCOVER frame from client `m` to ff:ff:ff:ff:ff:ff.
pub fn dhcp_discover(m: Mac) -> Vec<u8> {
    eth(BROADCAST, m, ETH_P_IP, &dhcp_discover_packet(m))
}

/// DHCPOFFER as an IPv4 packet: `server_ip`:67 -> 255.255.255.255:68, offering `yiaddr` to `client`.
pub fn dhcp_offer_packet(server_ip: Ipv4Addr, client: Mac, yiaddr: Ipv4Addr) -> Vec<u8> {
    let mut opts = vec![53, 1, 2]; // OFFER
    opts.extend_from_slice(&[54, 4]); // server identifier
    opts.extend_from_slice(&server_ip.octets());
    opts.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]); // lease 3600 s
    opts.extend_from_slice(&[1, 4, 255, 255, 255, 0]); // subnet mask
    opts.extend_from_slice(&[3, 4]); // router
    opts.extend_from_slice(&server_ip.octets());
    let payload = bootp(2, xid_of(client), client, yiaddr, server_ip, &opts);
    udp4(server_ip, Ipv4Addr::BROADCAST, 67, 68, &payload)
}

/// DHCPOFFER frame from `server_mac` to broadcast.
pub fn dhcp_offer(server_mac: Mac, server_ip: Ipv4Addr, client: Mac, yiaddr: Ipv4Addr) -> Vec<u8> {
    eth(
        BROADCAST,
        server_mac,
        ETH_P_IP,
        &dhcp_offer_packet(server_ip, client, yiaddr),
    )
}

// ---------------------------------------------------------------- ARP

/// ARP body (28 bytes): Ethernet/IPv4, opcode `op`.
pub fn arp(op: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = Vec::with_capacity(28);
    a.extend_from_slice(&1u16.to_be_bytes()); // htype ethernet
    a.extend_from_slice(&ETH_P_IP.to_be_bytes()); // ptype
    a.push(6);
    a.push(4);
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// Full ARP frame; Ethernet source = `sha`, destination broadcast for a
/// request and `tha` for a reply.
pub fn arp_frame(op: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let dst = if op == ARP_REQUEST { BROADCAST } else { tha };
    eth(dst, sha, ETH_P_ARP, &arp(op, sha, spa, tha, tpa))
}

// ---------------------------------------------------------------- IPv6

/// IPv6 packet: 40-byte header (traffic class 0, flow label 0) + payload
/// (extension headers and upper-layer message, as given).
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next_header);
    p.push(hop_limit);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// Sets the hop limit of an IPv6 packet (not part of any checksum).
pub fn set_hop_limit(pkt: &mut [u8], hl: u8) {
    pkt[7] = hl;
}

/// ICMPv6 message (type, code, checksum, body) checksummed for `src` -> `dst`.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, typ: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(body);
    let c = l4_checksum6(src, dst, IPPROTO_ICMPV6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// ICMPv6 packet with no extension headers.
pub fn icmpv6_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    typ: u8,
    code: u8,
    body: &[u8],
) -> Vec<u8> {
    ipv6(
        src,
        dst,
        IPPROTO_ICMPV6,
        hop_limit,
        &icmpv6(src, dst, typ, code, body),
    )
}

/// ICMPv6 echo request packet (hop limit 64).
pub fn icmpv6_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(payload);
    icmpv6_packet(src, dst, 64, ICMPV6_ECHO_REQUEST, 0, &body)
}

/// An ND link-layer address option (type 1 SLLA or 2 TLLA, length 1).
pub fn nd_opt_lla(typ: u8, m: Mac) -> Vec<u8> {
    let mut o = vec![typ, 1];
    o.extend_from_slice(&m);
    o
}

/// A raw ND option: type, length (in 8-byte units, as written), body padded
/// or cut to `len * 8 - 2` bytes (len 0: just the two bytes).
pub fn nd_opt_raw(typ: u8, len: u8, body: &[u8]) -> Vec<u8> {
    let mut o = vec![typ, len];
    let want = (len as usize * 8).saturating_sub(2);
    let mut b = body.to_vec();
    b.resize(want, 0);
    o.extend_from_slice(&b);
    o
}

/// Neighbor Solicitation packet (hop limit 255) for `target`, with an
/// optional Source Link-Layer Address option.
pub fn nd_ns(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, slla: Option<Mac>) -> Vec<u8> {
    let opts = slla.map(|m| nd_opt_lla(ND_OPT_SLLA, m)).unwrap_or_default();
    nd_ns_opts(src, dst, target, &opts)
}

/// Neighbor Solicitation packet with raw option bytes.
pub fn nd_ns_opts(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; 4]; // reserved
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(opts);
    icmpv6_packet(src, dst, 255, ICMPV6_NS, 0, &body)
}

/// DAD probe: NS from `::` to the solicited-node address of `target`, no options.
pub fn nd_dad(target: Ipv6Addr) -> Vec<u8> {
    nd_ns(Ipv6Addr::UNSPECIFIED, solicited_node(target), target, None)
}

/// Neighbor Advertisement packet (hop limit 255). `flags` is a combination
/// of `NA_ROUTER`, `NA_SOLICITED`, `NA_OVERRIDE`; optional Target LLA option.
pub fn nd_na(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    flags: u8,
    tlla: Option<Mac>,
) -> Vec<u8> {
    let opts = tlla.map(|m| nd_opt_lla(ND_OPT_TLLA, m)).unwrap_or_default();
    nd_na_opts(src, dst, target, flags, &opts)
}

/// Neighbor Advertisement packet with raw option bytes.
pub fn nd_na_opts(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    flags: u8,
    opts: &[u8],
) -> Vec<u8> {
    let mut body = vec![flags, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(opts);
    icmpv6_packet(src, dst, 255, ICMPV6_NA, 0, &body)
}

/// Router Advertisement packet to ff02::1 (hop limit 255), router lifetime
/// 1800 s, optional SLLA and one /64 prefix-information option for `prefix`.
pub fn ra(src: Ipv6Addr, slla: Option<Mac>, prefix: Option<Ipv6Addr>) -> Vec<u8> {
    let mut body = vec![64, 0]; // cur hop limit, flags
    body.extend_from_slice(&1800u16.to_be_bytes()); // router lifetime
    body.extend_from_slice(&0u32.to_be_bytes()); // reachable time
    body.extend_from_slice(&0u32.to_be_bytes()); // retrans timer
    if let Some(m) = slla {
        body.extend_from_slice(&nd_opt_lla(ND_OPT_SLLA, m));
    }
    if let Some(p) = prefix {
        body.extend_from_slice(&[3, 4, 64, 0xc0]); // PIO, len 4, /64, L+A
        body.extend_from_slice(&86400u32.to_be_bytes());
        body.extend_from_slice(&14400u32.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&p.octets());
    }
    icmpv6_packet(src, ALL_NODES, 255, ICMPV6_RA, 0, &body)
}

/// Router Solicitation packet to ff02::2 (hop limit 255), optional SLLA.
pub fn rs(src: Ipv6Addr, slla: Option<Mac>) -> Vec<u8> {
    let mut body = vec![0u8; 4];
    if let Some(m) = slla {
        body.extend_from_slice(&nd_opt_lla(ND_OPT_SLLA, m));
    }
    icmpv6_packet(src, ALL_ROUTERS, 255, ICMPV6_RS, 0, &body)
}

/// Redirect packet (hop limit 255): "use `target` as first hop for `dest`".
pub fn redirect(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, dest: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&dest.octets());
    icmpv6_packet(src, dst, 255, ICMPV6_REDIRECT, 0, &body)
}

/// MLDv2 report to ff02::16 (hop limit 1, hop-by-hop Router Alert), one
/// MODE_IS_EXCLUDE record (no sources) per group. `src` is usually `::` or link-local.
pub fn mldv2_report(src: Ipv6Addr, groups: &[Ipv6Addr]) -> Vec<u8> {
    let mut body = vec![0u8, 0];
    body.extend_from_slice(&(groups.len() as u16).to_be_bytes());
    for g in groups {
        body.extend_from_slice(&[2, 0, 0, 0]); // MODE_IS_EXCLUDE, aux 0, 0 sources
        body.extend_from_slice(&g.octets());
    }
    let msg = icmpv6(src, ALL_MLDV2_ROUTERS, ICMPV6_MLDV2_REPORT, 0, &body);
    let mut payload = hop_by_hop_router_alert(IPPROTO_ICMPV6);
    payload.extend_from_slice(&msg);
    ipv6(src, ALL_MLDV2_ROUTERS, IPPROTO_HOPOPTS, 1, &payload)
}

/// UDP datagram checksummed over the IPv6 pseudo-header.
pub fn udp6_segment(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut u = udp_header(sport, dport, payload);
    let mut c = l4_checksum6(src, dst, IPPROTO_UDP, &u);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// IPv6/UDP packet (hop limit 64).
pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    ipv6(
        src,
        dst,
        IPPROTO_UDP,
        64,
        &udp6_segment(src, dst, sport, dport, payload),
    )
}

fn dhcpv6_opt(code: u16, data: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(4 + data.len());
    o.extend_from_slice(&code.to_be_bytes());
    o.extend_from_slice(&(data.len() as u16).to_be_bytes());
    o.extend_from_slice(data);
    o
}

fn duid_ll(m: Mac) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1]; // DUID-LL, hw type ethernet
    d.extend_from_slice(&m);
    d
}

/// DHCPv6 SOLICIT from `client` (source = its EUI-64 link-local) :546 to ff02::1:2 :547.
pub fn dhcpv6_solicit(client: Mac) -> Vec<u8> {
    let mut m = vec![1, 0x12, 0x34, 0x56]; // SOLICIT, transaction id
    m.extend_from_slice(&dhcpv6_opt(1, &duid_ll(client))); // client id
    m.extend_from_slice(&dhcpv6_opt(8, &[0, 0])); // elapsed time
    let mut ia = Vec::new();
    ia.extend_from_slice(&1u32.to_be_bytes()); // IAID
    ia.extend_from_slice(&[0; 8]); // T1, T2
    m.extend_from_slice(&dhcpv6_opt(3, &ia)); // IA_NA
    m.extend_from_slice(&dhcpv6_opt(6, &[0, 23])); // ORO: DNS servers
    udp6(eui64_ll(client), ALL_DHCP_AGENTS, 546, 547, &m)
}

/// DHCPv6 ADVERTISE from `server` (source = its EUI-64 link-local) :547 to
/// the client's link-local :546, offering `addr`.
pub fn dhcpv6_advertise(server: Mac, client: Mac, addr: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![2, 0x12, 0x34, 0x56]; // ADVERTISE, transaction id
    m.extend_from_slice(&dhcpv6_opt(1, &duid_ll(client)));
    m.extend_from_slice(&dhcpv6_opt(2, &duid_ll(server)));
    let mut iaaddr = addr.octets().to_vec();
    iaaddr.extend_from_slice(&3600u32.to_be_bytes());
    iaaddr.extend_from_slice(&7200u32.to_be_bytes());
    let mut ia = Vec::new();
    ia.extend_from_slice(&1u32.to_be_bytes());
    ia.extend_from_slice(&1800u32.to_be_bytes());
    ia.extend_from_slice(&2880u32.to_be_bytes());
    ia.extend_from_slice(&dhcpv6_opt(5, &iaaddr));
    m.extend_from_slice(&dhcpv6_opt(3, &ia));
    udp6(eui64_ll(server), eui64_ll(client), 547, 546, &m)
}

// ---------------------------------------------------------------- IPv6 extension headers

/// A generic extension header: next header, hdr-ext-len `len_units` (the
/// header is `(len_units + 1) * 8` bytes), `body` padded/cut to fill it.
/// Use it to build headers whose length field lies.
pub fn ext_hdr(next_header: u8, len_units: u8, body: &[u8]) -> Vec<u8> {
    let size = (len_units as usize + 1) * 8;
    let mut h = vec![next_header, len_units];
    let mut b = body.to_vec();
    b.resize(size - 2, 0);
    h.extend_from_slice(&b);
    h
}

/// Options header body (TLV options) padded with PadN/Pad1 to a multiple of 8.
fn opts_header(next_header: u8, options: &[u8]) -> Vec<u8> {
    let mut body = options.to_vec();
    let total = (2 + body.len()).div_ceil(8) * 8;
    let pad = total - 2 - body.len();
    match pad {
        0 => {}
        1 => body.push(0), // Pad1
        n => {
            body.push(1); // PadN
            body.push((n - 2) as u8);
            body.extend(std::iter::repeat_n(0, n - 2));
        }
    }
    let mut h = vec![next_header, (total / 8 - 1) as u8];
    h.extend_from_slice(&body);
    h
}

/// Hop-by-hop options header with the given raw TLV options (padded to 8 bytes).
pub fn hop_by_hop(next_header: u8, options: &[u8]) -> Vec<u8> {
    opts_header(next_header, options)
}

/// Hop-by-hop header carrying a Router Alert (MLD) option.
pub fn hop_by_hop_router_alert(next_header: u8) -> Vec<u8> {
    opts_header(next_header, &[5, 2, 0, 0])
}

/// Destination options header with the given raw TLV options (padded to 8 bytes).
pub fn dstopts(next_header: u8, options: &[u8]) -> Vec<u8> {
    opts_header(next_header, options)
}

/// Routing header of `routing_type` with `segments_left` and a list of addresses
/// (type 0/2-style layout: 4 reserved bytes then the addresses).
pub fn routing(
    next_header: u8,
    routing_type: u8,
    segments_left: u8,
    addrs: &[Ipv6Addr],
) -> Vec<u8> {
    let mut h = vec![
        next_header,
        (addrs.len() * 2) as u8,
        routing_type,
        segments_left,
    ];
    h.extend_from_slice(&[0; 4]);
    for a in addrs {
        h.extend_from_slice(&a.octets());
    }
    h
}

/// Fragment header: `offset` in 8-byte units, M flag `more`, identification `id`.
pub fn fragment(next_header: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next_header, 0];
    let off = (offset << 3) | more as u16;
    h.extend_from_slice(&off.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// Concatenates byte slices (handy for ext-header chains).
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_verifies() {
        let p = udp4(v4("192.0.2.1"), v4("192.0.2.2"), 1000, 2000, b"hello");
        assert_eq!(p.len(), 20 + 8 + 5);
        assert_eq!(inet_checksum(&p[..20]), 0);
        // UDP checksum verifies over the pseudo-header
        assert_eq!(
            l4_checksum4(v4("192.0.2.1"), v4("192.0.2.2"), 17, &p[20..]),
            0
        );
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // Example from Wikipedia's "IPv4 header checksum" article.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(inet_checksum(&h), 0xb861);
    }

    #[test]
    fn icmpv6_checksum_verifies() {
        let src = v6("2001:db8::1");
        let p = nd_ns(
            src,
            solicited_node(v6("2001:db8::2")),
            v6("2001:db8::2"),
            Some(mac("02:00:00:00:00:01")),
        );
        assert_eq!(p.len(), 40 + 24 + 8);
        assert_eq!(p[7], 255);
        assert_eq!(
            l4_checksum6(src, solicited_node(v6("2001:db8::2")), 58, &p[40..]),
            0
        );
        assert_eq!(
            solicited_node(v6("2001:db8::aabb:ccdd")),
            v6("ff02::1:ffbb:ccdd")
        );
    }

    #[test]
    fn dhcp_shapes() {
        let m = mac("02:00:00:00:00:01");
        let f = dhcp_discover(m);
        assert_eq!(&f[..6], &BROADCAST);
        assert_eq!(u16::from_be_bytes([f[12], f[13]]), ETH_P_IP);
        let ip = &f[14..];
        assert_eq!(&ip[12..16], &[0, 0, 0, 0]);
        assert_eq!(&ip[16..20], &[255; 4]);
        assert_eq!(&ip[20..24], &[0, 68, 0, 67]);
        assert_eq!(&ip[28 + 236..28 + 240], &DHCP_MAGIC);
        let o = dhcp_offer(
            mac("02:00:00:00:00:fe"),
            v4("192.0.2.254"),
            m,
            v4("192.0.2.10"),
        );
        assert_eq!(&o[14 + 20..14 + 24], &[0, 67, 0, 68]);
        let s = dhcpv6_solicit(m);
        assert_eq!(&s[40..44], &[2, 34, 2, 35]);
        let a = dhcpv6_advertise(mac("02:00:00:00:00:fe"), m, v6("2001:db8::10"));
        assert_eq!(&a[40..44], &[2, 35, 2, 34]);
    }

    #[test]
    fn ext_headers_are_multiples_of_8() {
        assert_eq!(hop_by_hop(58, &[]).len(), 8);
        assert_eq!(hop_by_hop_router_alert(58).len(), 8);
        assert_eq!(dstopts(58, &[0x1e, 8, 1, 2, 3, 4, 5, 6, 7, 8]).len(), 16);
        assert_eq!(routing(58, 0, 1, &[v6("2001:db8::1")]).len(), 24);
        assert_eq!(fragment(17, 0, true, 1).len(), 8);
        assert_eq!(ext_hdr(58, 2, &[]).len(), 24);
        let m = mldv2_report(Ipv6Addr::UNSPECIFIED, &[v6("ff02::1:ff00:1")]);
        assert_eq!(m[6], 0);
        assert_eq!(m[40], 58);
        assert_eq!(m[48], 143);
    }

    #[test]
    fn arp_and_vlan() {
        let a = arp_frame(
            ARP_REQUEST,
            mac("02:00:00:00:00:01"),
            v4("192.0.2.1"),
            ZERO_MAC,
            v4("192.0.2.2"),
        );
        assert_eq!(a.len(), 42);
        let v = vlan(
            BROADCAST,
            mac("02:00:00:00:00:01"),
            100,
            ETH_P_ARP,
            &a[14..],
        );
        assert_eq!(&v[12..18], &[0x81, 0, 0, 100, 0x08, 0x06]);
        assert_eq!(
            eui64_ll(mac("52:54:00:12:34:56")),
            v6("fe80::5054:ff:fe12:3456")
        );
    }
}
