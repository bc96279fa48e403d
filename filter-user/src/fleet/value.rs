//! A binding value: one state-file port as JSON plus `"schema": 1`, e.g.
//! `{"schema":1,"iface":"vm1","mac":"02:00:00:00:00:01","ips":["192.0.2.11"]}`.
//! Parsed by the state-file parser itself, so a value is valid exactly when
//! the same port would be valid in `portguard apply -f`.
use serde_json::{json, Value};

use crate::state::{self, Format, Port};

/// The only value schema this agent understands.
pub const SCHEMA: u64 = 1;

/// Why a value was refused (one line, names the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

/// Parses and validates the value stored under `key`.
pub fn parse(key: &str, value: &[u8]) -> Result<Port, ValueError> {
    let err = |m: String| ValueError(format!("{key}: {m}"));
    let v: Value =
        serde_json::from_slice(value).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let Value::Object(mut m) = v else {
        return Err(err("the value must be a JSON object".into()));
    };
    match m.remove("schema") {
        Some(Value::Number(n)) if n.as_u64() == Some(SCHEMA) => {}
        Some(other) => {
            return Err(err(format!(
                "unsupported schema {other} (this agent understands {SCHEMA})"
            )))
        }
        None => return Err(err(format!("missing field `schema` (must be {SCHEMA})"))),
    }
    let file = json!({ "port": [Value::Object(m)] }).to_string();
    let st = state::parse(&file, Format::Json, key).map_err(|e| {
        // The wrapper's "line 1 column N" and "port[0]" mean nothing to the writer.
        let mut e = e;
        e.line = None;
        e.column = None;
        e.port = None;
        ValueError(e.to_string())
    })?;
    st.ports
        .into_iter()
        .next()
        .ok_or_else(|| err("no port".into()))
}

/// A port as the state file spells it (no schema): also the snapshot's entries.
pub fn spec_json(port: &Port) -> Value {
    serde_json::to_value(port.spec()).expect("a PortSpec serializes")
}

/// The value to store for `spec`.
pub fn to_value(spec: &Port) -> Value {
    let mut v = spec_json(spec);
    v["schema"] = json!(SCHEMA);
    v
}

/// A state file (`{"port":[...]}`) holding `ports`: what `apply -f` and
/// `daemon --config` read.
pub fn state_file_json<'a>(ports: impl IntoIterator<Item = &'a Port>) -> Value {
    json!({ "port": ports.into_iter().map(spec_json).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_state_parser() {
        let v = br#"{"schema":1,"iface":"vm1","mac":"02:00:00:00:00:01","ips":["192.0.2.11","2001:db8::11"],"tenant":"acme","allow_vlan":[100]}"#;
        let spec = parse("k", v).unwrap();
        assert_eq!(spec.iface, "vm1");
        assert_eq!(spec.binding.ips.len(), 2);
        let again = parse("k", to_value(&spec).to_string().as_bytes()).unwrap();
        assert_eq!(again, spec);
        // The snapshot is a state file the ordinary loader accepts.
        let file = state_file_json([&spec]).to_string();
        let st = state::parse(&file, Format::Json, "snap").unwrap();
        assert_eq!(st.ports, vec![spec]);
    }

    #[test]
    fn bad_values_name_the_key_and_the_problem() {
        let e = parse("/k", b"{\"iface\":\"vm1\",\"mac\":\"02:00:00:00:00:01\"}").unwrap_err();
        assert!(e.0.contains("/k") && e.0.contains("schema"), "{e}");
        let e = parse("/k", b"{\"schema\":2,\"iface\":\"vm1\"}").unwrap_err();
        assert!(e.0.contains("unsupported schema 2"), "{e}");
        let e = parse(
            "/k",
            b"{\"schema\":1,\"iface\":\"vm1\",\"mac\":\"02:00:00:00:00:01\",\"ips\":[\"300.1.1.1\"]}",
        )
        .unwrap_err();
        assert!(e.0.starts_with("/k") && e.0.contains("300.1.1.1"), "{e}");
        let e = parse("/k", b"not json").unwrap_err();
        assert!(e.0.contains("not valid JSON"), "{e}");
        let e = parse(
            "/k",
            b"{\"schema\":1,\"iface\":\"vm1\",\"mac\":\"02:00:00:00:00:01\",\"bogus\":1}",
        )
        .unwrap_err();
        assert!(e.0.contains("bogus"), "{e}");
        assert!(!e.0.contains('\n'));
    }
}
