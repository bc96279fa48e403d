//! A port's binding as operators express it (CLI flags, state file), and its
//! translation into the `PortConfig` the data path reads.
use std::net::IpAddr;

use filter_common::{
    eui64_link_local, flags, PortConfig, RateCfg, ATTACH_GENERIC, ATTACH_NATIVE, MAX_ETHERTYPES,
    MAX_INLINE_ADDRS, MAX_VLANS,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::parse::{IpNet, Mac};

/// Defaults chosen so that ordinary use never trips them (see README, "Storm control").
pub const DEFAULT_BROADCAST: Limit = Limit {
    pps: 200,
    burst: 400,
};
pub const DEFAULT_MULTICAST: Limit = Limit {
    pps: 1000,
    burst: 2000,
};
pub const DEFAULT_ARP: Limit = Limit {
    pps: 100,
    burst: 200,
};
/// Drop events sampled per port and per reason.
pub const DEFAULT_EVENTS: Limit = Limit {
    pps: 100,
    burst: 100,
};

pub const MAX_TENANT_LEN: usize = 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Frames per second; 0 = unlimited.
    pub pps: u32,
    pub burst: u32,
}

impl Limit {
    /// A limit from optional pps/burst settings (bind flags, state-file keys):
    /// an explicit pps without a burst gets burst = 2 x pps (at least 1).
    pub fn from_settings(pps: Option<u32>, burst: Option<u32>, default: Limit) -> Limit {
        match (pps, burst) {
            (None, None) => default,
            (None, Some(b)) => Limit {
                pps: default.pps,
                burst: b,
            },
            (Some(p), b) => Limit {
                pps: p,
                burst: b.unwrap_or_else(|| p.saturating_mul(2).max(1)),
            },
        }
    }

    pub fn cfg(self) -> RateCfg {
        RateCfg::new(self.pps, self.burst)
    }

