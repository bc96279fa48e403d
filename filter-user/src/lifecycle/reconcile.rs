//! Desired state -> kernel, as interfaces come and go.
//!
//! A [`Reconciler`] holds the desired ports (by interface name) and the
//! `[[guard]]` patterns, and keeps the pinned state equal to them:
//!
//! * a link event ([`Reconciler::on_event`]) converges only the interface it
//!   names: a desired port that appears is bound, then attached (bind may
//!   precede attach, so the first frame the program sees is judged by the
//!   binding); a guarded interface is attached fail-closed (`unbound_port`);
//!   a deleted one loses its stale record and dead link pins; a renamed one
//!   takes its link pins along (and, if the binding was another name's,
//!   loses it: fail closed);
//! * [`Reconciler::resync`] (start, overrun, a slow safety-net timer)
//!   re-reads every link and converges everything through the state planner;
//! * the desired state changes as a whole ([`Reconciler::set_desired`], the
//!   daemon's file) or port by port ([`Reconciler::upsert_port`],
//!   [`Reconciler::remove_port`], e.g. from a fleet agent).
//!
//! It is synchronous: the caller feeds it events from [`super::netlink`] and
//! desired-state changes from wherever they come, one at a time. Every
//! change is logged through the caller's `log` and written to the audit log.
use std::{
    collections::{BTreeMap, HashMap},
    fs::{self, File},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use filter_common::flags;

use super::{
    guard::{self, Guard},
    netlink::{self, Link, LinkEvent},
};
use crate::{
    attach::{self, RequestedMode},
    audit::{AuditBatch, AuditEntry, AuditLog},
    binding::{attach_mode_name, str_from_fixed},
    bpffs,
    error::one_line,
    iface,
    pinned::Pinned,
    report::port_json,
    state::{self, Kind, Plan, PlanOptions, Port, State, Step},
};

/// How a [`Reconciler`] treats what is not desired, and where it writes.
#[derive(Clone, Debug)]
pub struct Options {
    pub pin_dir: PathBuf,
    pub audit_log: PathBuf,
    /// Ports that are not desired are unbound and detached (a guarded
    /// interface is only unbound: it stays attached, fail closed).
    pub prune: bool,
    /// `command` of the audit entries it writes (e.g. "apply", "agent").
    pub audit_command: String,
    /// Capacity of the maps if it creates them (`--max-ports`).
    pub max_ports: Option<u32>,
}

/// Where a desired port stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortStatus {
    /// Its interface does not exist (yet): converged when it appears.
    Pending,
    /// Bound on `ifindex`; `attach_mode` is `native`/`generic`, or None for
    /// a port whose spec says `attach = false`.
    Enforced {
        ifindex: u32,
        attach_mode: Option<&'static str>,
    },
    /// The last attempt failed (retried on the next event for it, or resync).
    Error(String),
}

type LogFn = Box<dyn FnMut(&str) + Send>;

pub struct Reconciler {
    o: Options,
    desired: BTreeMap<String, Port>,
    guards: Vec<Guard>,
    /// The kernel's links as last seen (ifindex -> link).
    links: BTreeMap<u32, Link>,
    status: BTreeMap<String, PortStatus>,
    /// Kept open: the program is verified once, not per attach. Reopened
    /// when the pinned maps are recreated (identity: the PORTS inode).
    pinned: Option<(u64, Pinned)>,
    /// The pinned state being opened with its programs verified ([`Reconciler::warm_up`]).
    warming: Option<std::sync::mpsc::Receiver<Result<(u64, Pinned)>>>,
    audit: AuditLog,
    log: LogFn,
}

/// Inode of the pinned PORTS map (None before the maps exist).
fn maps_ino(pin_dir: &Path) -> Option<u64> {
    fs::metadata(pin_dir.join("maps").join("PORTS"))
        .ok()
        .map(|m| m.ino())
}

