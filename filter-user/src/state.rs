//! Declarative state files (`portguard apply`, `portguard daemon`).
//!
//! A state file lists every port portguard should guard, in TOML or in JSON
//! with the same structure:
//!
//! ```toml
//! [[port]]
//! iface = "vm1"
//! mac = "02:00:00:00:00:01"
//! ips = ["192.0.2.11", "2001:db8::11", "198.51.100.0/28"]
//! tenant = "acme"
//! mode = "enforce"        # or "monitor"
//! attach = true
//! broadcast_pps = 200     # plus broadcast_burst, multicast_*, arp_*
//! allow_dhcp_server = false
//! allow_ethertype = ["0x88cc"]
//! allow_vlan = [100]
//! ```
//!
//! [`parse`] validates a whole file (every error names the line, the port
//! and the field) before anything touches the kernel; [`plan`] diffs it
//! against the pinned state; [`apply`] changes only what differs, each
//! port's binding atomically through [`Pinned::bind`].
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    fs::File,
    os::fd::AsRawFd,
    path::Path,
};

use anyhow::{Context, Result};
use serde::{
    de::{self, Deserializer, SeqAccess, Visitor},
    Deserialize,
};
use serde_json::{json, Value};

use crate::{
    attach::{self, RequestedMode},
    audit::{one_line, AuditEntry},
    binding::{
        Binding, BindingError, Limit, Mode, DEFAULT_ARP, DEFAULT_BROADCAST, DEFAULT_MULTICAST,
    },
    iface,
    parse::{parse_ethertype, parse_vlan, IpNet, Mac},
    pinned::{Pinned, PortInfo},
    report,
};

// ------------------------------------------------------------------ parsing

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

/// One port as the file describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub iface: String,
    /// Normalized (sorted, unique, bounds checked).
    pub binding: Binding,
    /// The filter should be attached to the interface.
    pub attach: bool,
    /// 1-based line of the port's table (TOML only).
    pub line: Option<usize>,
}

/// A validated state file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// In file order; interface names are unique.
    pub ports: Vec<PortSpec>,
}

/// Why a state file was rejected. The whole file is rejected: nothing changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    /// File name (or `<input>`).
    pub origin: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// `port[N]` (0-based) and its iface, when the error is inside a port.
    pub port: Option<(usize, Option<String>)>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, ", line {l}, column {c}")?,
            (Some(l), None) => write!(f, ", line {l}")?,
            _ => {}
        }
        match &self.port {
            Some((i, Some(name))) => write!(f, ", port[{i}] (iface {name:?})")?,
            Some((i, None)) => write!(f, ", port[{i}]")?,
            None => {}
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        // Parser messages may span lines ("invalid array\nexpected `]`"): errors are one line.
        let message: Vec<&str> = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        write!(f, ": {}", message.join("; "))
    }
}

impl std::error::Error for StateError {}

fn default_true() -> bool {
    true
}

/// An EtherType given as a string ("0x88cc") or an integer (0x88cc in TOML).
struct Ethertype(u16);

impl<'de> Deserialize<'de> for Ethertype {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ethertype;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an EtherType like \"0x88cc\" or 0x88cc")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ethertype, E> {
                parse_ethertype(s).map(Ethertype).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ethertype, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ethertype, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// A VLAN ID given as an integer or a string.
struct Vlan(u16);

impl<'de> Deserialize<'de> for Vlan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Vlan;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a VLAN ID 0-4094")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Vlan, E> {
                parse_vlan(s).map(Vlan).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vlan, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vlan, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    iface: String,
    mac: Mac,
    #[serde(default)]
    ips: Vec<IpNet>,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_true")]
    attach: bool,
    broadcast_pps: Option<u32>,
    broadcast_burst: Option<u32>,
    multicast_pps: Option<u32>,
    multicast_burst: Option<u32>,
    arp_pps: Option<u32>,
    arp_burst: Option<u32>,
    #[serde(default)]
    allow_dhcp_server: bool,
    #[serde(default)]
    allow_ethertype: Vec<Ethertype>,
    #[serde(default)]
    allow_vlan: Vec<Vlan>,
}

