//! Seedable random bindings and frames for the differential tester
//! ([`crate::difftest`]).
//!
//! * [`Rng`] is a self-contained splitmix64: the same seed gives the same
//!   bindings and frames on every machine and Rust version, so a failing
//!   `fuzz --seed S` run can be replayed exactly.
//! * [`Gen::binding`] draws a random port binding: a unicast MAC, 0-4 IPv4
//!   addresses, 0-2 IPv4 prefixes, 0-3 IPv6 addresses and 0-1 IPv6 prefix
//!   (all inside 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
//!   2001:db8::/32, from small pools so that frames often hit them), random
//!   `allow_dhcp_server`, monitor mode, allowed EtherTypes and VLANs.
//! * [`Gen::frame`] draws a valid frame of one of many classes (IPv4
//!   TCP/UDP/ICMP, fragments and options, DHCP client and server, ARP
//!   request/reply/probe/gratuitous, IPv6 with ND NS/NA/DAD, RA, Redirect,
//!   RS, MLDv2, DHCPv6 client and server, extension-header chains including
//!   fragments and chains longer than the program walks, 802.1Q/QinQ/802.1ad
//!   tags, other EtherTypes, 802.3 length frames, pure noise), mostly from
//!   the binding's own MAC and addresses and otherwise from random ones,
//!   then mutates a good share of them (bit flips, truncation at any length,
//!   lying IP length fields, small values in header bytes, random bytes).
//!
//! **Storm control is disabled in every generated binding** (broadcast,
//! multicast and ARP limits are 0 = unlimited). Rate limits depend on the
//! kernel's clock (jiffies, `bpf_jiffies64`), which a differential run cannot
//! control, so a frame's verdict would depend on how fast the test runs.
//! Storm control is covered separately: the GCRA itself by the deterministic
//! model (`portguard::model::Gcra`, unit-tested against `RateCfg`), and the
//! kernel's buckets by flood tests in network namespaces. With the limits
//! off, the model's sections 1-6 verdict is the program's final reason.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{MAX_ETHERTYPES, MAX_INLINE_ADDRS, MAX_VLANS};
use portguard::{
    binding::{Binding, Limit, Mode},
    parse::{masked, IpNet, Mac as BoundMac},
};

use crate::frames::{self as f, Mac};

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast and good enough here.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Between `lo` and `hi` (inclusive) random bytes.
    pub fn bytes_in(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.bytes(n)
    }

    /// An independent stream (for a sub-generator whose draws must not
    /// shift the parent's sequence).
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64() ^ 0x6a09_e667_f3bc_c909)
    }
}

const V4_NETS: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
const ETHERTYPE_POOL: [u16; 8] = [
    0x88cc, 0x88b5, 0x88b6, 0x9000, 0x8035, 0x0842, 0x88e5, 0x8809,
];
const VLAN_POOL: [u16; 7] = [0, 1, 2, 5, 100, 1000, 4094];
const TENANTS: [&str; 3] = ["", "t1", "acme"];

fn random_unicast_mac(rng: &mut Rng) -> Mac {
    loop {
        let mut m = [0u8; 6];
        for b in &mut m {
            *b = rng.byte();
        }
        m[0] &= 0xfe;
        if rng.chance(70) {
            m[0] |= 0x02;
        }
        if m != [0; 6] {
            return m;
        }
    }
}

/// An IPv4 address from the documentation ranges, from a small pool of
/// host numbers most of the time so that bindings and frames collide.
fn doc_v4(rng: &mut Rng) -> Ipv4Addr {
    let n = rng.pick(&V4_NETS);
    let host = if rng.chance(75) {
        rng.below(20) as u8
    } else {
        rng.byte()
    };
    Ipv4Addr::new(n[0], n[1], n[2], host)
}

/// An IPv6 address inside 2001:db8::/32, mostly from a small pool.
fn doc_v6(rng: &mut Rng) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    if rng.chance(80) {
        o[5] = rng.below(3) as u8;
        if rng.chance(60) {
            o[15] = rng.below(20) as u8;
        } else {
            for b in &mut o[8..16] {
                *b = rng.byte();
            }
        }
    } else {
        for b in &mut o[4..16] {
            *b = rng.byte();
        }
    }
    Ipv6Addr::from(o)
}

/// A random host inside `net` (for prefixes; the address itself for hosts).
fn inside(rng: &mut Rng, net: &IpNet) -> IpAddr {
    match net.addr {
        IpAddr::V4(a) => {
            let host_bits = 32 - u32::from(net.len);
            let r = if host_bits == 0 {
                0
            } else {
                (rng.next_u64() as u32) & (u32::MAX >> (32 - host_bits))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) | r))
        }
        IpAddr::V6(a) => {
            let host_bits = 128 - u32::from(net.len);
            let r = if host_bits == 0 {
                0
            } else {
                let x = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
                x & (u128::MAX >> (128 - host_bits))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) | r))
        }
    }
}

/// One generated frame and how it was made (for mismatch reports).
#[derive(Clone, Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub label: String,
}

/// The addresses a port's frames are drawn from: the binding's when there is
/// one, otherwise a random identity (frames on an unbound port).
struct Identity {
    mac: Mac,
    nets: Vec<IpNet>,
    eui64: Ipv6Addr,
    vlans: Vec<u16>,
    ethertypes: Vec<u16>,
    /// Addresses and MACs of other recent bindings (the previous binding of
    /// this port, a neighbour port): must not leak into this port's checks.
    other_nets: Vec<IpNet>,
    other_macs: Vec<Mac>,
}

