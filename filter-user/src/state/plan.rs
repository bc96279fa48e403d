//! [`State`] + the pinned port records -> [`Plan`]: per port, the ordered
//! [`Step`]s that make the kernel match. Nothing here changes the kernel.
use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    path::Path,
};

use anyhow::Result;
use serde_json::{json, Value};

use super::{Port, State};
use crate::{
    attach,
    binding::{Binding, Limit},
    iface,
    parse::IpNet,
    pinned::{Pinned, PortInfo},
    spec::PortSpec,
};

/// What happens to a port, as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// In the file, no binding in the kernel yet.
    Add,
    /// In the file, bound or attached differently.
    Change,
    /// In the file and already exactly so: not touched.
    Unchanged,
    /// Not in the file; removed (unbound and detached) because of `--prune`,
    /// or because its interface is gone.
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

    fn sign(self) -> char {
        match self {
            Kind::Add => '+',
            Kind::Change => '~',
            Kind::Unchanged => '=',
            Kind::Remove => '-',
            Kind::Unmanaged => '?',
            Kind::Missing => '!',
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

/// How a binding differs from the one in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Fields other than the address list (and `ifname` for a renamed port).
    pub fields: Vec<FieldChange>,
    pub ips_added: Vec<IpNet>,
    pub ips_removed: Vec<IpNet>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.ips_added.is_empty() && self.ips_removed.is_empty()
    }
}

/// One thing done to a port. A port's steps run in order; the order the
/// planner emits is the safe one (bind before attach: an attached port is
/// never without the binding it should have longer than needed; unbind
/// before detach: a port being removed fails closed while still attached).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the port's first binding.
    Bind(Binding),
    /// Replace the binding (one atomic flip); `changes` says what differs.
    Rebind { binding: Binding, changes: Changes },
    /// The interface was deleted and recreated: the links pinned under its
    /// name are severed; remove them so that new ones can be made.
    ReplaceSeveredLink,
    /// Attach the filter. `reattach`: the port was attached, but its tc VLAN
    /// link is missing (pinned by an older build), or `auto` chose an XDP
    /// mode on a veth then (it means tc now).
    Attach { reattach: bool },
    /// Remove the binding (an attached port then drops everything).
    Unbind,
    /// Detach the filter, removing the port's link pins when `remove_link`
    /// (they are this port's; by ifindex, never by name alone).
    Detach { remove_link: bool },
    /// The record's interface no longer exists: remove the binding and the
    /// record (its ifindex could be reused by another VM's interface);
    /// `detach` when it was attached, removing the dead link pins when
    /// `remove_link`.
    RemoveStale { detach: bool, remove_link: bool },
}

impl Step {
    /// The step's name in JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Bind(_) => "bind",
            Step::Rebind { .. } => "rebind",
            Step::ReplaceSeveredLink => "replace_severed_link",
            Step::Attach { .. } => "attach",
            Step::Unbind => "unbind",
            Step::Detach { .. } => "detach",
            Step::RemoveStale { .. } => "remove_stale",
        }
    }

    /// The step for humans (one or more `; `-separated parts).
    fn describe(&self, ifindex: u32, out: &mut Vec<String>) {
        match self {
            Step::Bind(b) => out.push(format!("bind {}", summary(b))),
            Step::Rebind { changes, .. } => {
                for f in &changes.fields {
                    out.push(format!("{} {} -> {}", f.field, f.before, f.after));
                }
                if !changes.ips_added.is_empty() || !changes.ips_removed.is_empty() {
                    let mut s = String::from("ips");
                    for n in &changes.ips_added {
                        s.push_str(&format!(" +{n}"));
                    }
                    for n in &changes.ips_removed {
                        s.push_str(&format!(" -{n}"));
                    }
                    out.push(s);
                }
            }
            Step::ReplaceSeveredLink => out.push("severed link removed".into()),
            Step::Attach { reattach: false } => out.push("attach".into()),
            Step::Attach { reattach: true } => out.push("re-attach".into()),
            Step::Unbind => out.push("unbind".into()),
            Step::Detach { .. } => out.push("detach".into()),
            Step::RemoveStale { .. } => out.push(format!(
                "interface gone (ifindex {ifindex}): stale record removed"
            )),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({ "step": self.name() });
        match self {
            Step::Attach { reattach } => v["reattach"] = json!(reattach),
            Step::Detach { remove_link } => v["remove_link"] = json!(remove_link),
            Step::RemoveStale {
                detach,
                remove_link,
            } => {
                v["detach"] = json!(detach);
                v["remove_link"] = json!(remove_link);
            }
            _ => {}
        }
        v
    }
}

