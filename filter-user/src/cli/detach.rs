use anyhow::Result;
use portguard::{
    attach::detach,
    audit::{audited, AuditEntry, AuditLog},
    pinned::{remove_pin_dir, Pinned},
    report::port_json_by_name,
};

#[derive(clap::Args)]
pub struct Args {
    /// Host-side interface of the VM (tap or veth).
    pub iface: String,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    let log = AuditLog::new(&ctx.audit_log);
    let lines = audited(&log, AuditEntry::new("detach", Some(&a.iface)), |e| {
        super::require_root()?;
        if !pin_dir.join("links").join(&a.iface).exists() {
            anyhow::bail!(
                "{} is not attached (nothing pinned in {})",
                a.iface,
                pin_dir.display()
            );
        }
        let mut p = Pinned::open(pin_dir)?;
        e.before = port_json_by_name(&p, &a.iface);
        let r = detach(&mut p, &a.iface);
        e.after = port_json_by_name(&p, &a.iface);
        let last = r?;
        let mut lines = vec![format!("{}: detached", a.iface)];
        if last {
            let remaining = p.ports()?;
            if remaining.is_empty() {
                drop(p);
                remove_pin_dir(pin_dir)?;
                lines.push(format!("last port detached: removed {}", pin_dir.display()));
            } else {
                let _ = std::fs::remove_file(pin_dir.join("prog"));
                let _ = std::fs::remove_file(pin_dir.join(portguard::attach::TC_PROG_PIN));
                let _ = std::fs::remove_file(pin_dir.join(portguard::attach::SKB_PROG_PIN));
                lines.push(format!(
                    "last port detached; bindings kept for {} unattached port(s) (unbind them to remove all state)",
                    remaining.len()
                ));
            }
        }
        Ok(lines)
    })?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
