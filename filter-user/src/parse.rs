//! Parsing of everything an operator types: MAC addresses, addresses and
//! prefixes, EtherTypes, VLAN IDs. Every rejection names the offending input.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("invalid MAC address {0:?}: expected six hex octets like 02:00:00:00:00:01")]
    Mac(String),
    #[error("MAC address {0} is a multicast/broadcast address and cannot be a port's source")]
    GroupMac(String),
    #[error("MAC address {0} is all zeros")]
    ZeroMac(String),
    #[error("invalid IP address or prefix {0:?}")]
    Ip(String),
    #[error("invalid prefix length in {0:?}: must be 0-{1}")]
    PrefixLen(String, u8),
    #[error("prefix {0:?} has host bits set (did you mean {1}?)")]
    HostBits(String, String),
    #[error("invalid EtherType {0:?}: expected 0x0600-0xffff, e.g. 0x88cc")]
    Ethertype(String),
    #[error("EtherType {0:?} is always handled by portguard's own rules (IPv4, ARP, IPv6, VLAN)")]
    ReservedEthertype(String),
    #[error("invalid VLAN ID {0:?}: expected 0-4094")]
    Vlan(String),
    #[error("invalid duration {0:?}: expected e.g. 90s, 15m, 1h30m, 2d, 1w, 500ms")]
    Duration(String),
}

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Mac, ParseError> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(ParseError::Mac(s.to_string()));
        }
        let mut mac = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseError::Mac(s.to_string()));
            }
            mac[i] = u8::from_str_radix(p, 16).map_err(|_| ParseError::Mac(s.to_string()))?;
        }
        Ok(Mac(mac))
    }
}

impl Mac {
    /// Parses a MAC that may be bound to a port: unicast and non-zero.
    pub fn parse_unicast(s: &str) -> Result<Mac, ParseError> {
        let mac: Mac = s.parse()?;
        if mac.0[0] & 1 != 0 {
            return Err(ParseError::GroupMac(mac.to_string()));
        }
        if mac.0 == [0; 6] {
            return Err(ParseError::ZeroMac(mac.to_string()));
        }
        Ok(mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        d.deserialize_str(StrVisitor("a MAC address like 02:00:00:00:00:01", |s| {
            Mac::parse_unicast(s)
        }))
    }
}

/// Parses a string inside the visitor, so that a TOML error carries the span
/// of the offending value itself (one element of an array, say).
struct StrVisitor<T>(&'static str, fn(&str) -> Result<T, ParseError>);

impl<T> serde::de::Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
        (self.1)(s).map_err(E::custom)
    }
}

/// An address (full-length prefix) or a prefix, IPv4 or IPv6.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpNet {
    pub fn max_len(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// A single address rather than a real prefix.
    pub fn is_host(&self) -> bool {
        self.len == self.max_len()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.addr.is_ipv4() == ip.is_ipv4() && masked(ip, self.len) == masked(self.addr, self.len)
    }
}

/// `addr` with every bit after the first `len` cleared.
pub fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl FromStr for IpNet {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<IpNet, ParseError> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| ParseError::Ip(s.to_string()))?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let len = match l {
            None => max,
            Some(l) => {
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::PrefixLen(s.to_string(), max));
                }
                let v: u16 = l
                    .parse()
                    .map_err(|_| ParseError::PrefixLen(s.to_string(), max))?;
                if v > max as u16 {
                    return Err(ParseError::PrefixLen(s.to_string(), max));
                }
                v as u8
            }
        };
        let net = masked(addr, len);
        if net != addr {
            return Err(ParseError::HostBits(
                s.to_string(),
                IpNet { addr: net, len }.to_string(),
            ));
        }
        Ok(IpNet { addr, len })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        d.deserialize_str(StrVisitor("an address or prefix", str::parse))
    }
}

/// Parses `0x88cc`, `88cc` or decimal; refuses values portguard handles itself.
pub fn parse_ethertype(s: &str) -> Result<u16, ParseError> {
    let t = s.trim();
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u16::from_str_radix(h, 16)
    } else {
        t.parse::<u16>()
    }
    .map_err(|_| ParseError::Ethertype(s.to_string()))?;
    if v < 0x0600 {
        return Err(ParseError::Ethertype(s.to_string()));
    }
    if matches!(v, 0x0800 | 0x0806 | 0x86dd | 0x8100 | 0x88a8) {
        return Err(ParseError::ReservedEthertype(s.to_string()));
    }
    Ok(v)
}

pub fn parse_vlan(s: &str) -> Result<u16, ParseError> {
    let v: u16 = s
        .trim()
        .parse()
        .map_err(|_| ParseError::Vlan(s.to_string()))?;
    if v > 4094 {
        return Err(ParseError::Vlan(s.to_string()));
    }
    Ok(v)
}

/// `1h30m`, `90s`, `2d`, `1w`, `500ms`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let bad = || ParseError::Duration(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            "w" => Duration::from_secs(n.saturating_mul(7 * 86400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(d);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            Mac::parse_unicast("02:00:00:00:00:01").unwrap().0,
            [2, 0, 0, 0, 0, 1]
        );
        assert!(Mac::parse_unicast("02:00:00:00:00").is_err());
        assert!(Mac::parse_unicast("02:00:00:00:00:0g").is_err());
        assert!(matches!(
            Mac::parse_unicast("ff:ff:ff:ff:ff:ff"),
            Err(ParseError::GroupMac(_))
        ));
        assert!(matches!(
            Mac::parse_unicast("00:00:00:00:00:00"),
            Err(ParseError::ZeroMac(_))
        ));
        assert!(Mac::parse_unicast("002:00:00:00:00:01").is_err());
    }

    #[test]
    fn nets() {
        let n: IpNet = "192.0.2.0/24".parse().unwrap();
        assert!(!n.is_host());
        assert!(n.contains("192.0.2.77".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!("192.0.2.1/24".parse::<IpNet>().is_err());
        assert!("192.0.2.1/33".parse::<IpNet>().is_err());
        assert!("2001:db8::/129".parse::<IpNet>().is_err());
        assert!("2001:db8:1::/64".parse::<IpNet>().is_ok());
        assert!("2001:db8::5".parse::<IpNet>().unwrap().is_host());
        assert!("bogus".parse::<IpNet>().is_err());
        assert!("10.0.0.0/".parse::<IpNet>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn ethertypes_and_vlans() {
        assert_eq!(parse_ethertype("0x88cc").unwrap(), 0x88cc);
        assert!(parse_ethertype("0x0800").is_err());
        assert!(parse_ethertype("0x05dc").is_err());
        assert!(parse_ethertype("zz").is_err());
        assert_eq!(parse_vlan("100").unwrap(), 100);
        assert!(parse_vlan("4095").is_err());
    }
}