/// The plan for one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    pub iface: String,
    /// 0 for a port whose interface is missing.
    pub ifindex: u32,
    pub kind: Kind,
    /// The port in the kernel (None: no binding).
    pub before: Option<PortSpec>,
    /// The port the state wants (None for Remove/Unmanaged).
    pub after: Option<PortSpec>,
    /// What is done, in order; empty for Unchanged/Unmanaged/Missing.
    pub steps: Vec<Step>,
    /// Why a port is skipped (Missing).
    pub note: Option<String>,
}

impl PortPlan {
    pub fn is_noop(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn has(&self, f: impl Fn(&Step) -> bool) -> bool {
        self.steps.iter().any(f)
    }

    /// The binding the plan writes, if it writes one.
    pub fn binding(&self) -> Option<&Binding> {
        self.steps.iter().find_map(|s| match s {
            Step::Bind(b) | Step::Rebind { binding: b, .. } => Some(b),
            _ => None,
        })
    }

    /// The binding's differences (a Rebind), if any.
    pub fn changes(&self) -> Option<&Changes> {
        self.steps.iter().find_map(|s| match s {
            Step::Rebind { changes, .. } => Some(changes),
            _ => None,
        })
    }

    fn missing(port: &Port, why: String) -> PortPlan {
        PortPlan {
            iface: port.iface.clone(),
            ifindex: 0,
            kind: Kind::Missing,
            before: None,
            after: Some(PortSpec::from_binding(&port.iface, &port.binding)),
            steps: Vec::new(),
            note: Some(why),
        }
    }

    /// One line for humans, e.g. `~ vm1: mode enforce -> monitor; ips +192.0.2.12 -192.0.2.11`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match self.kind {
            Kind::Unchanged => parts.push("unchanged".into()),
            Kind::Unmanaged => parts.push("not in the file: kept (--prune would remove it)".into()),
            Kind::Missing => parts.push(format!(
                "skipped: {}",
                self.note.as_deref().unwrap_or("interface missing")
            )),
            Kind::Add | Kind::Change | Kind::Remove => {}
        }
        for s in &self.steps {
            s.describe(self.ifindex, &mut parts);
        }
        format!("{} {}: {}", self.kind.sign(), self.iface, parts.join("; "))
    }

    /// The plan's JSON object: `steps` in order, and the same facts as flags
    /// (`rebind`, `unbind`, `attach`, `detach`, `stale_link`, `interface_gone`).
    pub fn to_json(&self) -> Value {
        let (fields, added, removed) = match (self.changes(), &self.steps[..]) {
            (Some(c), _) => (c.fields.as_slice(), &c.ips_added[..], &c.ips_removed[..]),
            // A first binding adds every address.
            (None, [Step::Bind(b), ..]) => (&[][..], &b.ips[..], &[][..]),
            _ => (&[][..], &[][..], &[][..]),
        };
        let strings = |v: &[IpNet]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        json!({
            "iface": self.iface,
            "ifindex": self.ifindex,
            "action": self.kind.name(),
            "steps": self.steps.iter().map(Step::to_json).collect::<Vec<_>>(),
            "rebind": self.binding().is_some(),
            "unbind": self.has(|s| matches!(s, Step::Unbind | Step::RemoveStale { .. })),
            "attach": self.has(|s| matches!(s, Step::Attach { .. })),
            "detach": self.has(|s| matches!(s, Step::Detach { .. } | Step::RemoveStale { detach: true, .. })),
            "stale_link": self.has(|s| matches!(s, Step::ReplaceSeveredLink)),
            "interface_gone": self.has(|s| matches!(s, Step::RemoveStale { .. })),
            "note": self.note,
            "fields": fields.iter().map(|f| json!({
                "field": f.field, "before": f.before, "after": f.after,
            })).collect::<Vec<_>>(),
            "ips_added": strings(added),
            "ips_removed": strings(removed),
            "before": self.before.as_ref().map(PortSpec::to_json),
            "after": self.after.as_ref().map(PortSpec::to_json),
        })
    }
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
pub fn diff_bindings(a: &Binding, b: &Binding) -> Changes {
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
    let mut fields = Vec::new();
    let mut push = |field: &'static str, before: String, after: String| {
        if before != after {
            fields.push(FieldChange {
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
    let et = |v: &[u16]| list(&v.iter().map(|e| format!("0x{e:04x}")).collect::<Vec<_>>());
    push("allow_ethertype", et(ethertypes), et(&b.ethertypes));
    push("allow_vlan", list(vlans), list(&b.vlans));
    let old: BTreeSet<&IpNet> = ips.iter().collect();
    let new: BTreeSet<&IpNet> = b.ips.iter().collect();
    Changes {
        fields,
        ips_added: new.difference(&old).map(|n| **n).collect(),
        ips_removed: old.difference(&new).map(|n| **n).collect(),
    }
}

/// The whole plan: every port of the state, then the kernel's other ports.
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

/// How [`plan`] treats what is not in the state.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Unbind and detach ports that are not in the state.
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
    /// A link whose interface is gone (severed): dead weight.
    Stale,
    /// The live link of another interface, renamed away from this name:
    /// never removed here (that would unfilter it); `attach` moves its pins.
    Other,
}

fn link_pin(links: &Path, name: &str, ifindex: u32) -> LinkPin {
    let path = links.join(name);
    if !path.exists() {
        return LinkPin::None;
    }
    match attach::pinned_link_ifindex(&path) {
        Ok(i) if i == ifindex => LinkPin::Ours,
        Ok(i) if i != 0 && iface::name(i).is_some() => LinkPin::Other,
        Ok(_) => LinkPin::Stale,
        // Cannot tell (e.g. no permission): trust the pin.
        Err(_) => LinkPin::Ours,
    }
}

/// Diffs `state` against the pinned state under `p`. Fails (changing
/// nothing) when an interface of the state does not exist or is not
/// Ethernet, unless `skip_missing`.
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
    plan_resolved(current, links, state, o, &iface::ethernet_port)
}

/// [`plan_against`] with the interfaces of the state resolved by `resolve`
/// (name -> ifindex of an Ethernet interface, [`iface::ethernet_port`]'s
/// contract), e.g. from a link dump just taken instead of three ioctls per port.
pub fn plan_resolved(
    current: &[PortInfo],
    links: &Path,
    state: &State,
    o: PlanOptions,
    resolve: &dyn Fn(&str) -> Result<u32, iface::IfaceError>,
) -> Result<Plan> {
    let by_index: HashMap<u32, &PortInfo> = current.iter().map(|i| (i.ifindex, i)).collect();
    let mut wanted: BTreeSet<u32> = BTreeSet::new();
    let mut ports = Vec::new();
    let mut missing = Vec::new();
    for port in &state.ports {
        let ifindex = match resolve(&port.iface) {
            Ok(i) => i,
            Err(e) => {
                let why = format!(
                    "port {:?}{}: {e}",
                    port.iface,
                    port.line
                        .map(|l| format!(" (line {l})"))
                        .unwrap_or_default()
                );
                if o.skip_missing && matches!(e, iface::IfaceError::Unknown(_)) {
                    ports.push(PortPlan::missing(port, why));
                } else {
                    missing.push(why);
                }
                continue;
            }
        };
        wanted.insert(ifindex);
        ports.push(plan_port(
            by_index.get(&ifindex).copied(),
            links,
            port,
            ifindex,
        ));
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "nothing changed: {} interface(s) of the state file cannot be used: {}",
            missing.len(),
            missing.join("; ")
        );
    }
    let names: BTreeSet<&str> = state.ports.iter().map(|s| s.iface.as_str()).collect();
    for info in current {
        if !wanted.contains(&info.ifindex) {
            ports.push(plan_leftover(
                info,
                links,
                o.prune,
                names.contains(info.ifname.as_str()),
            ));
        }
    }
    Ok(Plan { ports })
}

