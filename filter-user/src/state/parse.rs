//! State file text -> [`State`]. The file is parsed once: TOML into a
//! `toml_edit` document that keeps every span, deserialized from there;
//! `serde_path_to_error` says which port, field and element an error is
//! about, the document's spans say where that is.
use std::{collections::HashMap, path::Path};

use serde::Deserialize;
use serde_path_to_error::{Path as SerdePath, Segment};
use toml_edit::ImDocument;

use super::{Port, State, StateError};
use crate::{binding::Binding, lifecycle::Guard, spec::PortSpec};

/// Syntax of a state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// By extension (`.json`, `.toml`), else by content (a leading `{` is JSON).
    pub fn detect(path: &Path, text: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            _ if text.trim_start().starts_with('{') => Format::Json,
            _ => Format::Toml,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, deserialize_with = "port_list")]
    port: Vec<PortSpec>,
    #[serde(default)]
    guard: Vec<GuardSpec>,
}

/// `[[guard]] iface = "vnet*"`: interfaces whose names match are attached
/// fail-closed as soon as they appear (by the daemon), until a port binds them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardSpec {
    iface: String,
}

/// Checks the guard patterns; an error names `guard[N]` and its line.
#[allow(clippy::result_large_err)]
fn validate_guards(
    raw: Vec<GuardSpec>,
    origin: &str,
    pos: &dyn Positions,
) -> Result<Vec<Guard>, StateError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, g)| {
            Guard::new(&g.iface).map_err(|e| {
                let (line, column) = pos.guard(i).unzip();
                StateError {
                    origin: origin.to_string(),
                    line,
                    column,
                    port: None,
                    field: Some(format!("guard[{i}].iface")),
                    message: e.to_string(),
                }
            })
        })
        .collect()
}

/// A `Vec<PortSpec>` whose type error says what a state file expects.
fn port_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PortSpec>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<PortSpec>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of ports ([[port]] tables)")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut s: A,
        ) -> Result<Self::Value, A::Error> {
            let mut v = Vec::new();
            while let Some(p) = s.next_element()? {
                v.push(p);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(V)
}

/// Parses and validates a whole state file. `origin` names it in errors.
// Called once per file: the error's size does not matter.
#[allow(clippy::result_large_err)]
pub fn parse(text: &str, format: Format, origin: &str) -> Result<State, StateError> {
    match format {
        Format::Toml => parse_toml(text, origin),
        Format::Json => parse_json(text, origin),
    }
}

#[allow(clippy::result_large_err)]
fn parse_toml(text: &str, origin: &str) -> Result<State, StateError> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unzip();
        StateError {
            origin: origin.to_string(),
            line,
            column,
            port: None,
            field: None,
            message: e.message().trim_end().to_string(),
        }
    })?;
    let de = toml_edit::de::Deserializer::from(doc.clone());
    let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = PathAt::of(e.path());
        let e = e.into_inner();
        let positions = TomlPositions { text, doc: &doc };
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unzip();
        StateError {
            origin: origin.to_string(),
            line,
            column,
            port: at.port.map(|i| (i, positions.iface(i))),
            field: at.field,
            message: e.message().trim_end().to_string(),
        }
    })?;
    let pos = TomlPositions { text, doc: &doc };
    let guards = validate_guards(file.guard, origin, &pos)?;
    Ok(State {
        guards,
        ..validate(file.port, origin, &pos)?
    })
}

#[allow(clippy::result_large_err)]
fn parse_json(text: &str, origin: &str) -> Result<State, StateError> {
    let error = |at: PathAt, e: serde_json::Error| {
        // The port's name, for the message: only on this (error) path is
        // the text read a second time.
        let iface = |i: usize| {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            v.get("port")?
                .get(i)?
                .get("iface")?
                .as_str()
                .map(str::to_string)
        };
        // serde_json appends " at line L column C"; we print it ourselves.
        let mut message = e.to_string();
        if let Some(pos) = message.rfind(" at line ") {
            message.truncate(pos);
        }
        StateError {
            origin: origin.to_string(),
            line: (e.line() > 0).then_some(e.line()),
            column: (e.line() > 0).then_some(e.column()),
            port: at.port.map(|i| (i, iface(i))),
            field: at.field,
            message,
        }
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| error(PathAt::of(e.path()), e.into_inner()))?;
    de.end().map_err(|e| {
        error(
            PathAt {
                port: None,
                field: None,
            },
            e,
        )
    })?;
    let guards = validate_guards(file.guard, origin, &NoPositions)?;
    Ok(State {
        guards,
        ..validate(file.port, origin, &NoPositions)?
    })
}