thread_local! {
    /// Index of the port being deserialized, to name it in errors.
    static CURRENT_PORT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

#[derive(Default)]
struct RawPorts(Vec<RawPort>);

impl<'de> Deserialize<'de> for RawPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPorts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of ports ([[port]] tables)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<RawPorts, A::Error> {
                let mut v = Vec::new();
                loop {
                    CURRENT_PORT.with(|c| c.set(Some(v.len())));
                    match s.next_element::<RawPort>()? {
                        Some(p) => v.push(p),
                        None => break,
                    }
                }
                CURRENT_PORT.with(|c| c.set(None));
                Ok(RawPorts(v))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    port: RawPorts,
}

/// Byte offset -> 1-based (line, column).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where things are in a TOML file: per port, its span and the spans of its keys and values.
struct TomlLocator {
    ports: Vec<TomlPortSpans>,
}

struct TomlPortSpans {
    span: std::ops::Range<usize>,
    iface: Option<String>,
    /// key -> (key span, value span)
    fields: BTreeMap<String, (std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl TomlLocator {
    fn new(text: &str) -> Option<TomlLocator> {
        type SpannedTable = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
        #[derive(Deserialize)]
        struct Lenient {
            #[serde(default)]
            port: Vec<toml::Spanned<SpannedTable>>,
        }
        let l: Lenient = toml::from_str(text).ok()?;
        let ports = l
            .port
            .into_iter()
            .map(|t| {
                let span = t.span();
                let mut fields = BTreeMap::new();
                let mut iface = None;
                for (k, v) in t.into_inner() {
                    if k.get_ref() == "iface" {
                        iface = v.get_ref().as_str().map(str::to_string);
                    }
                    fields.insert(k.get_ref().clone(), (k.span(), v.span()));
                }
                TomlPortSpans {
                    span,
                    iface,
                    fields,
                }
            })
            .collect();
        Some(TomlLocator { ports })
    }

    /// Offset of the first `"..."` quoted in `message` inside the value of
    /// `field` of port `i`.
    fn find_quoted(&self, text: &str, i: usize, field: &str, message: &str) -> Option<usize> {
        let start = message.find('"')?;
        let end = start + 1 + message[start + 1..].find('"')?;
        let needle = &message[start..=end];
        let (_, vs) = self.ports.get(i)?.fields.get(field)?;
        let hay = text.get(vs.clone())?;
        hay.find(needle).map(|o| vs.start + o)
    }

    /// The port and field whose text contains `offset`.
    fn at(&self, offset: usize) -> Option<(usize, Option<String>, Option<String>)> {
        for (i, p) in self.ports.iter().enumerate() {
            let mut field = None;
            for (k, (ks, vs)) in &p.fields {
                if ks.contains(&offset) || vs.contains(&offset) {
                    field = Some(k.clone());
                }
            }
            if field.is_some() || p.span.contains(&offset) {
                return Some((i, p.iface.clone(), field));
            }
        }
        None
    }
}

/// Everything one port needs in the second (semantic) pass.
struct Located<'a> {
    text: &'a str,
    format: Format,
    origin: &'a str,
    toml: Option<TomlLocator>,
}

impl Located<'_> {
    /// An error about `field` of port `i` (or about the whole port when `field` is None).
    fn error(&self, i: usize, iface: &str, field: Option<&str>, message: String) -> StateError {
        let mut line = None;
        let mut column = None;
        if let Some(loc) = &self.toml {
            if let Some(p) = loc.ports.get(i) {
                let off = field
                    .and_then(|f| p.fields.get(f))
                    .map(|(k, _)| k.start)
                    .unwrap_or(p.span.start);
                let (l, c) = line_col(self.text, off);
                line = Some(l);
                column = Some(c);
            }
        }
        let _ = self.format;
        StateError {
            origin: self.origin.to_string(),
            line,
            column,
            port: Some((i, Some(iface.to_string()))),
            field: field.map(str::to_string),
            message,
        }
    }
}

fn binding_error_field(e: &BindingError) -> &'static str {
    match e {
        BindingError::TenantTooLong(_) | BindingError::TenantControl(_) => "tenant",
        BindingError::TooManyEthertypes(_) => "allow_ethertype",
        BindingError::TooManyVlans(_) => "allow_vlan",
        BindingError::Duplicate(_) => "ips",
        BindingError::NotUnicast(_) => "mac",
    }
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

/// Parses and validates a whole state file. `origin` names it in errors.
// Called once per file: the error's size does not matter.
#[allow(clippy::result_large_err)]
pub fn parse(text: &str, format: Format, origin: &str) -> Result<State, StateError> {
    CURRENT_PORT.with(|c| c.set(None));
    let raw: Result<RawFile, StateError> = match format {
        Format::Toml => toml::from_str::<RawFile>(text).map_err(|e| {
            let port_idx = CURRENT_PORT.with(|c| c.get());
            let loc = TomlLocator::new(text);
            let (mut line, mut column, mut port, mut field) = (None, None, None, None);
            if let Some(span) = e.span() {
                let (l, c) = line_col(text, span.start);
                line = Some(l);
                column = Some(c);
                if let Some((i, iface, f)) = loc.as_ref().and_then(|l| l.at(span.start)) {
                    port = Some((i, iface));
                    field = f;
                }
            }
            if port.is_none() {
                if let Some(i) = port_idx {
                    let iface = loc
                        .as_ref()
                        .and_then(|l| l.ports.get(i))
                        .and_then(|p| p.iface.clone());
                    port = Some((i, iface));
                }
            }
            // A span covering the whole table (e.g. a missing key) points at the
            // table header: name no field then.
            if field.as_deref().is_some_and(|f| !e.message().contains(f))
                && e.message().starts_with("missing field")
            {
                field = None;
            }
            // Errors inside an array (e.g. one bad address of `ips`) carry the
            // span of the whole array: point at the quoted value the message names.
            if let (Some(span), Some(loc), Some((i, _)), Some(f)) = (e.span(), &loc, &port, &field)
            {
                if let Some(off) = loc.find_quoted(text, *i, f, e.message()) {
                    if off > span.start {
                        let (l, c) = line_col(text, off);
                        line = Some(l);
                        column = Some(c);
                    }
                }
            }
            StateError {
                origin: origin.to_string(),
                line,
                column,
                port,
                field,
                message: e.message().trim_end().to_string(),
            }
        }),
        Format::Json => serde_json::from_str::<RawFile>(text).map_err(|e| {
            let port_idx = CURRENT_PORT.with(|c| c.get());
            let port = port_idx.map(|i| {
                let iface = serde_json::from_str::<Value>(text).ok().and_then(|v| {
                    v.get("port")?
                        .get(i)?
                        .get("iface")?
                        .as_str()
                        .map(str::to_string)
                });
                (i, iface)
            });
            // serde_json appends " at line L column C"; we print it ourselves.
            let mut message = e.to_string();
            if let Some(pos) = message.rfind(" at line ") {
                message.truncate(pos);
            }
            StateError {
                origin: origin.to_string(),
                line: (e.line() > 0).then_some(e.line()),
                column: (e.line() > 0).then_some(e.column()),
                port,
                field: None,
                message,
            }
        }),
    };
    CURRENT_PORT.with(|c| c.set(None));
    let raw = raw?;

    let located = Located {
        text,
        format,
        origin,
        toml: match format {
            Format::Toml => TomlLocator::new(text),
            Format::Json => None,
        },
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ports = Vec::with_capacity(raw.port.0.len());
    for (i, r) in raw.port.0.into_iter().enumerate() {
        if let Err(m) = valid_ifname(&r.iface) {
            return Err(located.error(i, &r.iface, Some("iface"), m));
        }
        if let Some(first) = seen.insert(r.iface.clone(), i) {
            let first_line = located
                .toml
                .as_ref()
                .and_then(|l| l.ports.get(first))
                .map(|p| format!(" (line {})", line_col(text, p.span.start).0))
                .unwrap_or_default();
            return Err(located.error(
                i,
                &r.iface,
                Some("iface"),
                format!(
                    "interface {:?} is already described by port[{first}]{first_line}",
                    r.iface
                ),
            ));
        }
        let mut b = Binding::new(r.mac, r.ips);
        b.tenant = r.tenant;
        b.mode = r.mode;
        b.broadcast = Limit::from_settings(r.broadcast_pps, r.broadcast_burst, DEFAULT_BROADCAST);
        b.multicast = Limit::from_settings(r.multicast_pps, r.multicast_burst, DEFAULT_MULTICAST);
        b.arp = Limit::from_settings(r.arp_pps, r.arp_burst, DEFAULT_ARP);
        b.allow_dhcp_server = r.allow_dhcp_server;
        b.ethertypes = r.allow_ethertype.into_iter().map(|e| e.0).collect();
        b.vlans = r.allow_vlan.into_iter().map(|v| v.0).collect();
        let binding = b.normalize().map_err(|e| {
            located.error(i, &r.iface, Some(binding_error_field(&e)), e.to_string())
        })?;
        let line = located
            .toml
            .as_ref()
            .and_then(|l| l.ports.get(i))
            .map(|p| line_col(text, p.span.start).0);
        ports.push(PortSpec {
            iface: r.iface,
            binding,
            attach: r.attach,
            line,
        });
    }
    Ok(State { ports })
}

/// Reads and parses a state file.
pub fn load(path: &Path) -> Result<State> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read state file {}", path.display()))?;
    let format = Format::detect(path, &text);
    Ok(parse(&text, format, &path.display().to_string())?)
}

// --------------------------------------------------------------------- diff

/// What happens to a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// In the file, no binding in the kernel yet.
    Add,
    /// In the file, bound or attached differently.
    Change,
    /// In the file and already exactly so: not touched.
    Unchanged,
    /// Not in the file; removed (unbound and detached) because of `--prune`.
    Remove,
    /// Not in the file and kept (no `--prune`).
    Unmanaged,
    /// In the file, but its interface does not exist: skipped.
    Missing,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Change => "change",
            Kind::Unchanged => "unchanged",
            Kind::Remove => "remove",
            Kind::Unmanaged => "unmanaged",
            Kind::Missing => "missing",
        }
    }
}