impl Reconciler {
    /// Nothing desired yet; nothing touched until the first call.
    pub fn new(o: Options, log: impl FnMut(&str) + Send + 'static) -> Reconciler {
        Reconciler {
            audit: AuditLog::new(&o.audit_log),
            o,
            desired: BTreeMap::new(),
            guards: Vec::new(),
            links: BTreeMap::new(),
            status: BTreeMap::new(),
            pinned: None,
            warming: None,
            log: Box::new(log),
        }
    }

    // ------------------------------------------------------------ desired state

    /// Replaces the whole desired state (ports and guards) and converges
    /// everything (a resync). Returns the plan's summary; an error when a
    /// port failed (the others still converged).
    pub fn set_desired(&mut self, st: State) -> Result<String> {
        self.desired = st.ports.into_iter().map(|p| (p.iface.clone(), p)).collect();
        self.guards = st.guards;
        let desired = &self.desired;
        self.status.retain(|k, _| desired.contains_key(k));
        self.resync()
    }

    /// Adds or changes one desired port and converges it (validate a
    /// [`PortSpec`](crate::spec::PortSpec) with [`Port::from_spec`]).
    pub fn upsert_port(&mut self, spec: Port) -> Result<()> {
        let name = spec.iface.clone();
        self.desired.insert(name.clone(), spec);
        self.with(|r, p| r.converge(p, &name))
    }

    /// Removes one desired port. Its interface, if present, is unbound and
    /// detached with `prune`, only unbound (kept attached, fail closed) when
    /// a guard matches it, else left as it is (like `apply` without `--prune`).
    pub fn remove_port(&mut self, name: &str) -> Result<()> {
        self.desired.remove(name);
        self.status.remove(name);
        let Ok(ifindex) = iface::index(name) else {
            return Ok(());
        };
        let guarded = guard::matching(&self.guards, name).is_some();
        if !guarded && !self.o.prune {
            self.say(format!(
                "? {name}: no longer desired: kept as it is (prune would remove it)"
            ));
            return Ok(());
        }
        self.with(|r, p| {
            let before = port_json(p, ifindex);
            let res = (|| -> Result<()> {
                p.unbind(ifindex)?;
                if !guarded {
                    remove_live_pins(p, name, ifindex)?;
                    p.mark_detached(ifindex)?;
                }
                Ok(())
            })();
            let after = port_json(p, ifindex);
            r.record(name, before, after, &res);
            res?;
            if guarded {
                r.say(format!(
                    "- {name}: no longer desired: unbound (guarded: stays attached, fail closed)"
                ));
                r.guard_attach(p, ifindex, name)
            } else {
                r.say(format!("- {name}: no longer desired: unbound and detached"));
                Ok(())
            }
        })
    }

    /// The guard patterns in force.
    pub fn guards(&self) -> &[Guard] {
        &self.guards
    }

    // ---------------------------------------------------------------- queries

    /// Every desired port and where it stands, by name.
    pub fn ports(&self) -> Vec<(String, PortStatus)> {
        self.desired
            .keys()
            .map(|n| {
                (
                    n.clone(),
                    self.status.get(n).cloned().unwrap_or(PortStatus::Pending),
                )
            })
            .collect()
    }

    pub fn status(&self, name: &str) -> Option<PortStatus> {
        self.desired.contains_key(name).then(|| {
            self.status
                .get(name)
                .cloned()
                .unwrap_or(PortStatus::Pending)
        })
    }

    /// Desired ports whose interface is absent.
    pub fn pending(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .filter(|(_, s)| *s == PortStatus::Pending)
            .map(|(n, _)| n)
            .collect()
    }

    /// Desired ports that are bound (and attached, unless their spec says not):
    /// (name, ifindex, attach mode).
    pub fn enforced(&self) -> Vec<(String, u32, Option<&'static str>)> {
        self.ports()
            .into_iter()
            .filter_map(|(n, s)| match s {
                PortStatus::Enforced {
                    ifindex,
                    attach_mode,
                } => Some((n, ifindex, attach_mode)),
                _ => None,
            })
            .collect()
    }