/// Which port (`port[N]`) and field a deserialization path points into.
struct PathAt {
    port: Option<usize>,
    field: Option<String>,
}

impl PathAt {
    fn of(path: &SerdePath) -> PathAt {
        let mut at = PathAt {
            port: None,
            field: None,
        };
        let mut segs = path.iter();
        if let (Some(Segment::Map { key }), Some(Segment::Seq { index })) =
            (segs.next(), segs.next())
        {
            if key == "port" {
                at.port = Some(*index);
                if let Some(Segment::Map { key }) = segs.next() {
                    at.field = Some(key.clone());
                }
            }
        }
        at
    }
}

/// Where the ports of a file and their keys are, for semantic errors.
pub(super) trait Positions {
    /// (line, column) of port `i`'s table.
    fn port(&self, i: usize) -> Option<(usize, usize)>;
    /// (line, column) of the key `field` in port `i`.
    fn key(&self, i: usize, field: &str) -> Option<(usize, usize)>;
    /// (line, column) of the `[[guard]]` table `i`.
    fn guard(&self, _i: usize) -> Option<(usize, usize)> {
        None
    }
}

/// Ports built in memory (or from JSON): no positions.
pub(super) struct NoPositions;

impl Positions for NoPositions {
    fn port(&self, _: usize) -> Option<(usize, usize)> {
        None
    }
    fn key(&self, _: usize, _: &str) -> Option<(usize, usize)> {
        None
    }
}

struct TomlPositions<'a> {
    text: &'a str,
    doc: &'a ImDocument<&'a str>,
}

/// A `[[port]]` table or an inline `{ ... }` in `port = [...]`.
enum PortTable<'a> {
    Table(&'a toml_edit::Table),
    Inline(&'a toml_edit::InlineTable),
}

impl<'a> TomlPositions<'a> {
    fn table(&self, i: usize) -> Option<PortTable<'a>> {
        let item = self.doc.get("port")?;
        if let Some(a) = item.as_array_of_tables() {
            return a.get(i).map(PortTable::Table);
        }
        item.as_array()?
            .get(i)?
            .as_inline_table()
            .map(PortTable::Inline)
    }

    fn iface(&self, i: usize) -> Option<String> {
        let v = match self.table(i)? {
            PortTable::Table(t) => t.get("iface")?.as_str(),
            PortTable::Inline(t) => t.get("iface")?.as_str(),
        };
        v.map(str::to_string)
    }
}

impl Positions for TomlPositions<'_> {
    fn port(&self, i: usize) -> Option<(usize, usize)> {
        let span = match self.table(i)? {
            PortTable::Table(t) => t.span(),
            PortTable::Inline(t) => t.span(),
        }?;
        Some(line_col(self.text, span.start))
    }

    fn guard(&self, i: usize) -> Option<(usize, usize)> {
        let t = self.doc.get("guard")?.as_array_of_tables()?.get(i)?;
        Some(line_col(self.text, t.span()?.start))
    }

    fn key(&self, i: usize, field: &str) -> Option<(usize, usize)> {
        let key = match self.table(i)? {
            PortTable::Table(t) => t.get_key_value(field)?.0,
            PortTable::Inline(t) => t.get_key_value(field)?.0,
        };
        Some(line_col(self.text, key.span()?.start))
    }
}

/// Byte offset -> 1-based (line, column).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn valid_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("interface name is empty".into());
    }
    if s.len() >= libc::IFNAMSIZ {
        return Err(format!(
            "interface name {s:?} is longer than {} bytes",
            libc::IFNAMSIZ - 1
        ));
    }
    if s.contains(['/', ':']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid interface name {s:?}"));
    }
    Ok(())
}

/// One port's own checks: (field, message) on failure.
pub(super) fn check_port(spec: &PortSpec) -> Result<Port, (&'static str, String)> {
    valid_ifname(&spec.iface).map_err(|m| ("iface", m))?;
    let binding = Binding::try_from(spec).map_err(|e| (e.field(), e.to_string()))?;
    Ok(Port {
        iface: spec.iface.clone(),
        binding,
        attach: spec.attach(),
        line: None,
    })
}

