use anyhow::{bail, Result};
use portguard::{
    audit::{audited, AuditEntry, AuditLog},
    iface,
    pinned::Pinned,
    report::port_json,
};

#[derive(clap::Args)]
pub struct Args {
    /// Host-side interface of the VM (tap or veth).
    pub iface: String,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    let log = AuditLog::new(&ctx.audit_log);
    let lines = audited(&log, AuditEntry::new("unbind", Some(&a.iface)), |e| {
        super::require_root()?;
        if !pin_dir.join("maps").exists() {
            bail!(
                "{} is not bound (no state in {})",
                a.iface,
                pin_dir.display()
            );
        }
        let mut p = Pinned::open(pin_dir)?;
        let ifindex = match iface::index(&a.iface) {
            Ok(i) => i,
            Err(err) => match p.ports()?.into_iter().find(|i| i.ifname == a.iface) {
                Some(i) => i.ifindex,
                None => return Err(err.into()),
            },
        };
        e.before = port_json(&p, ifindex);
        let attached = p
            .config(ifindex)?
            .map(|c| c.attach_mode != 0)
            .unwrap_or(false);
        let r = p.unbind(ifindex);
        e.after = port_json(&p, ifindex);
        match r? {
            None => bail!("{} is not bound", a.iface),
            Some(_) => {
                let mut lines = vec![format!("{}: unbound", a.iface)];
                if attached {
                    lines.push(format!(
                        "{}: still attached: every frame is now dropped (unbound_port)",
                        a.iface
                    ));
                }
                Ok(lines)
            }
        }
    })?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