/// One changed scalar field: name, before, after (as displayed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

/// The plan for one port.
#[derive(Clone, Debug)]
pub struct PortPlan {
    pub iface: String,
    pub ifindex: u32,
    pub kind: Kind,
    pub before: Option<Binding>,
    /// The binding the file wants (None for Remove/Unmanaged).
    pub after: Option<Binding>,
    /// Fields other than the address list that differ (Change only).
    pub fields: Vec<FieldChange>,
    pub ips_added: Vec<IpNet>,
    pub ips_removed: Vec<IpNet>,
    /// The binding is written (Add, or Change with a binding difference).
    pub rebind: bool,
    /// The binding is removed (Remove).
    pub unbind: bool,
    pub was_attached: bool,
    /// The filter is attached to the interface.
    pub attach: bool,
    /// The filter is detached from the interface.
    pub detach: bool,
    /// A dead link (its interface was deleted and recreated) is pinned under
    /// this name: it is removed before attaching.
    pub stale_link: bool,
    /// The record's interface no longer exists (Remove).
    pub gone: bool,
    /// `detach` removes the link pinned under the port's name (it is this port's).
    pub remove_link: bool,
    /// Why a port is skipped (Missing).
    pub note: Option<String>,
}

impl PortPlan {
    pub fn is_noop(&self) -> bool {
        !(self.rebind || self.unbind || self.attach || self.detach || self.stale_link)
    }

