use anyhow::{bail, Result};
use portguard::{iface, pinned::Pinned};

#[derive(clap::Args)]
pub struct Args {
    pub iface: String,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
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
        Err(e) => match p.ports()?.into_iter().find(|i| i.ifname == a.iface) {
            Some(i) => i.ifindex,
            None => return Err(e.into()),
        },
    };
    let attached = p
        .config(ifindex)?
        .map(|c| c.attach_mode != 0)
        .unwrap_or(false);
    match p.unbind(ifindex)? {
        None => bail!("{} is not bound", a.iface),
        Some(_) => {
            println!("{}: unbound", a.iface);
            if attached {
                println!(
                    "{}: still attached: every frame is now dropped (unbound_port)",
                    a.iface
                );
            }
        }
    }
    Ok(())
}