    /// Desired ports whose last convergence failed, with the error.
    pub fn errors(&self) -> Vec<(String, String)> {
        self.ports()
            .into_iter()
            .filter_map(|(n, s)| match s {
                PortStatus::Error(e) => Some((n, e)),
                _ => None,
            })
            .collect()
    }

    // ------------------------------------------------------------ link events

    /// One link event: converges the interface it concerns.
    pub fn on_event(&mut self, ev: &LinkEvent) -> Result<()> {
        match ev {
            LinkEvent::New(l) => {
                let old = self.links.insert(l.ifindex, l.clone());
                let renamed_from = old
                    .as_ref()
                    .filter(|o| o.name != l.name)
                    .map(|o| o.name.clone());
                if renamed_from.is_none() {
                    if !self.concerns(&l.name) {
                        return Ok(());
                    }
                    // A flag change (up, down, master) of a port already enforced on it.
                    let settled = matches!(self.status.get(&l.name),
                        Some(PortStatus::Enforced { ifindex, .. }) if *ifindex == l.ifindex);
                    if old.is_some() && settled {
                        return Ok(());
                    }
                }
                let name = l.name.clone();
                let ifindex = l.ifindex;
                self.with(|r, p| {
                    if let Some(from) = renamed_from {
                        r.follow_rename(p, ifindex, &from, &name)?;
                    }
                    r.converge(p, &name)
                })
            }
            LinkEvent::Del(l) => {
                self.links.remove(&l.ifindex);
                let l = l.clone();
                self.with(|r, p| r.gone(p, &l))
            }
        }
    }

    /// Re-reads every link (RTM_GETLINK dump) and converges everything:
    /// at start, after lost events, and now and then as a safety net.
    pub fn resync(&mut self) -> Result<String> {
        let links = netlink::dump()?;
        self.links = links.into_iter().map(|l| (l.ifindex, l)).collect();
        self.with(|r, p| r.full(p))
    }

    /// Opens the pinned state now, creating the pin directory and maps on
    /// first use (under the pin-dir lock, as every change).
    /// Returns the ports the pin dir can hold (its capacity less the
    /// reserved slot).
    pub fn open(&mut self) -> Result<u32> {
        self.with(|_, p| Ok(p.port_capacity()))
    }

    /// Loads (verifies) the programs on a thread of their own, so that
    /// neither a convergence that attaches nothing (a sync or relist of
    /// bound ports) nor, mostly, the first interface to attach waits for the
    /// verifier (~0.1-0.8 s here): a pinned state opened for it comes back
    /// with its programs loaded; an attach meanwhile waits for it rather
    /// than verifying a second time. A failure shows again at attach time.
    pub fn warm_up(&mut self) {
        if self.warming.is_some() {
            return;
        }
        // Opened here: parsing the object in the thread would leave its
        // garbage in that thread's own heap arena (~20 MB more resident).
        let (dir, max_ports) = (self.o.pin_dir.clone(), self.o.max_ports);
        let opened = (|| -> Result<(u64, Pinned)> {
            bpffs::ensure(&dir)?;
            let _lock: File = state::lock(&dir)?;
            Ok((
                maps_ino(&dir).unwrap_or(0),
                Pinned::open_sized(&dir, max_ports)?,
            ))
        })();
        let (ino, mut p) = match opened {
            Ok(v) => v,
            Err(e) => {
                let m = format!("warning: opening the pinned state: {}", one_line(&e));
                self.say(m);
                return;
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = p
                .program()
                .map(|_| ())
                .and_then(|()| p.vlan_program().map(|_| ()))
                .and_then(|()| p.skb_program().map(|_| ()));
            let _ = tx.send(r.map(|()| (ino, p)));
        });
        self.warming = Some(rx);
    }

