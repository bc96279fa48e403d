//! [`PortSpec`]: the one description of a port, in the state file's shape.
//!
//! The same type is read from and written to every place a port is spelled
//! out: `[[port]]` tables of a state file (TOML or JSON), the `bind` flags,
//! `show --json`, the `before`/`after` of plans and audit entries, and the
//! differential test's reports. [`Binding`] is what the data path is
//! programmed from: `Binding::try_from(&spec)` resolves the defaults and
//! checks every bound, [`PortSpec::from_binding`] goes back.
//!
//! ```json
//! {"iface": "vm1", "mac": "02:00:00:00:00:01", "ips": ["192.0.2.11", "198.51.100.0/28"],
//!  "tenant": "acme", "mode": "enforce", "attach": true,
//!  "broadcast_pps": 200, "broadcast_burst": 400, "multicast_pps": 1000, "multicast_burst": 2000,
//!  "arp_pps": 100, "arp_burst": 200,
//!  "allow_dhcp_server": false, "allow_ethertype": ["0x88cc"], "allow_vlan": [100]}
//! ```
//!
//! Only `iface` and `mac` are required. A limit left out gets its default
//! ([`Limit::from_settings`]); `attach` left out means "attach" in a state
//! file and "not said" elsewhere (it is never written for a binding read
//! back from the kernel: whether a port is attached is not part of its binding).
use std::fmt;

use serde::{
    de::{self, Deserializer, SeqAccess, Visitor},
    ser::{SerializeSeq, Serializer},
    Deserialize, Serialize,
};

use crate::{
    binding::{
        Binding, BindingError, Limit, Mode, DEFAULT_ARP, DEFAULT_BROADCAST, DEFAULT_MULTICAST,
    },
    parse::{parse_ethertype, parse_vlan, IpNet, Mac},
};

/// One port: its interface and everything its binding says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub iface: String,
    /// The only source MAC the VM may use (unicast).
    pub mac: Mac,
    /// Addresses and prefixes, IPv4 and IPv6 mixed.
    #[serde(default)]
    pub ips: Vec<IpNet>,
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub mode: Mode,
    /// Whether the filter should be attached; `None`: not said (a state
    /// file then attaches, see [`PortSpec::attach`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_pps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast_pps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_pps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_burst: Option<u32>,
    #[serde(default)]
    pub allow_dhcp_server: bool,
    /// Extra EtherTypes admitted: written `"0x88cc"`, read as a string or an integer.
    #[serde(default, with = "ethertypes")]
    pub allow_ethertype: Vec<u16>,
    /// VLAN IDs admitted (802.1Q): read as integers or strings.
    #[serde(default, with = "vlans")]
    pub allow_vlan: Vec<u16>,
}

impl PortSpec {
    /// A port with this MAC and nothing else said (defaults everywhere).
    pub fn new(iface: impl Into<String>, mac: Mac) -> PortSpec {
        PortSpec {
            iface: iface.into(),
            mac,
            ips: Vec::new(),
            tenant: String::new(),
            mode: Mode::Enforce,
            attach: None,
            broadcast_pps: None,
            broadcast_burst: None,
            multicast_pps: None,
            multicast_burst: None,
            arp_pps: None,
            arp_burst: None,
            allow_dhcp_server: false,
            allow_ethertype: Vec::new(),
            allow_vlan: Vec::new(),
        }
    }

    /// The port of `iface` bound to `b`, every limit spelled out, `attach` not said.
    pub fn from_binding(iface: impl Into<String>, b: &Binding) -> PortSpec {
        let Binding {
            mac,
            ips,
            tenant,
            mode,
            broadcast,
            multicast,
            arp,
            allow_dhcp_server,
            ethertypes,
            vlans,
        } = b;
        PortSpec {
            iface: iface.into(),
            mac: *mac,
            ips: ips.clone(),
            tenant: tenant.clone(),
            mode: *mode,
            attach: None,
            broadcast_pps: Some(broadcast.pps),
            broadcast_burst: Some(broadcast.burst),
            multicast_pps: Some(multicast.pps),
            multicast_burst: Some(multicast.burst),
            arp_pps: Some(arp.pps),
            arp_burst: Some(arp.burst),
            allow_dhcp_server: *allow_dhcp_server,
            allow_ethertype: ethertypes.clone(),
            allow_vlan: vlans.clone(),
        }
    }

    /// Whether the filter is to be attached (a state file's default: yes).
    pub fn attach(&self) -> bool {
        self.attach.unwrap_or(true)
    }

    /// The binding this port asks for: defaults resolved, lists sorted, bounds checked.
    pub fn binding(&self) -> Result<Binding, BindingError> {
        Binding::try_from(self)
    }

    /// As a JSON object (the shape every JSON output uses for a port).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a PortSpec is always representable as JSON")
    }
}

impl TryFrom<&PortSpec> for Binding {
    type Error = BindingError;

