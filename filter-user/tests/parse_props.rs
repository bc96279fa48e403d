//! Property tests of operator-input parsing (`portguard::parse`): nothing
//! panics on arbitrary input, every rejection is an `Err` whose message is
//! non-empty and names the input, and valid values round-trip through
//! `Display`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portguard::parse::{parse_ethertype, parse_vlan, IpNet, Mac, ParseError};
use proptest::prelude::*;

/// Arbitrary strings, plus strings made of the characters these parsers
/// care about (so that the deeper branches are reached, not just the first
/// split).
fn input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-FxX:./-]{0,48}",
        "[0-9]{0,6}",
        "( |\t)?0[xX][0-9a-fA-F]{0,6}( |\n)?",
        "[0-9a-f]{1,3}(:[0-9a-f]{0,3}){4,6}",
        "[0-9]{1,4}(\\.[0-9]{1,4}){3}(/[0-9]{0,4})?",
        "[0-9a-f:]{2,40}(/[0-9]{0,4})?",
    ]
}

/// The message of a rejection: non-empty, and quoting the input where the
/// variant carries it.
fn check_rejection(input: &str, e: &ParseError) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.trim().is_empty(), "empty message for {input:?}");
    match e {
        ParseError::GroupMac(_) | ParseError::ZeroMac(_) => {
            // These name the canonical form of a MAC that did parse.
            let canonical = input.parse::<Mac>().map(|m| m.to_string());
            prop_assert!(canonical.is_ok_and(|c| msg.contains(&c)), "{msg}");
        }
        _ => prop_assert!(
            msg.contains(&format!("{input:?}")),
            "message {msg:?} does not quote the input {input:?}"
        ),
    }
    Ok(())
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Ipv4Addr::from(u32::from(a) & m)
}