    /// Takes the pinned state [`Reconciler::warm_up`] prepared: when ready,
    /// or (`wait`) once it is.
    fn take_warmed(&mut self, wait: bool) -> Option<(u64, Pinned)> {
        use std::sync::mpsc::TryRecvError;
        let rx = self.warming.as_ref()?;
        let r = match (wait, rx.try_recv()) {
            (false, Err(TryRecvError::Empty)) => return None,
            (true, Err(TryRecvError::Empty)) => rx.recv().ok(),
            (_, r) => r.ok(),
        };
        self.warming = None;
        match r? {
            Ok(warm) => Some(warm),
            Err(e) => {
                let m = format!("warning: verifying the programs: {}", one_line(&e));
                self.say(m);
                None
            }
        }
    }

    /// Before an attach: the programs [`Reconciler::warm_up`] is verifying
    /// replace `p` (same maps) rather than being verified again.
    fn wait_warm(&mut self, p: &mut Pinned) {
        if let Some((ino, warm)) = self.take_warmed(true) {
            if Some(ino) == maps_ino(&self.o.pin_dir) {
                *p = warm;
            }
        }
    }

    // -------------------------------------------------------------- internals

    fn say(&mut self, msg: impl AsRef<str>) {
        (self.log)(msg.as_ref());
    }

    /// A desired port or a guarded interface.
    fn concerns(&self, name: &str) -> bool {
        self.desired.contains_key(name) || guard::matching(&self.guards, name).is_some()
    }

    /// Runs `f` with the pinned state open, under the pin dir's lock (the
    /// one `apply` takes), reopening it if its maps were recreated.
    fn with<T>(&mut self, f: impl FnOnce(&mut Self, &mut Pinned) -> Result<T>) -> Result<T> {
        let (dir, max_ports) = (self.o.pin_dir.clone(), self.o.max_ports);
        bpffs::ensure(&dir)?;
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create pin directory {}", dir.display()))?;
        let _lock: File = state::lock(&dir)?;
        if let Some(warm) = self.take_warmed(false) {
            self.pinned = Some(warm);
        }
        let ino = maps_ino(&dir);
        let (ino, mut p) = match self.pinned.take() {
            Some((i, p)) if Some(i) == ino => (i, p),
            // Not verified here: an attach loads the programs on first use,
            // [`Reconciler::warm_up`] ahead of that.
            _ => (
                maps_ino(&dir).unwrap_or(0),
                Pinned::open_sized(&dir, max_ports)?,
            ),
        };
        let r = f(self, &mut p);
        self.pinned = Some((ino, p));
        r
    }

    fn record(
        &mut self,
        name: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
        res: &Result<()>,
    ) {
        let mut e = AuditEntry::new(&self.o.audit_command, Some(name));
        e.before = before;
        e.after = after;
        e.result = res.as_ref().map(|_| ()).map_err(one_line);
        if let Err(err) = self.audit.record(&e) {
            let m = format!("warning: audit log: {}", one_line(&err));
            self.say(m);
        }
    }