    fn missing(spec: &PortSpec, why: String) -> PortPlan {
        PortPlan {
            iface: spec.iface.clone(),
            ifindex: 0,
            kind: Kind::Missing,
            before: None,
            after: Some(spec.binding.clone()),
            fields: Vec::new(),
            ips_added: Vec::new(),
            ips_removed: Vec::new(),
            rebind: false,
            unbind: false,
            was_attached: false,
            attach: false,
            detach: false,
            stale_link: false,
            gone: false,
            remove_link: false,
            note: Some(why),
        }
    }

    /// One line for humans, e.g. `~ vm1: mode enforce -> monitor; ips +192.0.2.12 -192.0.2.11`.
    pub fn describe(&self) -> String {
        let sign = match self.kind {
            Kind::Add => '+',
            Kind::Change => '~',
            Kind::Unchanged => '=',
            Kind::Remove => '-',
            Kind::Unmanaged => '?',
            Kind::Missing => '!',
        };
        let mut parts: Vec<String> = Vec::new();
        match self.kind {
            Kind::Add => {
                if let Some(b) = &self.after {
                    parts.push(format!("bind {}", summary(b)));
                }
            }
            Kind::Change => {
                for f in &self.fields {
                    parts.push(format!("{} {} -> {}", f.field, f.before, f.after));
                }
                if !self.ips_added.is_empty() || !self.ips_removed.is_empty() {
                    let mut s = String::from("ips");
                    for n in &self.ips_added {
                        s.push_str(&format!(" +{n}"));
                    }
                    for n in &self.ips_removed {
                        s.push_str(&format!(" -{n}"));
                    }
                    parts.push(s);
                }
            }
            Kind::Unchanged => parts.push("unchanged".into()),
            Kind::Remove => {
                if self.gone {
                    parts.push(format!(
                        "interface gone (ifindex {}): stale record removed",
                        self.ifindex
                    ));
                } else if self.before.is_some() {
                    parts.push("unbind".into());
                }
            }
            Kind::Unmanaged => parts.push("not in the file: kept (--prune would remove it)".into()),
            Kind::Missing => parts.push(format!(
                "skipped: {}",
                self.note.as_deref().unwrap_or("interface missing")
            )),
        }
        if self.stale_link {
            parts.push("severed link removed".into());
        }
        if self.attach {
            parts.push(if self.was_attached {
                "re-attach".into()
            } else {
                "attach".into()
            });
        }
        if self.detach && !self.gone {
            parts.push("detach".into());
        }
        format!("{sign} {}: {}", self.iface, parts.join("; "))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "iface": self.iface,
            "ifindex": self.ifindex,
            "action": self.kind.name(),
            "rebind": self.rebind,
            "unbind": self.unbind,
            "attach": self.attach,
            "detach": self.detach,
            "stale_link": self.stale_link,
            "interface_gone": self.gone,
            "note": self.note,
            "fields": self.fields.iter().map(|f| json!({
                "field": f.field, "before": f.before, "after": f.after,
            })).collect::<Vec<_>>(),
            "ips_added": self.ips_added.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "ips_removed": self.ips_removed.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "before": self.before.as_ref().map(binding_json),
            "after": self.after.as_ref().map(binding_json),
        })
    }
}

