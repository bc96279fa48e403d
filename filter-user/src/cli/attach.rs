use anyhow::Result;
use portguard::{
    attach::{attach, RequestedMode},
    binding::attach_mode_name,
    iface,
    pinned::Pinned,
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
    super::require_root()?;
    iface::ethernet_port(&a.iface)?;
    let mut p = Pinned::open(pin_dir)?;
    let r = attach(&mut p, &a.iface, a.mode)?;
    let mode = attach_mode_name(r.mode).unwrap_or("?");
    let bound = p
        .config(r.ifindex)?
        .map(|c| c.flags & filter_common::flags::BOUND != 0)
        .unwrap_or(false);
    if r.replaced {
        println!("{}: program replaced in place ({mode} mode)", a.iface);
    } else {
        match &r.fallback_reason {
            Some(why) => println!(
                "{}: attached in generic mode (native unavailable: {why})",
                a.iface
            ),
            None => println!("{}: attached in {mode} mode", a.iface),
        }
    }
    if !bound {
        println!(
            "{}: no binding yet: every frame is dropped (unbound_port) until `portguard bind {}`",
            a.iface, a.iface
        );
    }
    Ok(())
}