    fn from_cfg(c: &RateCfg) -> Limit {
        Limit {
            pps: c.pps,
            burst: c.burst,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop what breaks the binding.
    #[default]
    Enforce,
    /// Only count what would be dropped (would_drop); every frame passes.
    Monitor,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "monitor" => Ok(Mode::Monitor),
            other => Err(format!(
                "invalid mode {other:?}: expected enforce or monitor"
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BindingError {
    #[error("tenant label {0:?} is longer than {MAX_TENANT_LEN} bytes")]
    TenantTooLong(String),
    #[error("tenant label {0:?} contains a control character")]
    TenantControl(String),
    #[error("at most {MAX_ETHERTYPES} --allow-ethertype values per port, got {0}")]
    TooManyEthertypes(usize),
    #[error("at most {MAX_VLANS} --allow-vlan values per port, got {0}")]
    TooManyVlans(usize),
    #[error("address {0} is listed twice")]
    Duplicate(String),
    #[error("MAC {0} is not a unicast address (group bit set, or all zero)")]
    NotUnicast(String),
}

impl BindingError {
    /// The [`crate::spec::PortSpec`] field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            BindingError::TenantTooLong(_) | BindingError::TenantControl(_) => "tenant",
            BindingError::TooManyEthertypes(_) => "allow_ethertype",
            BindingError::TooManyVlans(_) => "allow_vlan",
            BindingError::Duplicate(_) => "ips",
            BindingError::NotUnicast(_) => "mac",
        }
    }
}

/// Everything `bind` can express about one port, resolved and checked: what
/// the data path is programmed from. Operators spell it as a
/// [`crate::spec::PortSpec`] (`Binding::try_from(&spec)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub mac: Mac,
    /// Addresses and prefixes, IPv4 and IPv6 mixed, sorted and unique.
    pub ips: Vec<IpNet>,
    pub tenant: String,
    pub mode: Mode,
    pub broadcast: Limit,
    pub multicast: Limit,
    pub arp: Limit,
    pub allow_dhcp_server: bool,
    /// Extra EtherTypes admitted, sorted and unique.
    pub ethertypes: Vec<u16>,
    /// VLAN IDs admitted (802.1Q), sorted and unique.
    pub vlans: Vec<u16>,
}

impl Binding {
    /// A binding with default limits and no allow-lists.
    pub fn new(mac: Mac, ips: Vec<IpNet>) -> Binding {
        Binding {
            mac,
            ips,
            tenant: String::new(),
            mode: Mode::Enforce,
            broadcast: DEFAULT_BROADCAST,
            multicast: DEFAULT_MULTICAST,
            arp: DEFAULT_ARP,
            allow_dhcp_server: false,
            ethertypes: Vec::new(),
            vlans: Vec::new(),
        }
    }

    /// Sorts lists and checks every bound; call before writing to the maps.
    pub fn normalize(mut self) -> Result<Binding, BindingError> {
        self.check_mac()?;
        if self.tenant.len() > MAX_TENANT_LEN {
            return Err(BindingError::TenantTooLong(self.tenant));
        }
        if self.tenant.chars().any(char::is_control) {
            return Err(BindingError::TenantControl(self.tenant));
        }
        self.ips.sort();
        for w in self.ips.windows(2) {
            if w[0] == w[1] {
                return Err(BindingError::Duplicate(w[0].to_string()));
            }
        }
        self.ethertypes.sort_unstable();
        self.ethertypes.dedup();
        if self.ethertypes.len() > MAX_ETHERTYPES {
            return Err(BindingError::TooManyEthertypes(self.ethertypes.len()));
        }
        self.vlans.sort_unstable();
        self.vlans.dedup();
        if self.vlans.len() > MAX_VLANS {
            return Err(BindingError::TooManyVlans(self.vlans.len()));
        }
        Ok(self)
    }

    /// The data path compares the source MAC with the bound one and nothing
    /// else, so a group (or zero) address must never be bound.
    pub fn check_mac(&self) -> Result<(), BindingError> {
        if self.mac.0[0] & 1 != 0 || self.mac.0 == [0; 6] {
            return Err(BindingError::NotUnicast(self.mac.to_string()));
        }
        Ok(())
    }

    pub fn has_v4_prefix(&self) -> bool {
        self.ips
            .iter()
            .any(|n| matches!(n.addr, IpAddr::V4(_)) && !n.is_host())
    }

    pub fn has_v6_prefix(&self) -> bool {
        self.ips
            .iter()
            .any(|n| matches!(n.addr, IpAddr::V6(_)) && !n.is_host())
    }

    /// The data-path record for this binding (generation, slot and attach
    /// state are the caller's to fill).
    pub fn port_config(&self, ifindex: u32, ifname: &str) -> PortConfig {
        let mut f = flags::BOUND;
        if self.has_v4_prefix() {
            f |= flags::HAS_V4_PREFIX;
        }
        if self.has_v6_prefix() {
            f |= flags::HAS_V6_PREFIX;
        }
        if self.allow_dhcp_server {
            f |= flags::ALLOW_DHCP_SERVER;
        }
        if self.mode == Mode::Monitor {
            f |= flags::MONITOR;
        }
        // Few host addresses ride in the record (no lookup per frame); more go
        // to the exact-address maps (`Pinned` writes them when the flag is set).
        let (v4, v6) = host_addrs(&self.ips);
        let v4: Vec<u32> = v4.iter().map(|a| u32::from_ne_bytes(*a)).collect();
        let (v4_inline, n_v4_inline) = inline(&v4).unwrap_or_else(|| {
            f |= flags::HAS_V4_TABLE;
            Default::default()
        });
        let (v6_inline, n_v6_inline) = inline(&v6).unwrap_or_else(|| {
            f |= flags::HAS_V6_TABLE;
            Default::default()
        });
        let mut ethertypes = [0u16; MAX_ETHERTYPES];
        for (d, s) in ethertypes.iter_mut().zip(&self.ethertypes) {
            *d = *s;
        }
        let mut vlans = [0u16; MAX_VLANS];
        for (d, s) in vlans.iter_mut().zip(&self.vlans) {
            *d = *s;
        }
        PortConfig {
            mac: self.mac.0,
            flags: f,
            generation: 0,
            ifindex,
            eui64_ll: eui64_link_local(self.mac.0),
            bcast: self.broadcast.cfg(),
            mcast: self.multicast.cfg(),
            arp: self.arp.cfg(),
            events: DEFAULT_EVENTS.cfg(),
            ethertypes,
            vlans,
            n_ethertypes: self.ethertypes.len() as u8,
            n_vlans: self.vlans.len() as u8,
            attach_mode: 0,
            attach_reason: 0,
            _pad: [0; 6],
            slot: 0,
            tenant: fixed_str(&self.tenant),
            ifname: fixed_str(ifname),
            n_v4_inline,
            n_v6_inline,
            v4_inline,
            v6_inline,
        }
    }

    /// Rebuilds a binding from a record and the addresses stored for it.
    pub fn from_config(c: &PortConfig, ips: Vec<IpNet>) -> Binding {
        let PortConfig {
            mac,
            flags: f,
            generation: _,
            ifindex: _,
            eui64_ll: _,
            bcast,
            mcast,
            arp,
            events: _,
            ethertypes,
            vlans,
            n_ethertypes,
            n_vlans,
            attach_mode: _,
            attach_reason: _,
            _pad: _,
            slot: _,
            tenant,
            ifname: _,
            // Derived from the addresses, which come from the index.
            v4_inline: _,
            v6_inline: _,
            n_v4_inline: _,
            n_v6_inline: _,
        } = c;
        let mut ips = ips;
        ips.sort();
        Binding {
            mac: Mac(*mac),
            ips,
            tenant: str_from_fixed(tenant),
            mode: if f & flags::MONITOR != 0 {
                Mode::Monitor
            } else {
                Mode::Enforce
            },
            broadcast: Limit::from_cfg(bcast),
            multicast: Limit::from_cfg(mcast),
            arp: Limit::from_cfg(arp),
            allow_dhcp_server: f & flags::ALLOW_DHCP_SERVER != 0,
            ethertypes: ethertypes[..(*n_ethertypes as usize).min(MAX_ETHERTYPES)].to_vec(),
            vlans: vlans[..(*n_vlans as usize).min(MAX_VLANS)].to_vec(),
        }
    }
}

/// The host (full-length) addresses among `nets`, per family.
pub fn host_addrs(nets: &[IpNet]) -> (Vec<[u8; 4]>, Vec<[u8; 16]>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in nets.iter().filter(|n| n.is_host()) {
        match n.addr {
            IpAddr::V4(a) => v4.push(a.octets()),
            IpAddr::V6(a) => v6.push(a.octets()),
        }
    }
    (v4, v6)
}

/// One family's host addresses as the record's inline array and count, or
/// `None` when there are more than fit (they all go to the address map).
fn inline<T: Copy + Default>(addrs: &[T]) -> Option<([T; MAX_INLINE_ADDRS], u8)> {
    if addrs.len() > MAX_INLINE_ADDRS {
        return None;
    }
    let mut out = [T::default(); MAX_INLINE_ADDRS];
    out[..addrs.len()].copy_from_slice(addrs);
    Some((out, addrs.len() as u8))
}

pub fn attach_mode_name(mode: u8) -> Option<&'static str> {
    match mode {
        ATTACH_NATIVE => Some("native"),
        ATTACH_GENERIC => Some("generic"),
        filter_common::ATTACH_TC => Some("tc"),
        _ => None,
    }
}

/// NUL-padded copy, truncated to leave a terminating NUL.
pub fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    let n = b.len().min(N - 1);
    out[..n].copy_from_slice(&b[..n]);
    out
}