/// The steps that make the port of interface `ifindex` equal `port`, given
/// its record (`current`, None: no record) and the pin dir's `links/`.
pub fn plan_port(current: Option<&PortInfo>, links: &Path, port: &Port, ifindex: u32) -> PortPlan {
    let pin = link_pin(links, &port.iface, ifindex);
    let recorded = current.is_some_and(|i| i.attach_mode != 0);
    // In XDP mode, without its tc VLAN link (pinned by an older build) it
    // needs a re-attach; tc mode has no VLAN link.
    let tc_mode = current.is_some_and(|i| i.attach_mode == filter_common::ATTACH_TC);
    // A veth that an older portguard's `auto` put in an XDP mode: `auto`
    // now means tc there, and a re-attach moves it without a gap.
    let auto_moved = current
        .is_some_and(|i| i.attach_reason == attach::AttachReason::AutoVeth as u8 && !tc_mode);
    let was_attached = recorded
        && pin == LinkPin::Ours
        && !auto_moved
        && (tc_mode || attach::tc_link_path_for(links, &port.iface).exists());
    let before = current.and_then(|i| i.binding.as_ref().map(|b| (i.ifname.as_str(), b)));
    let mut steps = Vec::new();
    match before {
        None => steps.push(Step::Bind(port.binding.clone())),
        Some((old_name, b)) => {
            let mut changes = diff_bindings(b, &port.binding);
            if old_name != port.iface {
                changes.fields.push(FieldChange {
                    field: "ifname",
                    before: old_name.to_string(),
                    after: port.iface.clone(),
                });
            }
            if !changes.is_empty() {
                steps.push(Step::Rebind {
                    binding: port.binding.clone(),
                    changes,
                });
            }
        }
    }
    if pin == LinkPin::Stale {
        steps.push(Step::ReplaceSeveredLink);
    }
    if port.attach && !was_attached {
        steps.push(Step::Attach {
            reattach: recorded && pin == LinkPin::Ours,
        });
    }
    if !port.attach && (pin == LinkPin::Ours || recorded) {
        steps.push(Step::Detach {
            remove_link: pin == LinkPin::Ours,
        });
    }
    let kind = if before.is_none() {
        Kind::Add
    } else if steps.is_empty() {
        Kind::Unchanged
    } else {
        Kind::Change
    };
    PortPlan {
        iface: port.iface.clone(),
        ifindex,
        kind,
        before: before.map(|(name, b)| PortSpec::from_binding(name, b)),
        after: Some(PortSpec::from_binding(&port.iface, &port.binding)),
        steps,
        note: None,
    }
}

