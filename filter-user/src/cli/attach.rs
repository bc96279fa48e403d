use anyhow::Result;
use portguard::{
    attach::{attach, remove_stale_records, AttachReason, DeviceKind, RequestedMode},
    attach_mode::{auto_choice, AutoChoice},
    audit::{audited, AuditEntry, AuditLog},
    binding::attach_mode_name,
    iface,
    pinned::Pinned,
    report::port_json,
};

#[derive(clap::Args)]
pub struct Args {
    /// Host-side interface of the VM (tap or veth).
    pub iface: String,
    /// auto picks by device: tc on veth (the checks as a tc ingress program:
    /// keeps the VM's TSO, copies nothing), native XDP on tap and other
    /// devices (generic if the driver has no XDP). Also accepted: skb
    /// (= generic), drv (= native), tcx (= tc).
    #[arg(long, default_value = "auto")]
    pub mode: RequestedMode,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    let log = AuditLog::new(&ctx.audit_log);
    let lines = audited(&log, AuditEntry::new("attach", Some(&a.iface)), |e| {
        super::require_root()?;
        let ifindex = iface::ethernet_port(&a.iface)?;
        let mut p = Pinned::open_sized(pin_dir, ctx.max_ports)?;
        e.before = port_json(&p, ifindex);
        let r = attach(&mut p, &a.iface, a.mode);
        e.after = port_json(&p, ifindex);
        let r = r?;
        let stale = remove_stale_records(&mut p, &a.iface)?;
        let mode = attach_mode_name(r.mode).unwrap_or("?");
        let bound = p
            .config(r.ifindex)?
            .map(|c| c.flags & filter_common::flags::BOUND != 0)
            .unwrap_or(false);
        let mut lines = Vec::new();
        for i in stale {
            lines.push(format!(
                "{}: removed the stale record of ifindex {i} (a deleted interface of that name; its binding is not carried over)",
                a.iface
            ));
        }
        let why = r.reason.explain();
        if r.replaced {
            lines.push(format!(
                "{}: program replaced in place ({mode} mode, {why})",
                a.iface
            ));
            // What a fresh attach would pick (auto: by device kind, before any fallback).
            let wanted = match a.mode {
                RequestedMode::Native => Some(filter_common::ATTACH_NATIVE),
                RequestedMode::Generic => Some(filter_common::ATTACH_GENERIC),
                RequestedMode::Tc => Some(filter_common::ATTACH_TC),
                RequestedMode::Auto => Some(match auto_choice(&r.kind).0 {
                    AutoChoice::Tc => filter_common::ATTACH_TC,
                    AutoChoice::Native => filter_common::ATTACH_NATIVE,
                })
                .filter(|_| r.reason != AttachReason::AutoFallback),
            };
            if let Some(w) = wanted.filter(|w| *w != r.mode) {
                lines.push(format!(
                    "{}: the mode stays {mode}, not {}: a link cannot change mode; `portguard detach {}` and attach again to switch (unfiltered in between)",
                    a.iface,
                    attach_mode_name(w).unwrap_or("?"),
                    a.iface
                ));
            }
        } else {
            match &r.fallback_reason {
                Some(e) => lines.push(format!(
                    "{}: attached in generic mode ({why}: {e})",
                    a.iface
                )),
                None => lines.push(format!("{}: attached in {mode} mode ({why})", a.iface)),
            }
            if r.kind == DeviceKind::Veth && r.mode == filter_common::ATTACH_NATIVE {
                lines.push(format!(
                    "{}: note: native XDP on a veth clears TSO on its peer, the VM's TCP throughput falls to about 0.3x (auto uses tc)",
                    a.iface
                ));
            }
        }
        if !bound {
            lines.push(format!(
                "{}: no binding yet: every frame is dropped (unbound_port) until `portguard bind {}`",
                a.iface, a.iface
            ));
        }
        Ok(lines)
    })?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