fn mask_v6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    Ipv6Addr::from(u128::from(a) & m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mac_parsing_never_panics(s in input()) {
        if let Err(e) = s.parse::<Mac>() {
            check_rejection(&s, &e)?;
        }
        match Mac::parse_unicast(&s) {
            Ok(m) => {
                prop_assert_eq!(m.0[0] & 1, 0);
                prop_assert_ne!(m.0, [0; 6]);
            }
            Err(e) => check_rejection(&s, &e)?,
        }
    }

    #[test]
    fn ipnet_parsing_never_panics(s in input()) {
        match s.parse::<IpNet>() {
            Ok(n) => {
                prop_assert!(n.len <= n.max_len());
                // Accepted prefixes have no host bits: they contain their own address.
                prop_assert!(n.contains(n.addr));
            }
            Err(e) => {
                check_rejection(&s, &e)?;
                // The host-bits rejection suggests a prefix that parses.
                if let ParseError::HostBits(_, suggestion) = &e {
                    prop_assert!(suggestion.parse::<IpNet>().is_ok(), "{suggestion}");
                }
            }
        }
    }

    #[test]
    fn ethertype_parsing_never_panics(s in input()) {
        match parse_ethertype(&s) {
            Ok(v) => {
                prop_assert!(v >= 0x0600);
                prop_assert!(![0x0800, 0x0806, 0x86dd, 0x8100, 0x88a8].contains(&v));
            }
            Err(e) => check_rejection(&s, &e)?,
        }
    }

    #[test]
    fn vlan_parsing_never_panics(s in input()) {
        match parse_vlan(&s) {
            Ok(v) => prop_assert!(v <= 4094),
            Err(e) => check_rejection(&s, &e)?,
        }
    }

    #[test]
    fn mac_round_trips(b in any::<[u8; 6]>(), upper in any::<bool>(), dash in any::<bool>()) {
        let m = Mac(b);
        let mut text = m.to_string();
        prop_assert_eq!(text.len(), 17);
        if upper {
            text = text.to_uppercase();
        }
        if dash {
            text = text.replace(':', "-");
        }
        prop_assert_eq!(text.parse::<Mac>(), Ok(m));
        let unicast = Mac::parse_unicast(&text);
        if b[0] & 1 != 0 {
            prop_assert!(matches!(unicast, Err(ParseError::GroupMac(_))));
        } else if b == [0; 6] {
            prop_assert!(matches!(unicast, Err(ParseError::ZeroMac(_))));
        } else {
            prop_assert_eq!(unicast.as_ref().ok(), Some(&m));
        }
        // Through serde (the state file) as well, for bindable MACs.
        if let Ok(m) = unicast {
            let json = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<Mac>(&json).unwrap(), m);
        }
    }

    #[test]
    fn ipv4_nets_round_trip(a in any::<u32>(), len in 0u8..=32) {
        let net = IpNet { addr: IpAddr::V4(mask_v4(Ipv4Addr::from(a), len)), len };
        let text = net.to_string();
        prop_assert_eq!(text.contains('/'), len != 32);
        prop_assert_eq!(text.parse::<IpNet>(), Ok(net));
        // The explicit /32 form means the same host.
        if len == 32 {
            prop_assert_eq!(format!("{text}/32").parse::<IpNet>(), Ok(net));
        }
        let json = serde_json::to_string(&net).unwrap();
        prop_assert_eq!(serde_json::from_str::<IpNet>(&json).unwrap(), net);
    }

    #[test]
    fn ipv6_nets_round_trip(a in any::<u128>(), len in 0u8..=128) {
        let net = IpNet { addr: IpAddr::V6(mask_v6(Ipv6Addr::from(a), len)), len };
        let text = net.to_string();
        prop_assert_eq!(text.parse::<IpNet>(), Ok(net));
        let json = serde_json::to_string(&net).unwrap();
        prop_assert_eq!(serde_json::from_str::<IpNet>(&json).unwrap(), net);
    }

    #[test]
    fn host_bits_are_rejected(a in any::<u32>(), len in 0u8..32) {
        let addr = Ipv4Addr::from(a);
        let text = format!("{addr}/{len}");
        match text.parse::<IpNet>() {
            Ok(n) => prop_assert_eq!(mask_v4(addr, len), addr, "{}", n),
            Err(ParseError::HostBits(_, suggestion)) => {
                prop_assert_ne!(mask_v4(addr, len), addr);
                prop_assert_eq!(suggestion, format!("{}/{len}", mask_v4(addr, len)));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn prefix_lengths_out_of_range_are_rejected(a in any::<u32>(), b in any::<u128>(), extra in 1u32..1000) {
        let v4 = format!("{}/{}", Ipv4Addr::from(a), 32 + extra);
        prop_assert!(matches!(v4.parse::<IpNet>(), Err(ParseError::PrefixLen(_, 32))));
        let v6 = format!("{}/{}", Ipv6Addr::from(b), 128 + extra);
        prop_assert!(matches!(v6.parse::<IpNet>(), Err(ParseError::PrefixLen(_, 128))));
    }

    #[test]
    fn ethertypes_round_trip(v in any::<u16>()) {
        let reserved = [0x0800, 0x0806, 0x86dd, 0x8100, 0x88a8].contains(&v);
        for text in [format!("0x{v:04x}"), format!("0X{v:X}"), v.to_string(), format!(" {v} ")] {
            match parse_ethertype(&text) {
                Ok(got) => {
                    prop_assert_eq!(got, v);
                    prop_assert!(v >= 0x0600 && !reserved);
                }
                Err(ParseError::ReservedEthertype(_)) => prop_assert!(reserved),
                Err(ParseError::Ethertype(_)) => prop_assert!(v < 0x0600),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }

    #[test]
    fn vlans_round_trip(v in any::<u16>()) {
        let got = parse_vlan(&v.to_string());
        if v <= 4094 {
            prop_assert_eq!(got, Ok(v));
            prop_assert_eq!(parse_vlan(&format!(" {v}\n")), Ok(v));
        } else {
            prop_assert!(matches!(got, Err(ParseError::Vlan(_))));
        }
    }
}