/// The plan for a record the state does not name: kept (Unmanaged) unless
/// `remove`; a record whose interface no longer exists is always removed.
/// `name_wanted`: a port of the state has the record's interface name (a
/// severed link under that name is then that port's to replace).
pub fn plan_leftover(info: &PortInfo, links: &Path, remove: bool, name_wanted: bool) -> PortPlan {
    let gone = iface::name(info.ifindex).is_none();
    let remove = remove || gone;
    let pin = link_pin(links, &info.ifname, info.ifindex);
    let own_pin = pin == LinkPin::Ours || (gone && pin == LinkPin::Stale && !name_wanted);
    let detach = own_pin || info.attach_mode != 0;
    let steps = match (remove, gone) {
        (false, _) => Vec::new(),
        (true, true) => vec![Step::RemoveStale {
            detach,
            remove_link: own_pin,
        }],
        (true, false) => {
            let mut s = Vec::new();
            // A record without binding (attached only) has nothing to unbind.
            if info.binding.is_some() {
                s.push(Step::Unbind);
            }
            if detach {
                s.push(Step::Detach {
                    remove_link: own_pin,
                });
            }
            s
        }
    };
    PortPlan {
        iface: info.ifname.clone(),
        ifindex: info.ifindex,
        kind: if remove {
            Kind::Remove
        } else {
            Kind::Unmanaged
        },
        before: info
            .binding
            .as_ref()
            .map(|b| PortSpec::from_binding(&info.ifname, b)),
        after: None,
        steps,
        note: None,
    }
}

/// The plan for one port alone (e.g. one key of an agent's store changed):
/// fails when its interface does not exist or is not Ethernet.
pub fn plan_one(p: &Pinned, port: &Port) -> Result<PortPlan> {
    let ifindex = iface::ethernet_port(&port.iface)?;
    let current = p.port(ifindex)?;
    Ok(plan_port(current.as_ref(), &p.link_dir(), port, ifindex))
}

