//! Property tests of the declarative state file (`portguard::state::parse`):
//! no input panics it, every rejection carries a message, and well-formed
//! files parse into exactly the ports they list.
use portguard::state::{parse, Format};
use proptest::prelude::*;

const VALID_TOML: &str = r#"[[port]]
iface = "vm1"
mac = "02:00:00:00:00:01"
ips = ["192.0.2.11", "2001:db8::11", "198.51.100.0/28"]
tenant = "acme"
mode = "enforce"
attach = true
broadcast_pps = 200
broadcast_burst = 400
allow_dhcp_server = false
allow_ethertype = ["0x88cc"]
allow_vlan = [100]

[[port]]
iface = "vm2"
mac = "02:00:00:00:00:02"
ips = ["192.0.2.12"]
mode = "monitor"
"#;

const VALID_JSON: &str = r#"{"port": [
  {"iface": "vm1", "mac": "02:00:00:00:00:01",
   "ips": ["192.0.2.11", "2001:db8::11", "198.51.100.0/28"],
   "tenant": "acme", "allow_ethertype": ["0x88cc"], "allow_vlan": [100]},
  {"iface": "vm2", "mac": "02:00:00:00:00:02", "ips": ["192.0.2.12"], "mode": "monitor"}
]}"#;

fn check(text: &str, format: Format) -> Result<(), TestCaseError> {
    if let Err(e) = parse(text, format, "<prop>") {
        let msg = e.to_string();
        prop_assert!(!msg.trim().is_empty(), "empty error for {text:?}");
        prop_assert!(!msg.contains('\n'), "multi-line error {msg:?}");
    }
    Ok(())
}

/// `base` with one edit at a random place: a deletion, an insertion or a
/// replacement, so most inputs stay close to a valid file and reach the
/// field-level validation rather than the syntax error path.
fn mutate(base: &'static str) -> impl Strategy<Value = String> {
    (0..base.len(), 0usize..12, any::<char>(), 0u8..3).prop_map(move |(at, len, c, kind)| {
        let mut s: Vec<char> = base.chars().collect();
        let at = at.min(s.len());
        match kind {
            0 => {
                let end = (at + len).min(s.len());
                s.drain(at..end);
            }
            1 => s.insert(at, c),
            _ => {
                if at < s.len() {
                    s[at] = c;
                }
            }
        }
        s.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text, Format::Toml)?;
        check(&text, Format::Json)?;
    }

    #[test]
    fn mutated_toml_never_panics(text in mutate(VALID_TOML)) {
        check(&text, Format::Toml)?;
    }

    #[test]
    fn mutated_json_never_panics(text in mutate(VALID_JSON)) {
        check(&text, Format::Json)?;
    }

    #[test]
    fn generated_files_parse_into_their_ports(
        ports in proptest::collection::vec((1u8..250, 0u8..=255, proptest::bool::ANY), 1..20)
    ) {
        // Unique interface names and MACs, addresses from 192.0.2.0/24.
        let mut text = String::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, (host, last, monitor)) in ports.iter().enumerate() {
            if !seen.insert(*host) {
                continue;
            }
            text.push_str(&format!(
                "[[port]]\niface = \"vm{i}\"\nmac = \"02:00:00:00:{i:02x}:{last:02x}\"\nips = [\"192.0.2.{host}\"]\nmode = \"{}\"\n\n",
                if *monitor { "monitor" } else { "enforce" }
            ));
        }
        let state = parse(&text, Format::Toml, "<prop>");
        prop_assert!(state.is_ok(), "{text}\n{:?}", state.err().map(|e| e.to_string()));
        prop_assert_eq!(state.unwrap().ports.len(), seen.len());
    }
}

#[test]
fn the_documented_examples_parse() {
    assert_eq!(
        parse(VALID_TOML, Format::Toml, "a.toml")
            .unwrap()
            .ports
            .len(),
        2
    );
    assert_eq!(
        parse(VALID_JSON, Format::Json, "a.json")
            .unwrap()
            .ports
            .len(),
        2
    );
}