/// A binding as the state file spells it.
pub fn binding_json(b: &Binding) -> Value {
    json!({
        "mac": b.mac.to_string(),
        "ips": b.ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "tenant": b.tenant,
        "mode": b.mode.to_string(),
        "broadcast_pps": b.broadcast.pps,
        "broadcast_burst": b.broadcast.burst,
        "multicast_pps": b.multicast.pps,
        "multicast_burst": b.multicast.burst,
        "arp_pps": b.arp.pps,
        "arp_burst": b.arp.burst,
        "allow_dhcp_server": b.allow_dhcp_server,
        "allow_ethertype": b.ethertypes.iter().map(|e| format!("0x{e:04x}")).collect::<Vec<_>>(),
        "allow_vlan": b.vlans,
    })
}

fn summary(b: &Binding) -> String {
    let ips: Vec<String> = b.ips.iter().map(|n| n.to_string()).collect();
    let mut s = format!("mac {} ips [{}] mode {}", b.mac, ips.join(", "), b.mode);
    if !b.tenant.is_empty() {
        s.push_str(&format!(" tenant {}", b.tenant));
    }
    s
}

fn list<T: fmt::Display>(v: &[T]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn lim(l: &Limit) -> String {
    format!("{}/{}", l.pps, l.burst)
}

/// Field-by-field differences between two bindings (addresses separately).
pub fn diff_bindings(a: &Binding, b: &Binding) -> (Vec<FieldChange>, Vec<IpNet>, Vec<IpNet>) {
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
    } = a;
    let mut f = Vec::new();
    let mut push = |field: &'static str, before: String, after: String| {
        if before != after {
            f.push(FieldChange {
                field,
                before,
                after,
            });
        }
    };
    push("mac", mac.to_string(), b.mac.to_string());
    push("tenant", format!("{tenant:?}"), format!("{:?}", b.tenant));
    push("mode", mode.to_string(), b.mode.to_string());
    push("broadcast", lim(broadcast), lim(&b.broadcast));
    push("multicast", lim(multicast), lim(&b.multicast));
    push("arp", lim(arp), lim(&b.arp));
    push(
        "allow_dhcp_server",
        allow_dhcp_server.to_string(),
        b.allow_dhcp_server.to_string(),
    );
    let et = |v: &[u16]| {
        format!(
            "[{}]",
            v.iter()
                .map(|e| format!("0x{e:04x}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    push("allow_ethertype", et(ethertypes), et(&b.ethertypes));
    push("allow_vlan", list(vlans), list(&b.vlans));
    let old: BTreeSet<&IpNet> = ips.iter().collect();
    let new: BTreeSet<&IpNet> = b.ips.iter().collect();
    let added = new.difference(&old).map(|n| **n).collect();
    let removed = old.difference(&new).map(|n| **n).collect();
    (f, added, removed)
}

/// The whole plan: every port of the file, then the kernel's other ports.
#[derive(Clone, Debug)]
pub struct Plan {
    pub ports: Vec<PortPlan>,
}

impl Plan {
    pub fn count(&self, k: Kind) -> usize {
        self.ports.iter().filter(|p| p.kind == k).count()
    }

    pub fn is_noop(&self) -> bool {
        self.ports.iter().all(PortPlan::is_noop)
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} to add, {} to change, {} to remove, {} unchanged",
            self.count(Kind::Add),
            self.count(Kind::Change),
            self.count(Kind::Remove),
            self.count(Kind::Unchanged)
        );
        let u = self.count(Kind::Unmanaged);
        if u > 0 {
            s.push_str(&format!(", {u} not in the file (kept)"));
        }
        let m = self.count(Kind::Missing);
        if m > 0 {
            s.push_str(&format!(", {m} skipped (interface missing)"));
        }
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ports": self.ports.iter().map(PortPlan::to_json).collect::<Vec<_>>(),
            "add": self.count(Kind::Add),
            "change": self.count(Kind::Change),
            "remove": self.count(Kind::Remove),
            "unchanged": self.count(Kind::Unchanged),
            "unmanaged": self.count(Kind::Unmanaged),
            "missing": self.count(Kind::Missing),
        })
    }
}