    /// Carries out a plan, logging and auditing each port and noting the
    /// outcome of desired ports in their status.
    fn run_plan(&mut self, p: &mut Pinned, plan: &Plan) -> Result<()> {
        // A pending port is reported once, not at every resync.
        for pp in plan.ports.iter().filter(|pp| pp.kind == Kind::Missing) {
            if self.status.get(&pp.iface) != Some(&PortStatus::Pending) {
                (self.log)(&pp.describe());
            }
        }
        if plan
            .ports
            .iter()
            .any(|pp| pp.has(|s| matches!(s, Step::Attach { .. })))
        {
            self.wait_warm(p);
        }
        let mut failed: Vec<(String, String)> = Vec::new();
        // One audit write (and fsync) for the whole plan, after it ran.
        let mut batch = AuditBatch::default();
        let mut unrecorded = 0;
        let (log, cmd) = (&mut self.log, &self.o.audit_command);
        let r = state::apply(p, plan, &mut |out| {
            match &out.result {
                Ok(()) => log(&out.plan.describe()),
                Err(e) => {
                    log(&format!("{} FAILED: {e}", out.plan.describe()));
                    failed.push((out.plan.iface.clone(), e.clone()));
                }
            }
            let pushed = batch.push_parts(
                cmd,
                Some(&out.plan.iface),
                out.before.as_ref(),
                out.after.as_ref(),
                &out.result,
            );
            if pushed.is_err() {
                unrecorded += 1;
            }
        });
        let audited = self.audit.write(&batch);
        for pp in &plan.ports {
            if self.desired.contains_key(&pp.iface) {
                self.refresh_status(p, &pp.iface, Some(pp.ifindex).filter(|i| *i != 0));
            }
        }
        for (name, e) in failed {
            if self.desired.contains_key(&name) {
                self.status.insert(name, PortStatus::Error(e));
            }
        }
        r?;
        let unrecorded = match audited {
            Ok(()) => unrecorded,
            Err(e) => {
                let m = format!("warning: audit log: {}", one_line(&e));
                self.say(m);
                unrecorded + batch.len()
            }
        };
        if unrecorded > 0 {
            bail!(
                "applied, but {unrecorded} change(s) could not be written to the audit log {}",
                self.o.audit_log.display()
            );
        }
        Ok(())
    }

    /// Reads back where desired port `name` stands; `ifindex`: its
    /// interface's when the caller just resolved it (None: looked up).
    fn refresh_status(&mut self, p: &Pinned, name: &str, ifindex: Option<u32>) {
        let Some(spec) = self.desired.get(name) else {
            return;
        };
        let s = match ifindex.map_or_else(|| iface::index(name), Ok) {
            Err(_) => PortStatus::Pending,
            Ok(ifindex) => match p.config(ifindex) {
                Ok(Some(c)) if c.flags & flags::BOUND != 0 => {
                    let live =
                        || attach::pinned_link_ifindex(&p.link_path(name)).ok() == Some(ifindex);
                    match (spec.attach, spec.attach && c.attach_mode != 0 && live()) {
                        (true, true) => PortStatus::Enforced {
                            ifindex,
                            attach_mode: attach_mode_name(c.attach_mode),
                        },
                        (false, _) => PortStatus::Enforced {
                            ifindex,
                            attach_mode: None,
                        },
                        (true, false) => PortStatus::Error(format!(
                            "bound on ifindex {ifindex} but not attached"
                        )),
                    }
                }
                Ok(_) => PortStatus::Error(format!("no binding on ifindex {ifindex}")),
                Err(e) => PortStatus::Error(one_line(&e)),
            },
        };
        self.status.insert(name.to_string(), s);
    }

    /// Converges one interface name: a desired port through the planner
    /// (binding first, then attach), a guarded one by a fail-closed attach.
    fn converge(&mut self, p: &mut Pinned, name: &str) -> Result<()> {
        let Ok(ifindex) = iface::index(name) else {
            if self.desired.contains_key(name) {
                self.status.insert(name.to_string(), PortStatus::Pending);
            }
            return Ok(());
        };
        if let Some(spec) = self.desired.get(name).cloned() {
            // Only this interface's record: O(1) in the number of ports.
            let plan = match state::plan_one(p, &spec) {
                Ok(pp) => Plan { ports: vec![pp] },
                Err(e) => {
                    self.status
                        .insert(name.to_string(), PortStatus::Error(one_line(&e)));
                    return Err(e);
                }
            };
            self.run_plan(p, &plan)
        } else if guard::matching(&self.guards, name).is_some() {
            self.guard_attach(p, ifindex, name)
        } else {
            Ok(())
        }
    }