pub fn str_from_fixed(b: &[u8]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_config() {
        let mut b = Binding::new(
            Mac::parse_unicast("02:00:00:00:00:01").unwrap(),
            vec![
                "198.51.100.0/28".parse().unwrap(),
                "192.0.2.11".parse().unwrap(),
                "2001:db8::11".parse().unwrap(),
            ],
        );
        b.tenant = "acme".into();
        b.mode = Mode::Monitor;
        b.vlans = vec![100, 7];
        b.ethertypes = vec![0x88cc];
        b.allow_dhcp_server = true;
        let b = b.normalize().unwrap();
        let c = b.port_config(7, "vm1");
        assert_eq!(c.flags & flags::HAS_V4_PREFIX, flags::HAS_V4_PREFIX);
        assert_eq!(c.flags & flags::HAS_V6_PREFIX, 0);
        assert_eq!(c.flags & (flags::HAS_V4_TABLE | flags::HAS_V6_TABLE), 0);
        assert_eq!((c.n_v4_inline, c.n_v6_inline), (1, 1));
        assert_eq!(c.v4_inline[0], u32::from_ne_bytes([192, 0, 2, 11]));
        assert_eq!(c.v6_inline[0][15], 0x11);
        assert_eq!(Binding::from_config(&c, b.ips.clone()), b);
    }

    #[test]
    fn more_host_addresses_than_fit_go_to_the_table() {
        let mac = Mac::parse_unicast("02:00:00:00:00:01").unwrap();
        let many: Vec<IpNet> = (1..=MAX_INLINE_ADDRS as u8 + 1)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .chain([
                "2001:db8::1".parse().unwrap(),
                "2001:db8::/64".parse().unwrap(),
            ])
            .collect();
        let b = Binding::new(mac, many).normalize().unwrap();
        let c = b.port_config(7, "vm1");
        assert_eq!(c.flags & flags::HAS_V4_TABLE, flags::HAS_V4_TABLE);
        assert_eq!(c.n_v4_inline, 0);
        // IPv6: one host address inline; the prefix is never inline.
        assert_eq!(c.flags & flags::HAS_V6_TABLE, 0);
        assert_eq!(c.n_v6_inline, 1);
        assert_eq!(Binding::from_config(&c, b.ips.clone()), b);
    }

    #[test]
    fn rejects_duplicates_and_long_tenants() {
        let mac = Mac::parse_unicast("02:00:00:00:00:01").unwrap();
        let b = Binding::new(
            mac,
            vec!["192.0.2.1".parse().unwrap(), "192.0.2.1".parse().unwrap()],
        );
        assert!(matches!(b.normalize(), Err(BindingError::Duplicate(_))));
        let mut b = Binding::new(mac, vec![]);
        b.tenant = "x".repeat(40);
        assert!(matches!(b.normalize(), Err(BindingError::TenantTooLong(_))));
        for group in [[0x01, 0, 0x5e, 0, 0, 1], [0; 6], [0xff; 6]] {
            let b = Binding::new(Mac(group), vec![]);
            assert!(matches!(b.normalize(), Err(BindingError::NotUnicast(_))));
        }
    }
}