impl Identity {
    fn of(rng: &mut Rng, b: Option<&Binding>, recent: &[Binding]) -> Identity {
        let mut id = Identity::own(rng, b);
        for r in recent {
            if Some(r) != b {
                id.other_nets.extend_from_slice(&r.ips);
                id.other_macs.push(r.mac.0);
            }
        }
        id
    }

    fn own(rng: &mut Rng, b: Option<&Binding>) -> Identity {
        match b {
            Some(b) => Identity {
                mac: b.mac.0,
                nets: b.ips.clone(),
                eui64: f::eui64_ll(b.mac.0),
                vlans: b.vlans.clone(),
                ethertypes: b.ethertypes.clone(),
                other_nets: vec![],
                other_macs: vec![],
            },
            None => {
                let mac = random_unicast_mac(rng);
                Identity {
                    mac,
                    nets: vec![
                        IpNet {
                            addr: IpAddr::V4(doc_v4(rng)),
                            len: 32,
                        },
                        IpNet {
                            addr: IpAddr::V6(doc_v6(rng)),
                            len: 128,
                        },
                    ],
                    eui64: f::eui64_ll(mac),
                    vlans: vec![],
                    ethertypes: vec![],
                    other_nets: vec![],
                    other_macs: vec![],
                }
            }
        }
    }

    fn own_v4(&self, rng: &mut Rng) -> Option<Ipv4Addr> {
        Self::v4_in(&self.nets, rng)
    }

    fn other_v4(&self, rng: &mut Rng) -> Option<Ipv4Addr> {
        Self::v4_in(&self.other_nets, rng)
    }

    fn own_v6(&self, rng: &mut Rng) -> Option<Ipv6Addr> {
        Self::v6_in(&self.nets, rng)
    }

    fn other_v6(&self, rng: &mut Rng) -> Option<Ipv6Addr> {
        Self::v6_in(&self.other_nets, rng)
    }

    fn v4_in(nets: &[IpNet], rng: &mut Rng) -> Option<Ipv4Addr> {
        let v4: Vec<&IpNet> = nets.iter().filter(|n| n.addr.is_ipv4()).collect();
        if v4.is_empty() {
            return None;
        }
        let n = **rng.pick(&v4);
        match inside(rng, &n) {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    fn v6_in(nets: &[IpNet], rng: &mut Rng) -> Option<Ipv6Addr> {
        let v6: Vec<&IpNet> = nets.iter().filter(|n| n.addr.is_ipv6()).collect();
        if v6.is_empty() {
            return None;
        }
        let n = **rng.pick(&v6);
        match inside(rng, &n) {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
}

/// The frame and binding generator.
pub struct Gen {
    pub rng: Rng,
    /// The last few bindings drawn (their addresses show up as foreign
    /// sources in frames of the current one).
    recent: Vec<Binding>,
    /// Bindings of other ports (their addresses are foreign here too).
    neighbours: Vec<Binding>,
}

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            recent: Vec::new(),
            neighbours: Vec::new(),
        }
    }

    /// Declares the bindings of other ports, whose addresses and MACs
    /// frames then sometimes use.
    pub fn set_neighbours(&mut self, bindings: Vec<Binding>) {
        self.neighbours = bindings;
    }

    /// A random binding (limits disabled, see the module comment).
    pub fn binding(&mut self) -> Binding {
        let rng = &mut self.rng;
        let mut ips = Vec::new();
        // Hosts beyond MAX_INLINE_ADDRS move a family from the record to the
        // exact-address map: draw both layouts.
        let n4 = if rng.chance(25) {
            rng.range(MAX_INLINE_ADDRS + 1, MAX_INLINE_ADDRS + 3)
        } else {
            rng.range(0, 4)
        };
        for _ in 0..n4 {
            ips.push(IpNet {
                addr: IpAddr::V4(doc_v4(rng)),
                len: 32,
            });
        }
        for _ in 0..rng.range(0, 2) {
            let len = rng.range(24, 31) as u8;
            ips.push(IpNet {
                addr: masked(IpAddr::V4(doc_v4(rng)), len),
                len,
            });
        }
        let n6 = if rng.chance(25) {
            rng.range(MAX_INLINE_ADDRS + 1, MAX_INLINE_ADDRS + 3)
        } else {
            rng.range(0, 3)
        };
        for _ in 0..n6 {
            ips.push(IpNet {
                addr: IpAddr::V6(doc_v6(rng)),
                len: 128,
            });
        }
        if rng.chance(50) {
            let len = *rng.pick(&[32u8, 48, 56, 64, 64, 64, 96, 112, 120, 127]);
            ips.push(IpNet {
                addr: masked(IpAddr::V6(doc_v6(rng)), len),
                len,
            });
        }
        ips.sort();
        ips.dedup();
        let mut ethertypes = Vec::new();
        if rng.chance(8) {
            // A full list: the program's loop bound.
            ethertypes.extend_from_slice(&ETHERTYPE_POOL[..MAX_ETHERTYPES]);
        } else {
            for _ in 0..rng.range(0, 3) {
                ethertypes.push(*rng.pick(&ETHERTYPE_POOL));
            }
        }
        let mut vlans = Vec::new();
        if rng.chance(8) {
            while vlans.len() < MAX_VLANS {
                let v = rng.below(4095) as u16;
                if !vlans.contains(&v) {
                    vlans.push(v);
                }
            }
        } else if rng.chance(60) {
            for _ in 0..rng.range(1, 4) {
                vlans.push(*rng.pick(&VLAN_POOL));
            }
        }
        let off = Limit { pps: 0, burst: 0 };
        let b = Binding {
            mac: BoundMac(random_unicast_mac(rng)),
            ips,
            tenant: rng.pick(&TENANTS).to_string(),
            mode: if rng.chance(25) {
                Mode::Monitor
            } else {
                Mode::Enforce
            },
            broadcast: off,
            multicast: off,
            arp: off,
            allow_dhcp_server: rng.chance(50),
            ethertypes,
            vlans,
        }
        .normalize()
        .expect("generated bindings are valid");
        if self.recent.len() == 4 {
            self.recent.remove(0);
        }
        self.recent.push(b.clone());
        b
    }

    /// A random (possibly mutated) frame as sent by the port bound to `b`
    /// (or by whatever sits on an unbound port).
    pub fn frame(&mut self, b: Option<&Binding>) -> Frame {
        let others: Vec<Binding> = self
            .recent
            .iter()
            .chain(&self.neighbours)
            .cloned()
            .collect();
        let id = Identity::of(&mut self.rng, b, &others);
        let mut fb = FrameGen {
            rng: &mut self.rng,
            id: &id,
            label: String::new(),
        };
        let mut bytes = fb.valid();
        fb.pad(&mut bytes);
        if fb.rng.chance(35) {
            fb.mutate(&mut bytes);
        }
        let label = fb.label;
        Frame { bytes, label }
    }
}

struct FrameGen<'a> {
    rng: &'a mut Rng,
    id: &'a Identity,
    label: String,
}