/// How [`plan`] treats what is not in the file.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Unbind and detach ports that are not in the file.
    pub prune: bool,
    /// Skip ports whose interface does not exist (yet) instead of failing.
    pub skip_missing: bool,
}

/// What is pinned under `links/<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkPin {
    None,
    /// A live XDP link on this ifindex.
    Ours,
    /// A link whose interface is gone (severed) or another interface's: dead weight.
    Stale,
}

fn link_pin(links: &Path, name: &str, ifindex: u32) -> LinkPin {
    let path = links.join(name);
    if !path.exists() {
        return LinkPin::None;
    }
    match crate::attach::pinned_link_ifindex(&path) {
        Ok(i) if i == ifindex => LinkPin::Ours,
        Ok(_) => LinkPin::Stale,
        // Cannot tell (e.g. no permission): trust the pin.
        Err(_) => LinkPin::Ours,
    }
}

/// Diffs `state` against the pinned state under `p`. Fails (changing
/// nothing) when an interface of the file does not exist or is not Ethernet,
/// unless `skip_missing`.
pub fn plan(p: &Pinned, state: &State, o: PlanOptions) -> Result<Plan> {
    plan_against(&p.ports()?, &p.link_dir(), state, o)
}

/// [`plan`] against given port records (`links` is the pin dir's `links/`;
/// with no pinned state at all: `&[]` and a path that does not exist).
pub fn plan_against(
    current: &[PortInfo],
    links: &Path,
    state: &State,
    o: PlanOptions,
) -> Result<Plan> {
    let by_index: HashMap<u32, &PortInfo> = current.iter().map(|i| (i.ifindex, i)).collect();
    let mut wanted: BTreeSet<u32> = BTreeSet::new();
    let mut ports = Vec::new();
    let mut missing = Vec::new();
    for spec in &state.ports {
        let ifindex = match iface::ethernet_port(&spec.iface) {
            Ok(i) => i,
            Err(e) => {
                let why = format!(
                    "port {:?}{}: {e}",
                    spec.iface,
                    spec.line
                        .map(|l| format!(" (line {l})"))
                        .unwrap_or_default()
                );
                if o.skip_missing && matches!(e, iface::IfaceError::Unknown(_)) {
                    ports.push(PortPlan::missing(spec, why));
                } else {
                    missing.push(why);
                }
                continue;
            }
        };
        wanted.insert(ifindex);
        let info = by_index.get(&ifindex).copied();
        let before = info.and_then(|i| i.binding.clone());
        let pin = link_pin(links, &spec.iface, ifindex);
        let recorded = info.is_some_and(|i| i.attach_mode != 0);
        // Without its tc VLAN link (pinned by an older build) it needs a re-attach.
        let was_attached = recorded
            && pin == LinkPin::Ours
            && attach::tc_link_path_for(links, &spec.iface).exists();
        let after = spec.binding.clone();
        let renamed = info.is_some_and(|i| i.ifname != spec.iface);
        let (mut fields, added, removed, rebind) = match &before {
            None => (Vec::new(), after.ips.clone(), Vec::new(), true),
            Some(b) => {
                let (f, a, r) = diff_bindings(b, &after);
                let rebind = !f.is_empty() || !a.is_empty() || !r.is_empty() || renamed;
                (f, a, r, rebind)
            }
        };
        if renamed && before.is_some() {
            fields.push(FieldChange {
                field: "ifname",
                before: info.map(|i| i.ifname.clone()).unwrap_or_default(),
                after: spec.iface.clone(),
            });
        }
        let stale_link = pin == LinkPin::Stale;
        let attach = spec.attach && !was_attached;
        let detach = !spec.attach && (pin == LinkPin::Ours || recorded);
        let kind = if before.is_none() {
            Kind::Add
        } else if rebind || attach || detach || stale_link {
            Kind::Change
        } else {
            Kind::Unchanged
        };
        ports.push(PortPlan {
            iface: spec.iface.clone(),
            ifindex,
            kind,
            before,
            after: Some(after),
            fields,
            ips_added: added,
            ips_removed: removed,
            rebind,
            unbind: false,
            was_attached,
            attach,
            detach,
            stale_link,
            gone: false,
            remove_link: detach && pin == LinkPin::Ours,
            note: None,
        });
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "nothing changed: {} interface(s) of the state file cannot be used: {}",
            missing.len(),
            missing.join("; ")
        );
    }
    let file_names: BTreeSet<&str> = state.ports.iter().map(|s| s.iface.as_str()).collect();
    for info in current {
        if wanted.contains(&info.ifindex) {
            continue;
        }
        // A record whose interface no longer exists is garbage: always removed
        // (its ifindex could be reused by another VM's interface).
        let gone = iface::name(info.ifindex).is_none();
        let remove = o.prune || gone;
        let pin = link_pin(links, &info.ifname, info.ifindex);
        // A severed link under the name of a port of the file is that port's to clean.
        let own_pin = pin == LinkPin::Ours
            || (gone && pin == LinkPin::Stale && !file_names.contains(info.ifname.as_str()));
        ports.push(PortPlan {
            iface: info.ifname.clone(),
            ifindex: info.ifindex,
            kind: if remove {
                Kind::Remove
            } else {
                Kind::Unmanaged
            },
            before: info.binding.clone(),
            after: None,
            fields: Vec::new(),
            ips_added: Vec::new(),
            ips_removed: Vec::new(),
            rebind: false,
            unbind: remove,
            was_attached: info.attach_mode != 0 && pin == LinkPin::Ours,
            attach: false,
            detach: remove && (own_pin || info.attach_mode != 0),
            stale_link: false,
            gone,
            remove_link: remove && own_pin,
            note: None,
        });
    }
    Ok(Plan { ports })
}