    /// Attaches a guarded interface fail-closed (no binding: every frame is
    /// `unbound_port`) unless its link is already live, and marks an
    /// unbound record as guarded for `show`.
    fn guard_attach(&mut self, p: &mut Pinned, ifindex: u32, name: &str) -> Result<()> {
        if iface::ethernet_port(name).is_err() {
            return Ok(()); // a bridge, tun, ... that happens to match: not a VM port
        }
        let live = attach::pinned_link_ifindex(&p.link_path(name)).ok() == Some(ifindex);
        if !live {
            self.wait_warm(p);
            let before = port_json(p, ifindex);
            let res = attach::attach(p, name, RequestedMode::Auto).map(|_| ());
            let after = port_json(p, ifindex);
            self.record(name, before, after, &res);
            if let Err(e) = res {
                let m = format!("! {name}: guard: attach FAILED: {}", one_line(&e));
                self.say(m);
                return Err(e);
            }
            let g = guard::matching(&self.guards, name)
                .map(|g| g.to_string())
                .unwrap_or_default();
            self.say(format!(
                "+ {name}: guard {g:?}: attached fail-closed (unbound_port) until a binding arrives"
            ));
        }
        // Marked once (an edit is a record flip); a bound record never is.
        if p.config(ifindex)?
            .is_some_and(|c| c.flags & (flags::BOUND | flags::GUARDED) == 0)
        {
            p.edit_record(ifindex, |c| {
                if c.flags & flags::BOUND == 0 {
                    c.flags |= flags::GUARDED;
                }
            })?;
        }
        Ok(())
    }

    /// `ifindex` was renamed (`from` as last seen) to `to`: its record and
    /// link pins take the new name. A binding that was desired port
    /// `from`'s is removed when `to` is not desired (the port stays
    /// attached: fail closed); a desired `to` is bound by [`converge`].
    fn follow_rename(&mut self, p: &mut Pinned, ifindex: u32, from: &str, to: &str) -> Result<()> {
        let Some(c) = p.config(ifindex)? else {
            return Ok(());
        };
        let rec = str_from_fixed(&c.ifname);
        if rec == to {
            return Ok(());
        }
        let before = port_json(p, ifindex);
        let res = (|| -> Result<()> {
            attach::move_pins(p, &rec, to, ifindex)?;
            if self.desired.contains_key(&rec)
                && !self.desired.contains_key(to)
                && c.flags & flags::BOUND != 0
            {
                p.unbind(ifindex)?;
            }
            Ok(())
        })();
        let after = port_json(p, ifindex);
        self.record(to, before, after, &res);
        res?;
        self.say(format!(
            "~ {rec} -> {to}: renamed (ifindex {ifindex}, last seen as {from}); its record and links follow it{}",
            if self.desired.contains_key(&rec) && !self.desired.contains_key(to) {
                "; the binding was that name's: removed (fail closed)"
            } else {
                ""
            }
        ));
        if self.desired.contains_key(&rec) {
            self.status.insert(rec, PortStatus::Pending);
        }
        Ok(())
    }

    /// Link `l` is gone (deleted, or moved to another namespace): its
    /// record and its dead link pins are removed.
    fn gone(&mut self, p: &mut Pinned, l: &Link) -> Result<()> {
        if self.desired.contains_key(&l.name) {
            self.status.insert(l.name.clone(), PortStatus::Pending);
        }
        if iface::name(l.ifindex).is_some() {
            return Ok(()); // back already (a stale event)
        }
        let Some(c) = p.config(l.ifindex)? else {
            return Ok(());
        };
        let rec = str_from_fixed(&c.ifname);
        let before = port_json(p, l.ifindex);
        let res = (|| -> Result<()> {
            p.forget(l.ifindex)?;
            remove_live_pins(p, &rec, l.ifindex)?;
            if rec != l.name {
                remove_live_pins(p, &l.name, l.ifindex)?;
            }
            Ok(())
        })();
        self.record(&rec, before, None, &res);
        res?;
        self.say(format!(
            "- {rec}: interface gone (ifindex {}): stale record removed",
            l.ifindex
        ));
        if self.desired.contains_key(&rec) {
            self.status.insert(rec, PortStatus::Pending);
        }
        Ok(())
    }

