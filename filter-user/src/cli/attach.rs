use anyhow::Result;
use portguard::{
    attach::{attach, remove_stale_records, RequestedMode},
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
    /// auto tries native (driver) mode and falls back to generic.
    #[arg(long, default_value = "auto")]
    pub mode: RequestedMode,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    let log = AuditLog::new(&ctx.audit_log);
    let lines = audited(&log, AuditEntry::new("attach", Some(&a.iface)), |e| {
        super::require_root()?;
        let ifindex = iface::ethernet_port(&a.iface)?;
        let mut p = Pinned::open(pin_dir)?;
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
        if r.replaced {
            lines.push(format!(
                "{}: program replaced in place ({mode} mode)",
                a.iface
            ));
        } else {
            match &r.fallback_reason {
                Some(why) => lines.push(format!(
                    "{}: attached in generic mode (native unavailable: {why})",
                    a.iface
                )),
                None => lines.push(format!("{}: attached in {mode} mode", a.iface)),
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