impl FrameGen<'_> {
    fn tag(&mut self, s: &str) {
        if !self.label.is_empty() {
            self.label.push(' ');
        }
        self.label.push_str(s);
    }

    // ---- addresses ----

    fn src_mac(&mut self) -> Mac {
        match self.rng.weighted(&[86, 4, 3, 2, 3, 2]) {
            0 => self.id.mac,
            5 if !self.id.other_macs.is_empty() => *self.rng.pick(&self.id.other_macs),
            1 => random_unicast_mac(self.rng),
            2 => {
                let mut m = random_unicast_mac(self.rng);
                m[0] |= 1;
                m
            }
            3 => f::BROADCAST,
            5 => self.id.mac,
            _ => {
                let mut m = self.id.mac;
                let bit = self.rng.below(48);
                m[(bit / 8) as usize] ^= 1 << (bit % 8);
                m
            }
        }
    }

    fn dst_mac(&mut self) -> Mac {
        match self.rng.weighted(&[50, 25, 15, 10]) {
            0 => [0x02, 0xaa, 0, 0, 0, 0xfe],
            1 => f::BROADCAST,
            2 => [0x33, 0x33, 0, 0, 0, self.rng.byte()],
            _ => [0x01, 0x00, 0x5e, 0, 0, self.rng.byte()],
        }
    }

    /// A sender MAC for ARP / ND options: own most of the time.
    fn hw_addr(&mut self) -> Mac {
        if self.rng.chance(85) {
            self.id.mac
        } else {
            random_unicast_mac(self.rng)
        }
    }

    fn src_v4(&mut self) -> Ipv4Addr {
        match self.rng.weighted(&[62, 10, 13, 10, 5]) {
            0 => match self.id.own_v4(self.rng) {
                Some(a) => a,
                None => doc_v4(self.rng),
            },
            4 => match self.id.other_v4(self.rng) {
                Some(a) => a,
                None => doc_v4(self.rng),
            },
            1 => Ipv4Addr::UNSPECIFIED,
            2 => doc_v4(self.rng),
            _ => Ipv4Addr::from(self.rng.next_u64() as u32),
        }
    }

    fn dst_v4(&mut self) -> Ipv4Addr {
        match self.rng.weighted(&[50, 20, 15, 15]) {
            0 => doc_v4(self.rng),
            1 => Ipv4Addr::BROADCAST,
            2 => Ipv4Addr::new(224, 0, 0, self.rng.byte()),
            _ => Ipv4Addr::from(self.rng.next_u64() as u32),
        }
    }

    fn src_v6(&mut self) -> Ipv6Addr {
        match self.rng.weighted(&[30, 32, 8, 10, 8, 7, 5]) {
            0 => self.id.eui64,
            6 => match self.id.other_v6(self.rng) {
                Some(a) => a,
                None => doc_v6(self.rng),
            },
            1 => match self.id.own_v6(self.rng) {
                Some(a) => a,
                None => self.id.eui64,
            },
            2 => Ipv6Addr::UNSPECIFIED,
            3 => {
                let mut o = [0u8; 16];
                o[0] = 0xfe;
                o[1] = 0x80;
                for b in &mut o[8..] {
                    *b = self.rng.byte();
                }
                Ipv6Addr::from(o)
            }
            4 => doc_v6(self.rng),
            _ => Ipv6Addr::from((u128::from(self.rng.next_u64()) << 64) | 1),
        }
    }

    fn dst_v6(&mut self) -> Ipv6Addr {
        match self.rng.weighted(&[25, 15, 10, 30, 20]) {
            0 => f::ALL_NODES,
            1 => f::ALL_ROUTERS,
            2 => f::solicited_node(doc_v6(self.rng)),
            3 => doc_v6(self.rng),
            _ => "fe80::1".parse().unwrap(),
        }
    }

    /// An address "of the port" (target of NA/DAD, ARP target...), or not.
    fn own_or_other_v6(&mut self) -> Ipv6Addr {
        match self.rng.weighted(&[45, 20, 25, 10]) {
            0 => match self.id.own_v6(self.rng) {
                Some(a) => a,
                None => self.id.eui64,
            },
            1 => self.id.eui64,
            3 => match self.id.other_v6(self.rng) {
                Some(a) => a,
                None => doc_v6(self.rng),
            },
            _ => doc_v6(self.rng),
        }
    }

    // ---- frames ----

    fn valid(&mut self) -> Vec<u8> {
        let frame = match self.rng.weighted(&[34, 14, 38, 6, 5, 3]) {
            0 => self.ipv4_frame(),
            1 => self.arp_frame(),
            2 => self.ipv6_frame(),
            3 => self.other_ethertype(),
            4 => return self.vlan_frame(),
            _ => {
                self.tag("noise");
                let mut f = self.rng.bytes_in(0, 120);
                if f.len() >= 12 && self.rng.chance(70) {
                    f[6..12].copy_from_slice(&self.id.mac);
                }
                f
            }
        };
        if self.rng.chance(8) {
            self.wrap_vlan(frame)
        } else {
            frame
        }
    }

    fn l2(&mut self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let dst = self.dst_mac();
        let src = self.src_mac();
        f::eth(dst, src, ethertype, payload)
    }

    fn ipv4_frame(&mut self) -> Vec<u8> {
        let src = self.src_v4();
        let dst = self.dst_v4();
        let mut o = f::Ipv4Opts::default();
        match self.rng.weighted(&[80, 8, 7, 5]) {
            0 => {}
            1 => {
                self.tag("mf");
                o.frag = 0x2000;
            }
            2 => {
                self.tag("later-frag");
                o.frag = (self.rng.u16() & 0x3fff) | 1;
            }
            _ => {
                self.tag("ip-options");
                let n = self.rng.range(1, 40);
                o.options = self.rng.bytes(n);
            }
        }
        let pkt = match self.rng.weighted(&[20, 25, 12, 15, 15, 5]) {
            0 => {
                self.tag("ipv4/tcp");
                let seg = self.rng.bytes_in(20, 40);
                f::ipv4_with(src, dst, f::IPPROTO_TCP, &seg, &o)
            }
            1 => {
                self.tag("ipv4/udp");
                let sport = self.port();
                let dport = self.port();
                let body = self.rng.bytes_in(0, 30);
                let seg = f::udp4_segment(src, dst, sport, dport, &body);
                f::ipv4_with(src, dst, f::IPPROTO_UDP, &seg, &o)
            }
            2 => {
                self.tag("ipv4/icmp");
                let mut p = f::icmp4_echo(src, dst, 1, 1, &self.rng.bytes(8));
                if o.frag != 0x4000 || !o.options.is_empty() {
                    p = f::ipv4_with(src, dst, f::IPPROTO_ICMP, &p[20..], &o);
                }
                p
            }
            3 => {
                self.tag("dhcp-discover");
                let mac = self.hw_addr();
                let mut p = f::dhcp_discover_packet(mac);
                if self.rng.chance(25) {
                    // Variants: another destination or source.
                    if self.rng.chance(50) {
                        p[16..20].copy_from_slice(&dst.octets());
                    } else {
                        p[12..16].copy_from_slice(&src.octets());
                    }
                    f::fix_ipv4_checksum(&mut p);
                }
                if o.frag != 0x4000 {
                    p[6..8].copy_from_slice(&o.frag.to_be_bytes());
                }
                let f = f::eth(f::BROADCAST, self.src_mac(), f::ETH_P_IP, &p);
                return f;
            }
            4 => {
                self.tag("dhcp-server");
                let client = random_unicast_mac(self.rng);
                let yiaddr = doc_v4(self.rng);
                let mut p = f::dhcp_offer_packet(src, client, yiaddr);
                if self.rng.chance(30) {
                    p[16..20].copy_from_slice(&dst.octets());
                }
                if o.frag != 0x4000 {
                    p[6..8].copy_from_slice(&o.frag.to_be_bytes());
                }
                let dmac = self.dst_mac();
                return f::eth(dmac, self.src_mac(), f::ETH_P_IP, &p);
            }
            _ => {
                self.tag("ipv4/other-proto");
                let proto = self.rng.byte();
                let body = self.rng.bytes_in(0, 40);
                f::ipv4_with(src, dst, proto, &body, &o)
            }
        };
        self.l2(f::ETH_P_IP, &pkt)
    }

    fn port(&mut self) -> u16 {
        match self.rng.weighted(&[30, 30, 40]) {
            0 => 67,
            1 => 68,
            _ => *self.rng.pick(&[53, 123, 546, 547, 5353, 40000]),
        }
    }

    fn arp_frame(&mut self) -> Vec<u8> {
        let sha = self.hw_addr();
        let own = self.id.own_v4(self.rng);
        let (op, spa, tpa) = match self.rng.weighted(&[35, 30, 15, 15, 5]) {
            0 => {
                self.tag("arp-request");
                (f::ARP_REQUEST, self.src_v4(), doc_v4(self.rng))
            }
            1 => {
                self.tag("arp-reply");
                (f::ARP_REPLY, self.src_v4(), doc_v4(self.rng))
            }
            2 => {
                self.tag("arp-probe");
                let t = own.unwrap_or_else(|| doc_v4(self.rng));
                let op = if self.rng.chance(85) {
                    f::ARP_REQUEST
                } else {
                    f::ARP_REPLY
                };
                (op, Ipv4Addr::UNSPECIFIED, t)
            }
            3 => {
                self.tag("arp-gratuitous");
                let a = own.unwrap_or_else(|| doc_v4(self.rng));
                let op = if self.rng.chance(50) {
                    f::ARP_REQUEST
                } else {
                    f::ARP_REPLY
                };
                (op, a, a)
            }
            _ => {
                self.tag("arp-bad-op");
                (self.rng.u16() % 6, self.src_v4(), doc_v4(self.rng))
            }
        };
        let tha = if op == f::ARP_REQUEST {
            f::ZERO_MAC
        } else {
            random_unicast_mac(self.rng)
        };
        let body = f::arp(op, sha, spa, tha, tpa);
        let dst = if op == f::ARP_REQUEST && self.rng.chance(85) {
            f::BROADCAST
        } else {
            self.dst_mac()
        };
        f::eth(dst, self.src_mac(), f::ETH_P_ARP, &body)
    }

    /// An IPv6 packet: `payload` starts with protocol `nh`; sometimes a
    /// chain of extension headers is put in front.
    fn v6_packet(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        nh: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        if !self.rng.chance(25) {
            return f::ipv6(src, dst, nh, hop_limit, payload);
        }
        let n = match self.rng.weighted(&[40, 25, 10, 10, 10, 5]) {
            0 => 1,
            1 => 2,
            2 => self.rng.range(3, 5),
            3 => 6,
            4 => 7,
            _ => self.rng.range(8, 10),
        };
        self.tag(&format!("ext{n}"));
        // Built back to front: each header names the one after it.
        let mut next = nh;
        let mut chain: Vec<u8> = Vec::new();
        for _ in 0..n {
            let (proto, hdr) = match self.rng.weighted(&[25, 25, 15, 20, 15]) {
                0 => (f::IPPROTO_HOPOPTS, f::hop_by_hop(next, &self.opts_body())),
                1 => (f::IPPROTO_DSTOPTS, f::dstopts(next, &self.opts_body())),
                2 => {
                    let k = self.rng.range(0, 2);
                    let addrs: Vec<Ipv6Addr> = (0..k).map(|_| doc_v6(self.rng)).collect();
                    (f::IPPROTO_ROUTING, f::routing(next, 0, k as u8, &addrs))
                }
                3 => {
                    self.tag("frag-first");
                    let more = self.rng.chance(70);
                    (
                        f::IPPROTO_FRAGMENT,
                        f::fragment(next, 0, more, self.rng.next_u64() as u32),
                    )
                }
                _ => {
                    self.tag("frag-later");
                    let off = (self.rng.u16() & 0x1fff).max(1);
                    let more = self.rng.chance(50);
                    (
                        f::IPPROTO_FRAGMENT,
                        f::fragment(next, off, more, self.rng.next_u64() as u32),
                    )
                }
            };
            let mut h = hdr;
            h.extend_from_slice(&chain);
            chain = h;
            next = proto;
        }
        chain.extend_from_slice(payload);
        f::ipv6(src, dst, next, hop_limit, &chain)
    }

    fn opts_body(&mut self) -> Vec<u8> {
        match self.rng.weighted(&[50, 30, 20]) {
            0 => vec![],
            1 => vec![5, 2, 0, 0],
            _ => {
                let n = self.rng.range(0, 12);
                let mut v = vec![1, n as u8];
                v.extend(std::iter::repeat_n(0, n));
                v
            }
        }
    }

    fn hop_limit(&mut self, usual: u8) -> u8 {
        if self.rng.chance(88) {
            usual
        } else {
            let any = self.rng.byte();
            *self.rng.pick(&[0, 1, 64, 254, any])
        }
    }

    /// ND options for an NS (own LLA = SLLA) or NA (own LLA = TLLA).
    fn nd_opts(&mut self, own_kind: u8) -> Vec<u8> {
        // 0..=5 options, mostly 0 or 1.
        let n = self.rng.weighted(&[30, 40, 10, 8, 6, 6]);
        let mut out = Vec::new();
        for i in 0..n {
            match self.rng.weighted(&[45, 10, 20, 10, 5, 5, 5]) {
                0 => {
                    let m = self.hw_addr();
                    out.extend(f::nd_opt_lla(own_kind, m));
                }
                1 => {
                    let other = if own_kind == f::ND_OPT_SLLA {
                        f::ND_OPT_TLLA
                    } else {
                        f::ND_OPT_SLLA
                    };
                    let m = random_unicast_mac(self.rng);
                    out.extend(f::nd_opt_lla(other, m));
                }
                2 => out.extend(f::nd_opt_raw(14, 1, &self.rng.bytes(6))),
                3 => {
                    let ty = self.rng.byte();
                    let len = self.rng.range(1, 3) as u8;
                    let body = self.rng.bytes(usize::from(len) * 8 - 2);
                    out.extend(f::nd_opt_raw(ty, len, &body));
                }
                4 => {
                    self.tag("opt-len0");
                    out.extend([own_kind, 0, 0, 0, 0, 0, 0, 0]);
                }
                5 => {
                    self.tag("opt-long-lla");
                    let mut o = f::nd_opt_lla(own_kind, self.id.mac);
                    o[1] = 2;
                    o.extend_from_slice(&[0; 8]);
                    out.extend(o);
                }
                _ => {
                    if i + 1 == n {
                        self.tag("opt-overrun");
                        // Claims more than follows (only as the last option).
                        out.extend([own_kind, self.rng.range(2, 4) as u8, 0, 0, 0, 0, 0, 0]);
                    } else {
                        out.extend(f::nd_opt_lla(own_kind, self.id.mac));
                    }
                }
            }
        }
        if self.rng.chance(3) {
            self.tag("opt-odd-tail");
            out.extend(self.rng.bytes_in(1, 7));
        }
        out
    }

    fn ipv6_frame(&mut self) -> Vec<u8> {
        let src = self.src_v6();
        let dst = self.dst_v6();
        let (pkt, dmac) = match self
            .rng
            .weighted(&[10, 8, 5, 14, 10, 8, 6, 3, 6, 6, 5, 5, 6, 8])
        {
            0 => {
                self.tag("ipv6/tcp");
                let seg = self.rng.bytes_in(20, 40);
                (self.v6_packet(src, dst, 64, f::IPPROTO_TCP, &seg), None)
            }
            1 => {
                self.tag("ipv6/udp");
                let (sp, dp) = (self.port(), self.port());
                let seg = f::udp6_segment(src, dst, sp, dp, &self.rng.bytes(10));
                (self.v6_packet(src, dst, 64, f::IPPROTO_UDP, &seg), None)
            }
            2 => {
                self.tag("ipv6/echo");
                let msg = f::icmpv6(src, dst, f::ICMPV6_ECHO_REQUEST, 0, &[0, 1, 0, 1]);
                (self.v6_packet(src, dst, 64, f::IPPROTO_ICMPV6, &msg), None)
            }
            3 => {
                self.tag("ns");
                let target = self.own_or_other_v6();
                let dst = if self.rng.chance(60) {
                    f::solicited_node(target)
                } else {
                    dst
                };
                let mut body = vec![0u8; 4];
                body.extend_from_slice(&target.octets());
                body.extend(self.nd_opts(f::ND_OPT_SLLA));
                let code = if self.rng.chance(95) { 0 } else { 1 };
                let msg = f::icmpv6(src, dst, f::ICMPV6_NS, code, &body);
                let hl = self.hop_limit(255);
                (self.v6_packet(src, dst, hl, f::IPPROTO_ICMPV6, &msg), None)
            }
            4 => {
                self.tag("dad");
                let target = self.own_or_other_v6();
                let dst = if self.rng.chance(85) {
                    f::solicited_node(target)
                } else {
                    dst
                };
                let mut body = vec![0u8; 4];
                body.extend_from_slice(&target.octets());
                if self.rng.chance(20) {
                    body.extend(self.nd_opts(f::ND_OPT_SLLA));
                }
                let u = Ipv6Addr::UNSPECIFIED;
                let msg = f::icmpv6(u, dst, f::ICMPV6_NS, 0, &body);
                let hl = self.hop_limit(255);
                (self.v6_packet(u, dst, hl, f::IPPROTO_ICMPV6, &msg), None)
            }
            5 => {
                self.tag("na");
                let target = self.own_or_other_v6();
                let flags = *self.rng.pick(&[
                    f::NA_SOLICITED | f::NA_OVERRIDE,
                    f::NA_OVERRIDE,
                    f::NA_ROUTER,
                    0,
                ]);
                let mut body = vec![flags, 0, 0, 0];
                body.extend_from_slice(&target.octets());
                body.extend(self.nd_opts(f::ND_OPT_TLLA));
                let code = if self.rng.chance(95) { 0 } else { 2 };
                let msg = f::icmpv6(src, dst, f::ICMPV6_NA, code, &body);
                let hl = self.hop_limit(255);
                (self.v6_packet(src, dst, hl, f::IPPROTO_ICMPV6, &msg), None)
            }
            6 => {
                self.tag("ra");
                let slla = self.rng.chance(50).then_some(self.id.mac);
                let prefix = self.rng.chance(50).then(|| doc_v6(self.rng));
                let p = f::ra(src, slla, prefix);
                let hl = self.hop_limit(255);
                let pkt = self.v6_packet(src, f::ALL_NODES, hl, f::IPPROTO_ICMPV6, &p[40..]);
                (pkt, Some(f::ipv6_mcast_mac(f::ALL_NODES)))
            }
            7 => {
                self.tag("redirect");
                let p = f::redirect(src, dst, doc_v6(self.rng), doc_v6(self.rng));
                let hl = self.hop_limit(255);
                (
                    self.v6_packet(src, dst, hl, f::IPPROTO_ICMPV6, &p[40..]),
                    None,
                )
            }
            8 => {
                self.tag("rs");
                let slla = self.rng.chance(50).then_some(self.id.mac);
                let p = f::rs(src, slla);
                let hl = self.hop_limit(255);
                let pkt = self.v6_packet(src, f::ALL_ROUTERS, hl, f::IPPROTO_ICMPV6, &p[40..]);
                (pkt, Some(f::ipv6_mcast_mac(f::ALL_ROUTERS)))
            }
            9 => {
                self.tag("mldv2");
                let s = if self.rng.chance(50) {
                    Ipv6Addr::UNSPECIFIED
                } else {
                    src
                };
                let groups: Vec<Ipv6Addr> = (0..self.rng.range(0, 3))
                    .map(|_| f::solicited_node(doc_v6(self.rng)))
                    .collect();
                let p = f::mldv2_report(s, &groups);
                // p = header + hop-by-hop (router alert) + report.
                let pkt = self.v6_packet(s, f::ALL_MLDV2_ROUTERS, 1, p[6], &p[40..]);
                (pkt, Some(f::ipv6_mcast_mac(f::ALL_MLDV2_ROUTERS)))
            }
            10 => {
                self.tag("dhcpv6-client");
                let p = f::dhcpv6_solicit(self.hw_addr());
                let s = if self.rng.chance(70) {
                    Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap())
                } else {
                    src
                };
                let pkt = self.v6_packet(s, f::ALL_DHCP_AGENTS, 1, f::IPPROTO_UDP, &p[40..]);
                (pkt, Some(f::ipv6_mcast_mac(f::ALL_DHCP_AGENTS)))
            }
            11 => {
                self.tag("dhcpv6-server");
                let server = self.hw_addr();
                let p = f::dhcpv6_advertise(server, random_unicast_mac(self.rng), doc_v6(self.rng));
                let s = if self.rng.chance(60) {
                    Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap())
                } else {
                    src
                };
                (self.v6_packet(s, dst, 64, f::IPPROTO_UDP, &p[40..]), None)
            }
            12 => {
                self.tag("ipv6/no-next");
                let body = self.rng.bytes_in(0, 16);
                (self.v6_packet(src, dst, 64, 59, &body), None)
            }
            _ => {
                self.tag("ipv6/random-icmp");
                let ty = self.rng.byte();
                let body = self.rng.bytes_in(0, 40);
                let msg = f::icmpv6(src, dst, ty, self.rng.below(3) as u8, &body);
                let hl = self.hop_limit(255);
                (self.v6_packet(src, dst, hl, f::IPPROTO_ICMPV6, &msg), None)
            }
        };
        let dst_mac = match dmac {
            Some(m) if self.rng.chance(80) => m,
            _ => self.dst_mac(),
        };
        f::eth(dst_mac, self.src_mac(), f::ETH_P_IPV6, &pkt)
    }

    fn other_ethertype(&mut self) -> Vec<u8> {
        let et = match self.rng.weighted(&[40, 25, 20, 15]) {
            0 if !self.id.ethertypes.is_empty() => *self.rng.pick(&self.id.ethertypes),
            0 | 1 => *self.rng.pick(&ETHERTYPE_POOL),
            2 => {
                self.tag("802.3");
                (self.rng.u16() % 0x0600).max(1)
            }
            _ => self.rng.u16(),
        };
        self.tag(&format!("ethertype-{et:04x}"));
        let n = self.rng.range(0, 60);
        let body = self.rng.bytes(n);
        self.l2(et, &body)
    }

    /// Puts a (possibly stacked or 802.1ad) tag in front of the EtherType.
    fn wrap_vlan(&mut self, frame: Vec<u8>) -> Vec<u8> {
        if frame.len() < 14 {
            return frame;
        }
        let mut tags: Vec<(u16, u16)> = Vec::new();
        let vid = |g: &mut Self| -> u16 {
            if !g.id.vlans.is_empty() && g.rng.chance(70) {
                *g.rng.pick(&g.id.vlans)
            } else {
                g.rng.u16() & 0x0fff
            }
        };
        let pcp = (self.rng.below(8) as u16) << 13 | (self.rng.below(2) as u16) << 12;
        match self.rng.weighted(&[75, 12, 13]) {
            0 => {
                self.tag("vlan");
                let v = vid(self);
                tags.push((f::ETH_P_8021Q, pcp | v));
            }
            1 => {
                self.tag("qinq");
                let (a, b) = (vid(self), vid(self));
                tags.push((f::ETH_P_8021Q, pcp | a));
                let inner = *self.rng.pick(&[f::ETH_P_8021Q, f::ETH_P_8021AD]);
                tags.push((inner, b));
            }
            _ => {
                self.tag("802.1ad");
                let (a, b) = (vid(self), vid(self));
                tags.push((f::ETH_P_8021AD, pcp | a));
                if self.rng.chance(70) {
                    tags.push((f::ETH_P_8021Q, b));
                }
            }
        }
        let mut out = frame[..12].to_vec();
        for (tpid, tci) in tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&frame[12..]);
        out
    }

    fn vlan_frame(&mut self) -> Vec<u8> {
        let inner = match self.rng.weighted(&[40, 20, 40]) {
            0 => self.ipv4_frame(),
            1 => self.arp_frame(),
            _ => self.ipv6_frame(),
        };
        self.wrap_vlan(inner)
    }

    fn pad(&mut self, f: &mut Vec<u8>) {
        match self.rng.weighted(&[55, 35, 10]) {
            0 => {}
            1 => {
                if f.len() < 60 {
                    f.resize(60, 0);
                }
            }
            _ => {
                self.tag("padded");
                let n = self.rng.range(1, 32);
                f.extend(self.rng.bytes(n));
            }
        }
    }

    // ---- mutations ----

    /// The L3 offset after at most one 802.1Q tag, for targeted mutations.
    fn l3_of(f: &[u8]) -> Option<(u16, usize)> {
        let et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        if et == f::ETH_P_8021Q {
            Some((u16::from_be_bytes([*f.get(16)?, *f.get(17)?]), 18))
        } else {
            Some((et, 14))
        }
    }

    fn mutate(&mut self, f: &mut Vec<u8>) {
        for _ in 0..self.rng.range(1, 3) {
            let len = f.len();
            match self.rng.weighted(&[25, 20, 20, 15, 8, 7, 5]) {
                0 => {
                    self.tag("bitflip");
                    if len > 0 {
                        let span = if self.rng.chance(80) {
                            len.min(96)
                        } else {
                            len
                        };
                        let i = self.rng.below(span as u64) as usize;
                        f[i] ^= 1 << self.rng.below(8);
                    }
                }
                1 => {
                    self.tag("truncate");
                    let n = self.rng.range(0, len);
                    f.truncate(n);
                }
                2 => {
                    self.tag("lie-len");
                    self.lie_length(f);
                }
                3 => {
                    self.tag("small-byte");
                    if len > 12 {
                        let i = self.rng.range(12, len.min(140) - 1);
                        f[i] = *self
                            .rng
                            .pick(&[0, 1, 2, 3, 4, 8, 17, 43, 44, 58, 60, 135, 136, 0xff]);
                    }
                }
                4 => {
                    self.tag("random-range");
                    if len > 0 {
                        let i = self.rng.below(len as u64) as usize;
                        let n = self.rng.range(1, 8).min(len - i);
                        for b in &mut f[i..i + n] {
                            *b = self.rng.byte();
                        }
                    }
                }
                5 => {
                    self.tag("append");
                    let n = self.rng.range(1, 40);
                    f.extend(self.rng.bytes(n));
                }
                _ => {
                    self.tag("cut-middle");
                    if len > 20 {
                        let i = self.rng.range(14, len - 1);
                        let n = self.rng.range(1, 8).min(len - i);
                        f.drain(i..i + n);
                    }
                }
            }
        }
    }

    /// Makes an IP length field (IPv4 total length or IHL, IPv6 payload
    /// length) disagree with the frame.
    fn lie_length(&mut self, f: &mut [u8]) {
        let Some((et, l3)) = Self::l3_of(f) else {
            return;
        };
        let (field, current) = match et {
            f::ETH_P_IP if f.len() >= l3 + 4 => {
                if self.rng.chance(20) {
                    f[l3] = 0x40 | (self.rng.byte() & 0x0f);
                    return;
                }
                (l3 + 2, u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]))
            }
            f::ETH_P_IPV6 if f.len() >= l3 + 6 => {
                (l3 + 4, u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]))
            }
            _ => return,
        };
        let v = match self.rng.weighted(&[60, 20, 20]) {
            0 => current.wrapping_add((self.rng.range(0, 16) as u16).wrapping_sub(8)),
            1 => 0,
            _ => self.rng.u16(),
        };
        f[field..field + 2].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use portguard::model::evaluate;

    use super::*;

    #[test]
    fn deterministic_per_seed() {
        let mut a = Gen::new(7);
        let mut b = Gen::new(7);
        let ba = a.binding();
        assert_eq!(ba, b.binding());
        for _ in 0..500 {
            assert_eq!(a.frame(Some(&ba)).bytes, b.frame(Some(&ba)).bytes);
        }
        let mut c = Gen::new(8);
        assert_ne!(c.binding(), Gen::new(7).binding());
    }

    #[test]
    fn bindings_stay_in_documentation_ranges() {
        let mut g = Gen::new(1);
        let docs: [IpNet; 4] = [
            "192.0.2.0/24".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let (mut inline, mut table) = (0, 0);
        for _ in 0..500 {
            let b = g.binding();
            let c = |v6: bool, host: bool| {
                b.ips
                    .iter()
                    .filter(|n| n.addr.is_ipv6() == v6 && n.is_host() == host)
                    .count()
            };
            let max_hosts = MAX_INLINE_ADDRS + 3;
            assert!(c(false, true) <= max_hosts && c(false, false) <= 2);
            assert!(c(true, true) <= max_hosts && c(true, false) <= 1);
            for v6 in [false, true] {
                if c(v6, true) > MAX_INLINE_ADDRS {
                    table += 1;
                } else if c(v6, true) > 0 {
                    inline += 1;
                }
            }
            for n in &b.ips {
                assert!(
                    docs.iter().any(|d| d.contains(n.addr) && d.len <= n.len),
                    "{n}"
                );
            }
            assert_eq!(b.mac.0[0] & 1, 0);
            assert_eq!((b.broadcast.pps, b.multicast.pps, b.arp.pps), (0, 0, 0));
            assert_eq!(b.clone().normalize().unwrap(), b);
        }
        // Both address layouts of the record get exercised.
        assert!(
            inline > 100 && table > 100,
            "inline {inline}, table {table}"
        );
    }

    /// The generator must reach every verdict (else the differential run
    /// silently tests less than it claims).
    #[test]
    fn frames_cover_every_verdict() {
        use std::collections::BTreeMap;
        let mut g = Gen::new(42);
        let mut seen: BTreeMap<&'static str, u32> = BTreeMap::new();
        for i in 0..40_000 {
            let b = if i % 1000 < 950 {
                Some(g.binding())
            } else {
                None
            };
            // Several frames per binding, as the differential run does.
            for _ in 0..3 {
                let fr = g.frame(b.as_ref());
                *seen
                    .entry(evaluate(b.as_ref(), &fr.bytes).reason.name())
                    .or_default() += 1;
            }
        }
        use filter_common::Reason;
        // Storm control is off in every generated binding (see the module doc).
        let limits = [Reason::BcastLimit, Reason::McastLimit, Reason::ArpLimit];
        let verdicts = Reason::DROPS.into_iter().filter(|r| !limits.contains(r));
        for r in std::iter::once("pass").chain(verdicts.map(Reason::name)) {
            assert!(seen.get(r).copied().unwrap_or(0) > 100, "{r}: {seen:?}");
        }
        // Passing frames must be a large share, or the checks are barely exercised.
        assert!(seen["pass"] > 20_000, "{seen:?}");
    }
}