/// Checks every port and that no interface is described twice.
#[allow(clippy::result_large_err)]
pub(super) fn validate(
    specs: Vec<PortSpec>,
    origin: &str,
    pos: &dyn Positions,
) -> Result<State, StateError> {
    // An error about `field` of port `i` (or about the whole port), at the
    // field's key, else at the port's table.
    let error = |i: usize, iface: &str, field: &str, message: String| {
        let (line, column) = pos.key(i, field).or_else(|| pos.port(i)).unzip();
        StateError {
            origin: origin.to_string(),
            line,
            column,
            port: Some((i, Some(iface.to_string()))),
            field: Some(field.to_string()),
            message,
        }
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut ports = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let mut port = check_port(spec).map_err(|(f, m)| error(i, &spec.iface, f, m))?;
        if let Some(first) = seen.insert(&spec.iface, i) {
            let first_line = pos
                .port(first)
                .map(|(l, _)| format!(" (line {l})"))
                .unwrap_or_default();
            return Err(error(
                i,
                &spec.iface,
                "iface",
                format!(
                    "interface {:?} is already described by port[{first}]{first_line}",
                    spec.iface
                ),
            ));
        }
        port.line = pos.port(i).map(|(l, _)| l);
        ports.push(port);
    }
    Ok(State {
        ports,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use crate::binding::{Limit, Mode, DEFAULT_MULTICAST};

    use super::*;

    const GOOD: &str = r#"
[[port]]
iface = "vm1"
mac = "02:00:00:00:00:01"
ips = ["192.0.2.11", "2001:db8::11", "198.51.100.0/28"]
tenant = "acme"
mode = "monitor"
broadcast_pps = 50
allow_ethertype = ["0x88cc", 0x88b5]
allow_vlan = [100, "7"]

[[port]]
iface = "vm2"
mac = "02:00:00:00:00:02"
attach = false
"#;

    fn err(text: &str) -> StateError {
        parse(text, Format::Toml, "s.toml").expect_err("should be rejected")
    }

    #[test]
    fn guards_parse_and_bad_patterns_name_their_line() {
        let s = parse(
            "[[guard]]\niface = \"vnet*\"\n\n[[guard]]\niface = \"tap?\"\n\n[[port]]\niface = \"vnet0\"\nmac = \"02:00:00:00:00:01\"\n",
            Format::Toml,
            "s.toml",
        )
        .unwrap();
        let g: Vec<&str> = s.guards.iter().map(|g| g.pattern()).collect();
        assert_eq!(g, ["vnet*", "tap?"]);
        assert_eq!(s.ports.len(), 1);
        let j = parse(r#"{"guard": [{"iface": "vnet*"}]}"#, Format::Json, "s.json").unwrap();
        assert!(j.guards[0].matches("vnet12"));

        let e = err("[[guard]]\niface = \"vnet*\"\n[[guard]]\niface = \"*\"\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.field.as_deref(), Some("guard[1].iface"), "{e}");
        assert!(e.message.contains("matches every interface"), "{e}");
        let e = err("[[guard]]\niface = \"vnet*\"\nmode = \"x\"\n");
        assert!(e.message.contains("unknown field `mode`"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        let e = err("[[guard]]\niface = \"a b*\"\n");
        assert!(e.to_string().contains("invalid guard pattern"), "{e}");
    }

    #[test]
    fn parses_toml() {
        let s = parse(GOOD, Format::Toml, "s.toml").unwrap();
        assert_eq!(s.ports.len(), 2);
        let p = &s.ports[0];
        assert_eq!(p.iface, "vm1");
        assert_eq!(p.line, Some(2));
        assert!(p.attach);
        assert_eq!(p.binding.mode, Mode::Monitor);
        assert_eq!(
            p.binding.broadcast,
            Limit {
                pps: 50,
                burst: 100
            }
        );
        assert_eq!(p.binding.multicast, DEFAULT_MULTICAST);
        assert_eq!(p.binding.ethertypes, vec![0x88b5, 0x88cc]);
        assert_eq!(p.binding.vlans, vec![7, 100]);
        assert_eq!(p.binding.ips.len(), 3);
        assert!(!s.ports[1].attach);
        assert_eq!(s.ports[1].binding.mode, Mode::Enforce);
        assert_eq!(s.ports[1].line, Some(12));
    }

    #[test]
    fn json_has_the_same_structure() {
        let j = r#"{"port": [
            {"iface": "vm1", "mac": "02:00:00:00:00:01", "ips": ["192.0.2.11"],
             "mode": "monitor", "allow_ethertype": ["0x88cc"], "arp_pps": 10}
        ]}"#;
        let s = parse(j, Format::Json, "s.json").unwrap();
        assert_eq!(s.ports[0].binding.arp, Limit { pps: 10, burst: 20 });
        let e = parse(
            r#"{"port": [{"iface": "vm1", "mac": "02:00:00:00:00:01"},
  {"iface": "vm2", "mac": "zz"}]}"#,
            Format::Json,
            "s.json",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.port, Some((1, Some("vm2".into()))));
        assert!(e.to_string().contains("invalid MAC"), "{e}");
        assert_eq!(
            Format::detect(Path::new("x.conf"), " {\"port\": []}"),
            Format::Json
        );
        assert_eq!(
            Format::detect(Path::new("x.conf"), "[[port]]"),
            Format::Toml
        );
    }

    #[test]
    fn errors_name_line_port_and_field() {
        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\n\n[[port]]\niface = \"vm2\"\nmac = \"02:00:00:00:00:zz\"\n");
        assert_eq!((e.line, e.field.as_deref()), (Some(7), Some("mac")), "{e}");
        assert_eq!(e.port, Some((1, Some("vm2".into()))));
        let s = e.to_string();
        assert!(
            s.starts_with(
                "s.toml, line 7, column 7, port[1] (iface \"vm2\"), field `mac`: invalid MAC"
            ),
            "{s}"
        );

        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nips = [\n  \"192.0.2.1\",\n  \"192.0.2.300\",\n]\n");
        assert_eq!((e.line, e.field.as_deref()), (Some(6), Some("ips")), "{e}");

        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nbogus = 1\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");

        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\n[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:02\"\n");
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(5), Some("iface")),
            "{e}"
        );
        assert!(
            e.message.contains("already described by port[0] (line 1)"),
            "{e}"
        );

        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nips = [\"192.0.2.1\", \"192.0.2.1\"]\n");
        assert_eq!((e.line, e.field.as_deref()), (Some(4), Some("ips")), "{e}");

        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nmode = \"audit\"\n");
        assert_eq!((e.line, e.field.as_deref()), (Some(4), Some("mode")), "{e}");

        let e = err("[[port]]\niface = \"vm1\"\n");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("missing field `mac`"), "{e}");

        let e =
            err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nallow_vlan = [4095]\n");
        assert_eq!(e.field.as_deref(), Some("allow_vlan"), "{e}");
        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nallow_ethertype = [\"0x0800\"]\n");
        assert_eq!(e.field.as_deref(), Some("allow_ethertype"), "{e}");
        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\ntenant = \"0123456789012345678901234567890123\"\n");
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(4), Some("tenant")),
            "{e}"
        );
        let e = err("[[port]]\niface = \"a/b\"\nmac = \"02:00:00:00:00:01\"\n");
        assert_eq!(e.field.as_deref(), Some("iface"), "{e}");
        let e = err("[[ports]]\niface = \"vm1\"\n");
        assert_eq!(e.line, Some(1));
        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\n");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn array_elements_and_inline_tables_are_located() {
        // The bad element of a multi-line list, not the list's first line.
        let e = err("[[port]]\niface = \"vm1\"\nmac = \"02:00:00:00:00:01\"\nallow_vlan = [\n  1,\n  4095,\n]\n");
        assert_eq!(
            (e.line, e.column, e.field.as_deref()),
            (Some(6), Some(3), Some("allow_vlan")),
            "{e}"
        );
        // `port = [{...}]` names the port and the key too.
        let e = err("port = [\n  {iface = \"vm1\", mac = \"02:00:00:00:00:01\"},\n  {iface = \"vm2\", mac = \"02:00:00:00:00:02\", tenant = \"\\u0001\"},\n]\n");
        assert_eq!(e.port, Some((1, Some("vm2".into()))), "{e}");
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("tenant")),
            "{e}"
        );
    }

    #[test]
    fn empty_file_is_an_empty_state() {
        assert_eq!(parse("", Format::Toml, "x").unwrap().ports.len(), 0);
        assert_eq!(parse("{}", Format::Json, "x").unwrap().ports.len(), 0);
    }

    #[test]
    fn ports_from_memory_get_the_file_checks() {
        let s = parse(GOOD, Format::Toml, "s.toml").unwrap();
        let again = State::from_specs(s.specs(), "memory").unwrap();
        assert_eq!(
            again.ports.iter().map(|p| &p.binding).collect::<Vec<_>>(),
            s.ports.iter().map(|p| &p.binding).collect::<Vec<_>>()
        );
        let mut dup = s.specs();
        dup.push(dup[0].clone());
        let e = State::from_specs(dup, "etcd").unwrap_err();
        assert_eq!(e.port, Some((2, Some("vm1".into()))));
        assert_eq!(e.line, None);
        assert!(e.to_string().starts_with("etcd, port[2]"), "{e}");
    }
}
