//! The verdict for one frame from a VM, given its port's binding. Each
//! `Reason::*` returned here (and in `ipv4`, `arp`, `ipv6`, `limits`) is where
//! that drop reason is decided. Order: L2 (MAC, VLAN), L3/L4 (per EtherType),
//! then storm control, so spoofed frames never consume a port's budget.
use filter_common::{PortConfig, Reason};

use crate::{
    arp,
    bytes::{eq6, sub},
    ipv4, ipv6, limits,
    pkt::{Frame, Pkt},
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// What storm control needs to know about a frame that passed every other check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Unicast,
    Broadcast,
    Multicast,
    ArpRequest,
}

#[inline(always)]
pub fn check(p: &Pkt, port: &PortConfig) -> Reason {
    // Bytes, not network-types' EthHdr/VlanHdr: their `ether_type: u16` gives
    // them alignment 2, and a frame offset promises none (see Pkt::header).
    let Some(eth) = p.bytes::<14>(0) else {
        return Reason::Malformed;
    };
    // Source MAC: exactly the bound one. The bound MAC is unicast (userspace
    // refuses group addresses), so a group-address source never matches.
    if !eq6(&sub::<14, 6, 6>(eth), &port.mac) {
        return Reason::MacSpoof;
    }

    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut l3 = 14usize;
    if let Some((tpid, tci)) = p.meta_tag {
        // tc: the outer tag, out of the frame. The rules of an in-band tag,
        // whose place it took: a single 802.1Q tag with an allowed VID, so
        // the frame must not start with another tag.
        if tpid != ETH_P_8021Q
            || !vlan_allowed(port, tci & 0x0fff)
            || ethertype == ETH_P_8021Q
            || ethertype == ETH_P_8021AD
        {
            return Reason::Vlan;
        }
    } else if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        // Only single 802.1Q tags with an allowed VID; the inner frame is then checked as usual.
        if ethertype == ETH_P_8021AD || port.n_vlans == 0 {
            return Reason::Vlan;
        }
        let Some(tag) = p.bytes::<4>(14) else {
            return Reason::Malformed;
        };
        let vid = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        if !vlan_allowed(port, vid) {
            return Reason::Vlan;
        }
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            return Reason::Vlan;
        }
        l3 = 18;
    }

    let f = Frame { pkt: *p, l3, port };
    let (verdict, arp_request) = match ethertype {
        ETH_P_IP => (ipv4::check(&f), false),
        ETH_P_ARP => arp::check(&f),
        ETH_P_IPV6 => (ipv6::check(&f), false),
        other => {
            if ethertype_allowed(port, other) {
                (Reason::Pass, false)
            } else {
                (Reason::Ethertype, false)
            }
        }
    };
    if verdict != Reason::Pass {
        return verdict;
    }

    let class = if arp_request {
        Class::ArpRequest
    } else if eth[0] == 0xff
        && eth[1] == 0xff
        && eth[2] == 0xff
        && eth[3] == 0xff
        && eth[4] == 0xff
        && eth[5] == 0xff
    {
        Class::Broadcast
    } else if eth[0] & 1 != 0 {
        Class::Multicast
    } else {
        Class::Unicast
    };
    if class == Class::Unicast {
        return Reason::Pass;
    }
    limits::check(port, class)
}

/// Is `vid` in the port's `allow_vlan` list? (Also used by the tc companion.)
#[inline(always)]
pub fn vlan_allowed(port: &PortConfig, vid: u16) -> bool {
    let n = port.n_vlans as usize;
    let mut i = 0;
    while i < filter_common::MAX_VLANS {
        if i >= n {
            return false;
        }
        if port.vlans[i] == vid {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn ethertype_allowed(port: &PortConfig, et: u16) -> bool {
    let n = port.n_ethertypes as usize;
    let mut i = 0;
    while i < filter_common::MAX_ETHERTYPES {
        if i >= n {
            return false;
        }
        if port.ethertypes[i] == et {
            return true;
        }
        i += 1;
    }
    false
}
