//! Carrying a [`Plan`] out, step by step, under the pin-dir lock.
use std::{collections::HashMap, fs::File, path::Path};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Plan, PortPlan, Step};
use crate::{
    attach::{self, remove_pin, RequestedMode},
    audit::AuditEntry,
    error::one_line,
    pinned::{NewOutcome, NewPort, Pinned},
    report::{port_json, show_json},
};

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

/// Carries out `plan` port by port, each port's steps in order (see
/// [`Step`]). Unchanged ports are not touched at all. A port that fails is
/// reported and the others still converge; the result is an error when any
/// port failed. `each` sees every port that changed (or failed to), in plan
/// order, right after it did. Returns the number of ports changed.
///
/// The first bindings of new ports are written together first
/// ([`Pinned::bind_new`]: one lock, batched map writes), each port then
/// finishing its other steps (attach) in turn: a sync of thousands of new
/// ports costs a few syscalls per port, not a few dozen.
pub fn apply(p: &mut Pinned, plan: &Plan, each: &mut dyn FnMut(&Outcome)) -> Result<usize> {
    let mut fresh = bind_fresh(p, plan);
    let mut failed = Vec::new();
    let mut changed = 0;
    for (k, pp) in plan
        .ports
        .iter()
        .enumerate()
        .filter(|(_, pp)| !pp.is_noop())
    {
        let o = match fresh.remove(&k) {
            Some(n) => finish_fresh(p, pp, n),
            None => apply_port(p, pp),
        };
        match &o.result {
            Err(e) => failed.push(format!("{}: {e}", pp.iface)),
            Ok(()) => changed += 1,
        }
        each(&o);
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

/// Binds every port whose plan starts with a first binding, in one batch
/// (when there are at least two). By index in `plan.ports`; a port missing
/// from the result goes through [`apply_port`] (also when the batch could
/// not start at all: each port then reports its own error).
fn bind_fresh(p: &mut Pinned, plan: &Plan) -> HashMap<usize, NewOutcome> {
    let (idx, ports): (Vec<usize>, Vec<NewPort>) = plan
        .ports
        .iter()
        .enumerate()
        .filter_map(|(k, pp)| match pp.steps.first() {
            Some(Step::Bind(b)) => Some((
                k,
                NewPort {
                    ifindex: pp.ifindex,
                    ifname: &pp.iface,
                    binding: b,
                },
            )),
            _ => None,
        })
        .unzip();
    if ports.len() < 2 {
        return HashMap::new();
    }
    match p.bind_new(&ports) {
        Ok(outcomes) => idx.into_iter().zip(outcomes).collect(),
        Err(_) => HashMap::new(),
    }
}

/// A port bound by [`bind_fresh`]: its remaining steps, and its outcome.
fn finish_fresh<'a>(p: &mut Pinned, pp: &'a PortPlan, n: NewOutcome) -> Outcome<'a> {
    let before = n.before.as_ref().map(show_json);
    let (result, after) = match n.result {
        Err(e) => (
            Err(format!("binding {}: {e}", pp.iface)),
            port_json(p, pp.ifindex),
        ),
        Ok(info) if pp.steps.len() == 1 => (Ok(()), Some(show_json(&info))),
        Ok(_) => {
            let r = pp.steps[1..]
                .iter()
                .try_for_each(|s| run_step(p, pp, s))
                .map_err(|e| one_line(&e));
            (r, port_json(p, pp.ifindex))
        }
    };
    Outcome {
        plan: pp,
        before,
        after,
        result,
    }
}

/// Carries out one port's steps, recording its record before and after.
/// The caller holds the pin-dir [`lock`] (as [`open_locked`] gives it).
pub fn apply_port<'a>(p: &mut Pinned, pp: &'a PortPlan) -> Outcome<'a> {
    let before = port_json(p, pp.ifindex);
    let result = pp
        .steps
        .iter()
        .try_for_each(|s| run_step(p, pp, s))
        .map_err(|e| one_line(&e));
    let after = port_json(p, pp.ifindex);
    Outcome {
        plan: pp,
        before,
        after,
        result,
    }
}

fn remove_links(p: &Pinned, iface: &str) -> Result<()> {
    remove_pin(&p.link_path(iface))?;
    remove_pin(&attach::tc_link_path(p, iface))
}

fn run_step(p: &mut Pinned, pp: &PortPlan, step: &Step) -> Result<()> {
    let iface = pp.iface.as_str();
    match step {
        Step::Bind(b) | Step::Rebind { binding: b, .. } => {
            p.bind(pp.ifindex, iface, b)
                .with_context(|| format!("binding {iface}"))?;
        }
        Step::ReplaceSeveredLink => remove_links(p, iface)?,
        Step::Attach { reattach } => {
            if let Err(e) = attach::attach(p, iface, RequestedMode::Auto) {
                // attach() records the port as attached before it tries; a bound
                // port that ends up without a link must not claim to be attached.
                if !reattach && !p.link_path(iface).exists() {
                    let _ = p.mark_detached(pp.ifindex);
                }
                return Err(e.context(format!("attaching {iface}")));
            }
        }
        // An attached port without binding drops everything until detached.
        Step::Unbind => {
            p.unbind(pp.ifindex)
                .with_context(|| format!("unbinding {iface}"))?;
        }
        Step::Detach { remove_link } => detach(p, pp, *remove_link)?,
        Step::RemoveStale {
            detach: was_attached,
            remove_link,
        } => {
            p.unbind(pp.ifindex)
                .with_context(|| format!("unbinding {iface}"))?;
            if *was_attached {
                detach(p, pp, *remove_link)?;
            }
        }
    }
    Ok(())
}

/// By ifindex, not by name: the name may belong to a new interface by now.
fn detach(p: &mut Pinned, pp: &PortPlan, remove_link: bool) -> Result<()> {
    if remove_link {
        remove_links(p, &pp.iface)?;
    }
    p.mark_detached(pp.ifindex)
        .with_context(|| format!("detaching {}", pp.iface))
}

/// An exclusive lock on the pin directory, so that two `apply`s (or an
/// `apply` and the daemon) do not interleave. Released when dropped.
pub fn lock(pin_dir: &Path) -> Result<File> {
    let f = File::open(pin_dir)
        .with_context(|| format!("cannot open {} for locking", pin_dir.display()))?;
    f.lock()
        .with_context(|| format!("cannot lock {}", pin_dir.display()))?;
    Ok(f)
}

/// Opens the pinned state under the [`lock`] (taken before the maps are
/// opened, so that two first-time `apply`s do not race to create them).
pub fn open_locked(pin_dir: &Path, max_ports: Option<u32>) -> Result<(Pinned, File)> {
    crate::bpffs::ensure(pin_dir)?;
    std::fs::create_dir_all(pin_dir)
        .with_context(|| format!("cannot create pin directory {}", pin_dir.display()))?;
    let l = lock(pin_dir)?;
    Ok((Pinned::open_sized(pin_dir, max_ports)?, l))
}