// -------------------------------------------------------------------- apply

/// What happened to one port.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub plan: &'a PortPlan,
    /// The port record before and after (`show --json` shape; None = no record).
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub result: std::result::Result<(), String>,
}

impl Outcome<'_> {
    /// The audit-log entry of this change (`command` = "apply").
    pub fn audit_entry(&self) -> AuditEntry {
        let mut e = AuditEntry::new("apply", Some(&self.plan.iface));
        e.before = self.before.clone();
        e.after = self.after.clone();
        e.result = self.result.clone();
        e
    }
}

fn port_json(p: &Pinned, ifindex: u32) -> Option<Value> {
    p.port(ifindex)
        .ok()
        .flatten()
        .map(|i| report::show_json(&i))
}

/// Carries out `plan` port by port: a port's new binding is written first
/// (one atomic flip, [`Pinned::bind`]), then it is attached; removed ports
/// are unbound (fail closed while still attached) before they are detached.
/// Unchanged ports are not touched at all. A port that fails is reported and
/// the others still converge; the result is an error when any port failed.
/// `each` sees every port that changed (or failed to), right after it did.
pub fn apply(p: &mut Pinned, plan: &Plan, each: &mut dyn FnMut(&Outcome)) -> Result<usize> {
    let mut failed = Vec::new();
    let mut changed = 0;
    for pp in &plan.ports {
        if pp.is_noop() {
            continue;
        }
        let before = port_json(p, pp.ifindex);
        let result = apply_port(p, pp).map_err(|e| one_line(&e));
        if let Err(e) = &result {
            failed.push(format!("{}: {e}", pp.iface));
        } else {
            changed += 1;
        }
        let after = port_json(p, pp.ifindex);
        each(&Outcome {
            plan: pp,
            before,
            after,
            result,
        });
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} port change(s) failed: {}",
            failed.len(),
            failed.len() + changed,
            failed.join("; ")
        );
    }
    Ok(changed)
}