/// The plan that unbinds and detaches the port of `ifindex` (e.g. its key
/// was deleted); None when it has no record.
pub fn plan_removal(p: &Pinned, ifindex: u32) -> Result<Option<PortPlan>> {
    Ok(p.port(ifindex)?
        .map(|info| plan_leftover(&info, &p.link_dir(), true, false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{binding::Mode, parse::Mac};

    fn info(ifindex: u32, name: &str, binding: Option<Binding>) -> PortInfo {
        PortInfo {
            ifindex,
            ifname: name.into(),
            tenant: String::new(),
            attach_mode: 0,
            attach_reason: 0,
            slot: 1,
            generation: 1,
            binding,
            guarded: false,
        }
    }

    fn binding() -> Binding {
        let mut b = Binding::new(
            Mac::parse_unicast("02:00:00:00:00:01").unwrap(),
            vec!["192.0.2.11".parse().unwrap()],
        );
        b.mode = Mode::Monitor;
        b.normalize().unwrap()
    }

    #[test]
    fn diff_names_fields_and_addresses() {
        let a = binding();
        let mut b = a.clone();
        b.mode = Mode::Enforce;
        b.ips.retain(|n| n.to_string() != "192.0.2.11");
        b.ips.push("192.0.2.12".parse().unwrap());
        let c = diff_bindings(&a, &b);
        assert_eq!(c.fields.len(), 1);
        assert_eq!(c.fields[0].field, "mode");
        assert_eq!(c.ips_added, vec!["192.0.2.12".parse().unwrap()]);
        assert_eq!(c.ips_removed, vec!["192.0.2.11".parse().unwrap()]);
    }

    #[test]
    fn steps_are_ordered_and_described_from_the_list() {
        let none = Path::new("/nonexistent/links");
        let port = Port {
            iface: "vm1".into(),
            binding: binding(),
            attach: true,
            line: None,
        };
        // No record: bind, then attach.
        let pp = plan_port(None, none, &port, 7);
        assert_eq!(pp.kind, Kind::Add);
        assert_eq!(
            pp.steps,
            vec![
                Step::Bind(port.binding.clone()),
                Step::Attach { reattach: false }
            ]
        );
        assert_eq!(
            pp.describe(),
            "+ vm1: bind mac 02:00:00:00:00:01 ips [192.0.2.11] mode monitor; attach"
        );
        let j = pp.to_json();
        assert_eq!(j["rebind"], true);
        assert_eq!(j["attach"], true);
        assert_eq!(j["ips_added"], json!(["192.0.2.11"]));
        assert_eq!(j["steps"][0]["step"], "bind");
        assert_eq!(j["after"]["mode"], "monitor");

        // A renamed, rebound port that is no longer to be attached.
        let mut old = binding();
        old.mode = Mode::Enforce;
        let mut rec = info(7, "old1", Some(old));
        rec.attach_mode = 1;
        let port = Port {
            attach: false,
            ..port
        };
        let pp = plan_port(Some(&rec), none, &port, 7);
        assert_eq!(pp.kind, Kind::Change);
        assert!(matches!(pp.steps[0], Step::Rebind { .. }));
        assert_eq!(pp.steps[1], Step::Detach { remove_link: false });
        assert_eq!(
            pp.describe(),
            "~ vm1: mode enforce -> monitor; ifname old1 -> vm1; detach"
        );
        assert_eq!(pp.before.as_ref().unwrap().iface, "old1");

        // Already so: nothing to do.
        let rec = info(7, "vm1", Some(binding()));
        let pp = plan_port(Some(&rec), none, &port, 7);
        assert_eq!((pp.kind, pp.is_noop()), (Kind::Unchanged, true));
        assert_eq!(pp.describe(), "= vm1: unchanged");
    }

    #[test]
    fn leftovers_are_kept_or_removed() {
        let none = Path::new("/nonexistent/links");
        // ifindex 1 (lo) exists in every namespace.
        let rec = info(1, "lo", Some(binding()));
        let kept = plan_leftover(&rec, none, false, false);
        assert_eq!((kept.kind, kept.is_noop()), (Kind::Unmanaged, true));
        let gone = plan_leftover(&rec, none, true, false);
        assert_eq!(gone.steps, vec![Step::Unbind]);
        assert_eq!(gone.describe(), "- lo: unbind");
        // An ifindex no interface has.
        let rec = info(0x7fff_fff0, "vm9", Some(binding()));
        let stale = plan_leftover(&rec, none, false, false);
        assert_eq!(stale.kind, Kind::Remove);
        assert_eq!(
            stale.steps,
            vec![Step::RemoveStale {
                detach: false,
                remove_link: false
            }]
        );
        assert_eq!(stale.to_json()["interface_gone"], true);
        assert_eq!(stale.to_json()["detach"], false);
    }
}