    /// Everything: records follow renames, the planner converges the
    /// desired ports (and removes stale records), guards attach.
    fn full(&mut self, p: &mut Pinned) -> Result<String> {
        let mut first_err: Option<anyhow::Error> = None;
        for c in p.records()? {
            let rec = str_from_fixed(&c.ifname);
            let Some(now) = self.links.get(&c.ifindex).map(|l| l.name.clone()) else {
                continue;
            };
            if now != rec {
                if let Err(e) = self.follow_rename(p, c.ifindex, &rec, &now) {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Interfaces as the dump just taken has them (not three ioctls per
        // port); anything else (not Ethernet, created since) asks the kernel.
        let dumped: HashMap<String, u32> = self
            .links
            .values()
            .filter(|l| l.ethernet)
            .map(|l| (l.name.clone(), l.ifindex))
            .collect();
        let resolve = move |name: &str| match dumped.get(name) {
            Some(i) => Ok(*i),
            None => iface::ethernet_port(name),
        };
        // An interface that exists but cannot carry a binding (not Ethernet)
        // fails its own port only, not the whole plan.
        let mut ports = Vec::new();
        for port in self.desired.values() {
            match resolve(&port.iface) {
                Ok(_) | Err(iface::IfaceError::Unknown(_)) => ports.push(port.clone()),
                Err(e) => {
                    let msg = e.to_string();
                    if self.status.get(&port.iface) != Some(&PortStatus::Error(msg.clone())) {
                        (self.log)(&format!("! {}: {msg}", port.iface));
                    }
                    self.status
                        .insert(port.iface.clone(), PortStatus::Error(msg.clone()));
                    first_err.get_or_insert(anyhow::anyhow!("port {:?}: {msg}", port.iface));
                }
            }
        }
        let st = State {
            ports,
            guards: self.guards.clone(),
        };
        let mut plan = state::plan_resolved(
            &p.ports()?,
            &p.link_dir(),
            &st,
            PlanOptions {
                prune: self.o.prune,
                skip_missing: true,
            },
            &resolve,
        )?;
        // Pruning a guarded interface that still exists keeps it attached.
        for pp in &mut plan.ports {
            if pp.kind == Kind::Remove && guard::matching(&self.guards, &pp.iface).is_some() {
                pp.steps.retain(|s| !matches!(s, Step::Detach { .. }));
            }
        }
        if let Err(e) = self.run_plan(p, &plan) {
            first_err.get_or_insert(e);
        }
        let guarded: Vec<(u32, String)> = self
            .links
            .values()
            .filter(|l| {
                l.ethernet
                    && !self.desired.contains_key(&l.name)
                    && guard::matching(&self.guards, &l.name).is_some()
            })
            .map(|l| (l.ifindex, l.name.clone()))
            .collect();
        for (ifindex, name) in guarded {
            if let Err(e) = self.guard_attach(p, ifindex, &name) {
                first_err.get_or_insert(e);
            }
        }
        // Every desired port's status was refreshed by run_plan (each is in
        // the plan unless it failed above).
        match first_err {
            Some(e) => Err(e),
            None => Ok(plan.summary()),
        }
    }
}

/// Removes `links/<name>` and `links-tc/<name>` when they hold the link of
/// `ifindex`, a severed link, or the link of an interface no longer in this
/// namespace; a live link of another interface here is left alone.
fn remove_live_pins(p: &Pinned, name: &str, ifindex: u32) -> Result<()> {
    for path in [p.link_path(name), attach::tc_link_path(p, name)] {
        if let Ok((_, i)) = attach::pinned_link_info(&path) {
            if i == 0 || i == ifindex || iface::name(i).is_none() {
                attach::remove_pin(&path)?;
            }
        }
    }
    Ok(())
}