fn apply_port(p: &mut Pinned, pp: &PortPlan) -> Result<()> {
    let link = p.link_path(&pp.iface);
    let tc_link = attach::tc_link_path(p, &pp.iface);
    if pp.rebind {
        let b = pp.after.as_ref().expect("a rebind has a binding");
        p.bind(pp.ifindex, &pp.iface, b)
            .with_context(|| format!("binding {}", pp.iface))?;
    }
    if pp.stale_link {
        // The interface was recreated: its old links are severed; new ones are needed.
        remove_pin(&link)?;
        remove_pin(&tc_link)?;
    }
    if pp.attach {
        if let Err(e) = attach::attach(p, &pp.iface, RequestedMode::Auto) {
            // attach() records the port as attached before it tries; a bound
            // port that ends up without a link must not claim to be attached.
            if !pp.was_attached && !link.exists() {
                let _ = p.mark_detached(pp.ifindex);
            }
            return Err(e.context(format!("attaching {}", pp.iface)));
        }
    }
    if pp.unbind {
        // An attached port without binding drops everything until detached below.
        p.unbind(pp.ifindex)
            .with_context(|| format!("unbinding {}", pp.iface))?;
    }
    if pp.detach {
        // By ifindex, not by name: the name may belong to a new interface by now.
        if pp.remove_link {
            remove_pin(&link)?;
            remove_pin(&tc_link)?;
        }
        p.mark_detached(pp.ifindex)
            .with_context(|| format!("detaching {}", pp.iface))?;
    }
    Ok(())
}

fn remove_pin(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing link pin {}", path.display())),
    }
}

/// An exclusive lock on the pin directory, so that two `apply`s (or an
/// `apply` and the daemon) do not interleave. Released when dropped.
pub fn lock(pin_dir: &Path) -> Result<File> {
    let f = File::open(pin_dir)
        .with_context(|| format!("cannot open {} for locking", pin_dir.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", pin_dir.display()));
    }
    Ok(f)
}

/// Opens the pinned state under the [`lock`] (taken before the maps are
/// opened, so that two first-time `apply`s do not race to create them).
pub fn open_locked(pin_dir: &Path) -> Result<(Pinned, File)> {
    crate::bpffs::ensure(pin_dir)?;
    std::fs::create_dir_all(pin_dir)
        .with_context(|| format!("cannot create pin directory {}", pin_dir.display()))?;
    let l = lock(pin_dir)?;
    Ok((Pinned::open(pin_dir)?, l))
}

#[cfg(test)]
mod tests {
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
    fn empty_file_is_an_empty_state() {
        assert_eq!(parse("", Format::Toml, "x").unwrap().ports.len(), 0);
        assert_eq!(parse("{}", Format::Json, "x").unwrap().ports.len(), 0);
    }

    #[test]
    fn diff_names_fields_and_addresses() {
        let s = parse(GOOD, Format::Toml, "s.toml").unwrap();
        let a = s.ports[0].binding.clone();
        let mut b = a.clone();
        b.mode = Mode::Enforce;
        b.ips.retain(|n| n.to_string() != "192.0.2.11");
        b.ips.push("192.0.2.12".parse().unwrap());
        let (f, added, removed) = diff_bindings(&a, &b);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "mode");
        assert_eq!(added, vec!["192.0.2.12".parse().unwrap()]);
        assert_eq!(removed, vec!["192.0.2.11".parse().unwrap()]);
    }
}
