use anyhow::Result;
use portguard::{
    attach::detach,
    pinned::{remove_pin_dir, Pinned},
};

#[derive(clap::Args)]
pub struct Args {
    pub iface: String,
}

pub fn run(ctx: &super::Ctx, a: Args) -> Result<()> {
    let pin_dir = ctx.pin_dir.as_path();
    super::require_root()?;
    if !pin_dir.join("links").join(&a.iface).exists() {
        anyhow::bail!(
            "{} is not attached (nothing pinned in {})",
            a.iface,
            pin_dir.display()
        );
    }
    let mut p = Pinned::open(pin_dir)?;
    let last = detach(&mut p, &a.iface)?;
    println!("{}: detached", a.iface);
    if last {
        let remaining = p.ports()?;
        if remaining.is_empty() {
            drop(p);
            remove_pin_dir(pin_dir)?;
            println!("last port detached: removed {}", pin_dir.display());
        } else {
            let _ = std::fs::remove_file(pin_dir.join("prog"));
            println!(
                "last port detached; bindings kept for {} unattached port(s) (unbind them to remove all state)",
                remaining.len()
            );
        }
    }
    Ok(())
}