    fn try_from(s: &PortSpec) -> Result<Binding, BindingError> {
        let mut b = Binding::new(s.mac, s.ips.clone());
        b.tenant = s.tenant.clone();
        b.mode = s.mode;
        b.broadcast = Limit::from_settings(s.broadcast_pps, s.broadcast_burst, DEFAULT_BROADCAST);
        b.multicast = Limit::from_settings(s.multicast_pps, s.multicast_burst, DEFAULT_MULTICAST);
        b.arp = Limit::from_settings(s.arp_pps, s.arp_burst, DEFAULT_ARP);
        b.allow_dhcp_server = s.allow_dhcp_server;
        b.ethertypes = s.allow_ethertype.clone();
        b.vlans = s.allow_vlan.clone();
        b.normalize()
    }
}

impl From<(&str, &Binding)> for PortSpec {
    fn from((iface, b): (&str, &Binding)) -> PortSpec {
        PortSpec::from_binding(iface, b)
    }
}

/// A list of numbers given as integers or strings, each checked by `parse`.
/// The error is raised inside the visitor so that TOML errors point at the
/// offending element rather than at the whole array.
fn number_list<'de, D: Deserializer<'de>>(
    d: D,
    what: &'static str,
    parse: fn(&str) -> Result<u16, crate::parse::ParseError>,
) -> Result<Vec<u16>, D::Error> {
    struct One(
        &'static str,
        fn(&str) -> Result<u16, crate::parse::ParseError>,
    );
    impl<'de> de::DeserializeSeed<'de> for One {
        type Value = u16;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u16, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl Visitor<'_> for One {
        type Value = u16;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u16, E> {
            (self.1)(s).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u16, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u16, E> {
            self.visit_str(&v.to_string())
        }
    }
    struct List(
        &'static str,
        fn(&str) -> Result<u16, crate::parse::ParseError>,
    );
    impl<'de> Visitor<'de> for List {
        type Value = Vec<u16>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of {}", self.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Vec<u16>, A::Error> {
            let mut v = Vec::new();
            while let Some(x) = s.next_element_seed(One(self.0, self.1))? {
                v.push(x);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(List(what, parse))
}

mod ethertypes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u16], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for e in v {
            seq.serialize_element(&format!("0x{e:04x}"))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
        number_list(d, "EtherTypes like \"0x88cc\" or 0x88cc", parse_ethertype)
    }
}

mod vlans {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u16], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
        number_list(d, "VLAN IDs 0-4094", parse_vlan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        let mut b = Binding::new(
            Mac::parse_unicast("02:00:00:00:00:01").unwrap(),
            vec![
                "198.51.100.0/28".parse().unwrap(),
                "192.0.2.11".parse().unwrap(),
            ],
        );
        b.tenant = "acme".into();
        b.mode = Mode::Monitor;
        b.ethertypes = vec![0x88cc];
        b.vlans = vec![7];
        b.normalize().unwrap()
    }

    #[test]
    fn binding_round_trips_through_the_spec_and_json() {
        let b = binding();
        let s = PortSpec::from_binding("vm1", &b);
        assert_eq!(Binding::try_from(&s).unwrap(), b);
        let j = s.to_json();
        assert_eq!(j["allow_ethertype"], serde_json::json!(["0x88cc"]));
        assert_eq!(j["allow_vlan"], serde_json::json!([7]));
        assert_eq!(j["mode"], "monitor");
        assert_eq!(j["broadcast_burst"], 400);
        assert!(j.get("attach").is_none(), "{j}");
        let back: PortSpec = serde_json::from_value(j).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn defaults_and_flags_resolve_like_bind() {
        let mut s = PortSpec::new("vm1", Mac::parse_unicast("02:00:00:00:00:01").unwrap());
        assert!(s.attach());
        s.arp_pps = Some(10);
        s.allow_ethertype = vec![0x88cc, 0x88b5, 0x88cc];
        let b = s.binding().unwrap();
        assert_eq!(b.arp, Limit { pps: 10, burst: 20 });
        assert_eq!(b.broadcast, DEFAULT_BROADCAST);
        assert_eq!(b.ethertypes, vec![0x88b5, 0x88cc]);
        s.tenant = "x".repeat(40);
        assert_eq!(s.binding().unwrap_err().field(), "tenant");
    }

    #[test]
    fn lists_take_strings_and_integers() {
        let s: PortSpec = serde_json::from_str(
            r#"{"iface": "vm1", "mac": "02:00:00:00:00:01",
                "allow_ethertype": ["0x88cc", 35020], "allow_vlan": [100, "7"]}"#,
        )
        .unwrap();
        assert_eq!(s.allow_ethertype, vec![0x88cc, 35020]);
        assert_eq!(s.allow_vlan, vec![100, 7]);
        let e = serde_json::from_str::<PortSpec>(
            r#"{"iface": "vm1", "mac": "02:00:00:00:00:01", "allow_vlan": [4095]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid VLAN ID"), "{e}");
    }
}
