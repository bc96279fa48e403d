//! Attaching and detaching the XDP program through pinned bpf_links.
//! Persistent attach = attach, take the link, convert to FdLink, pin it;
//! re-attach replaces the program inside the pinned link (bpf_link_update),
//! so there is no instant without enforcement.
//!
//! Next to XDP, every attached interface gets the tc ingress program
//! `portguard_vlan` (a tcx link pinned at `links-tc/<iface>`), which polices
//! VLAN tags carried in skb metadata, invisible to XDP (docs/vlan-offload.md).
//! The two are attached, replaced and detached together; `links/` alone
//! tells which interfaces are attached.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::programs::{
    links::{FdLink, LinkOrder, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
    xdp::XdpLink,
    TcAttachType, XdpMode,
};
use filter_common::{ATTACH_GENERIC, ATTACH_NATIVE};

use crate::{iface, pinned::Pinned, sys};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestedMode {
    Auto,
    Native,
    Generic,
}

impl std::str::FromStr for RequestedMode {
    type Err = String;
    fn from_str(s: &str) -> Result<RequestedMode, String> {
        match s {
            "auto" => Ok(RequestedMode::Auto),
            "native" => Ok(RequestedMode::Native),
            "generic" => Ok(RequestedMode::Generic),
            o => Err(format!(
                "invalid mode {o:?}: expected auto, native or generic"
            )),
        }
    }
}

#[derive(Debug)]
pub struct Attached {
    pub ifindex: u32,
    /// `ATTACH_NATIVE` or `ATTACH_GENERIC`.
    pub mode: u8,
    /// An existing pinned link had its program replaced in place.
    pub replaced: bool,
    /// Why native mode was not used, for `auto`.
    pub fallback_reason: Option<String>,
}

pub fn attach(p: &mut Pinned, ifname: &str, want: RequestedMode) -> Result<Attached> {
    let ifindex = iface::ethernet_port(ifname)?;
    let link_path = p.link_path(ifname);
    fs::create_dir_all(p.link_dir())
        .with_context(|| format!("cannot create {}", p.link_dir().display()))?;

    // Fail closed from the first frame: the port record exists before the program runs.
    let existing_mode = p.config(ifindex)?.map(|c| c.attach_mode).unwrap_or(0);
    let created = p.mark_attached(
        ifindex,
        ifname,
        if existing_mode != 0 {
            existing_mode
        } else {
            ATTACH_NATIVE
        },
    )?;

    let result = (|| -> Result<Attached> {
        if link_path.exists() {
            match pinned_link_ifindex(&link_path) {
                Ok(i) if i == ifindex => return replace(p, ifname, ifindex, existing_mode),
                // Cannot tell (e.g. no permission to read it back): as before.
                Err(_) => return replace(p, ifname, ifindex, existing_mode),
                // The pin holds another interface's live link: that interface
                // was renamed away from this name; its pins follow it.
                Ok(i) if i != 0 && iface::name(i).is_some() => {
                    let to = iface::name(i).unwrap_or_default();
                    move_pins(p, ifname, &to, i)?;
                }
                // Severed: the interface was deleted (and this one created
                // under its name). bpf_link_update on it fails with ENOLINK;
                // the dead pins go and the program is attached afresh.
                Ok(_) => {
                    remove_pin(&link_path)?;
                    remove_pin(&tc_link_path(p, ifname))?;
                }
            }
        }
        let prog = p.program()?;
        let (id, mode, fallback_reason) = match want {
            RequestedMode::Native => (
                prog.attach_to_if_index(ifindex, XdpMode::Driver)
                    .with_context(|| format!("attaching to {ifname} in native mode"))?,
                ATTACH_NATIVE,
                None,
            ),
            RequestedMode::Generic => (
                prog.attach_to_if_index(ifindex, XdpMode::Skb)
                    .with_context(|| format!("attaching to {ifname} in generic mode"))?,
                ATTACH_GENERIC,
                None,
            ),
            RequestedMode::Auto => match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
                Ok(id) => (id, ATTACH_NATIVE, None),
                Err(e) => (
                    prog.attach_to_if_index(ifindex, XdpMode::Skb)
                        .with_context(|| {
                            format!("attaching to {ifname} (native failed: {e}; generic too)")
                        })?,
                    ATTACH_GENERIC,
                    Some(e.to_string()),
                ),
            },
        };
        let link = prog.take_link(id).context("taking the XDP link")?;
        let fd_link = FdLink::try_from(link).map_err(|e| {
            anyhow!("{ifname}: the kernel attached through netlink, not a bpf_link, so it cannot be pinned ({e})")
        })?;
        fd_link
            .pin(&link_path)
            .with_context(|| format!("pinning the link at {}", link_path.display()))?;
        if let Err(e) = attach_tc(p, ifname, ifindex) {
            // No half attach: unpinning the only reference to the XDP link detaches it.
            let _ = fs::remove_file(&link_path);
            return Err(e);
        }
        p.mark_attached(ifindex, ifname, mode)?;
        pin_program(p)?;
        Ok(Attached {
            ifindex,
            mode,
            replaced: false,
            fallback_reason,
        })
    })();
    if result.is_err() {
        // Leave things as they were: no record we created, no "attached" claim we made.
        if created {
            let _ = p.mark_detached(ifindex);
        } else if existing_mode == 0 {
            let _ = p.mark_attached(ifindex, ifname, 0);
        }
    }
    result
}

/// Moves the pins of the links of `ifindex` from `links/<from>` (and
/// `links-tc/<from>`) to `<to>` and renames its record: the interface was
/// renamed from `from` to `to` and stays attached. A severed pin left under
/// `<to>` is replaced; a live one of another interface is an error.
pub fn move_pins(p: &mut Pinned, from: &str, to: &str, ifindex: u32) -> Result<()> {
    for (src, dst) in [
        (p.link_path(from), p.link_path(to)),
        (tc_link_path(p, from), tc_link_path(p, to)),
    ] {
        match pinned_link_info(&src) {
            Ok((_, i)) if i == ifindex => {}
            _ => continue,
        }
        if dst.exists() {
            match pinned_link_info(&dst) {
                Ok((_, i)) if i != 0 && i != ifindex => bail!(
                    "cannot move {} to {}: it holds the live link of ifindex {i}",
                    src.display(),
                    dst.display()
                ),
                _ => remove_pin(&dst)?,
            }
        }
        fs::rename(&src, &dst)
            .with_context(|| format!("moving {} to {}", src.display(), dst.display()))?;
    }
    p.edit_record(ifindex, |c| c.ifname = crate::binding::fixed_str(to))?;
    Ok(())
}

/// Removes every record named `ifname` whose interface no longer exists
/// (deleted, or moved to another namespace): left by an interface that was
/// deleted and recreated under the same name while nothing watched. Its
/// binding is not carried over (the name may now be another VM's). Returns
/// the removed records' ifindexes.
pub fn remove_stale_records(p: &mut Pinned, ifname: &str) -> Result<Vec<u32>> {
    let mut gone = Vec::new();
    for c in p.records()? {
        let name = crate::binding::str_from_fixed(&c.ifname);
        if name == ifname && iface::name(c.ifindex).is_none() {
            p.forget(c.ifindex)?;
            gone.push(c.ifindex);
        }
    }
    Ok(gone)
}

/// Hitless upgrade / re-attach: swap the program inside the pinned link.
fn replace(p: &mut Pinned, ifname: &str, ifindex: u32, mode: u8) -> Result<Attached> {
    let link_path = p.link_path(ifname);
    let pinned = PinnedLink::from_pin(&link_path)
        .with_context(|| format!("opening pinned link {}", link_path.display()))?;
    let fd_link: FdLink = pinned.into();
    let xdp_link = XdpLink::try_from(fd_link).context("pinned link is not an XDP link")?;
    let prog = p.program()?;
    let id = prog
        .attach_to_link(xdp_link)
        .with_context(|| format!("replacing the program on {ifname} (bpf_link_update)"))?;
    // The pin keeps the link alive; our fd may close.
    let link = prog.take_link(id).context("taking the XDP link")?;
    drop(FdLink::try_from(link).ok());
    // Replaced in place too; added when missing (pinned by a build without it).
    attach_tc(p, ifname, ifindex)?;
    let mode = if mode == 0 { ATTACH_NATIVE } else { mode };
    p.mark_attached(ifindex, ifname, mode)?;
    pin_program(p)?;
    Ok(Attached {
        ifindex,
        mode,
        replaced: true,
        fallback_reason: None,
    })
}

fn pin_program(p: &mut Pinned) -> Result<()> {
    let path = p.dir().join("prog");
    let _ = fs::remove_file(&path);
    p.program()?
        .pin(&path)
        .with_context(|| format!("pinning the program at {}", path.display()))?;
    let path = p.dir().join(TC_PROG_PIN);
    let _ = fs::remove_file(&path);
    p.vlan_program()?
        .pin(&path)
        .with_context(|| format!("pinning the tc program at {}", path.display()))
}

/// Pin of the last loaded tc VLAN program, next to `prog`.
pub const TC_PROG_PIN: &str = "prog-tc";

/// `<pin-dir>/links-tc/<iface>`: the tcx link of the tc VLAN program, given the
/// pin dir's `links/` (kept out of `links/`, whose entries are the attached interfaces).
pub fn tc_link_path_for(links: &Path, ifname: &str) -> PathBuf {
    links.with_file_name("links-tc").join(ifname)
}

pub fn tc_link_path(p: &Pinned, ifname: &str) -> PathBuf {
    tc_link_path_for(&p.link_dir(), ifname)
}

/// Removes a pin; a missing one is fine.
pub fn remove_pin(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing link pin {}", path.display())),
    }
}

/// Attaches (or replaces in place) the tc ingress VLAN program on `ifname`
/// and pins its tcx link. It goes first in the tcx chain, so no other tcx
/// program can accept a frame before it is seen; it never returns "pass"
/// (only "next" or "drop"), so what runs after it still runs.
fn attach_tc(p: &mut Pinned, ifname: &str, ifindex: u32) -> Result<()> {
    let path = tc_link_path(p, ifname);
    let dir = path.parent().expect("links-tc/<iface> has a parent");
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if path.exists() {
        match pinned_link_info(&path) {
            Ok((BPF_LINK_TYPE_TCX, i)) if i == ifindex => {
                let pinned = PinnedLink::from_pin(&path)
                    .with_context(|| format!("opening pinned link {}", path.display()))?;
                let fd_link: FdLink = pinned.into();
                let link = SchedClassifierLink::try_from(fd_link)
                    .context("pinned tc link is not a tcx link")?;
                let prog = p.vlan_program()?;
                let id = prog.attach_to_link(link).with_context(|| {
                    format!("replacing the tc program on {ifname} (bpf_link_update)")
                })?;
                let link = prog.take_link(id).context("taking the tc link")?;
                drop(FdLink::try_from(link).ok());
                return Ok(());
            }
            // Severed (interface recreated), another interface's, or unreadable: replace the pin.
            _ => remove_pin(&path)?,
        }
    }
    let prog = p.vlan_program()?;
    let id = prog
        .attach_with_options(
            ifname,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .with_context(|| {
            format!("attaching the tc VLAN program to {ifname} ingress (tcx, Linux >= 6.6)")
        })?;
    let link = prog.take_link(id).context("taking the tc link")?;
    let fd_link = FdLink::try_from(link).map_err(|e| {
        anyhow!("{ifname}: the tc program was not attached through a tcx link, so it cannot be pinned ({e})")
    })?;
    fd_link
        .pin(&path)
        .with_context(|| format!("pinning the tc link at {}", path.display()))?;
    Ok(())
}

/// Removes the interface's link pin (detaching it) and its attach record.
/// Returns true when this was the last attached interface.
pub fn detach(p: &mut Pinned, ifname: &str) -> Result<bool> {
    let link_path = p.link_path(ifname);
    let ifindex = match iface::index(ifname) {
        Ok(i) => Some(i),
        Err(_) => p
            .ports()?
            .into_iter()
            .find(|i| i.ifname == ifname)
            .map(|i| i.ifindex),
    };
    if !link_path.exists() {
        bail!(
            "{ifname} is not attached (no link pinned at {})",
            link_path.display()
        );
    }
    fs::remove_file(&link_path)
        .with_context(|| format!("removing link pin {}", link_path.display()))?;
    let tc = remove_pin(&tc_link_path(p, ifname));
    if let Some(ifindex) = ifindex {
        p.mark_detached(ifindex)?;
    }
    tc?;
    let remaining = fs::read_dir(p.link_dir()).map(|d| d.count()).unwrap_or(0);
    Ok(remaining == 0)
}

const BPF_LINK_TYPE_XDP: u32 = 6;
const BPF_LINK_TYPE_TCX: u32 = 11;

/// The ifindex an XDP link pinned at `path` is attached to (0 once its
/// interface is gone), via BPF_OBJ_GET + BPF_OBJ_GET_INFO_BY_FD.
pub fn pinned_link_ifindex(path: &Path) -> std::io::Result<u32> {
    let (kind, ifindex) = pinned_link_info(path)?;
    Ok(if kind == BPF_LINK_TYPE_XDP {
        ifindex
    } else {
        0
    })
}

/// The type and ifindex (0 once its interface is gone) of an XDP or tcx link
/// pinned at `path`, via BPF_OBJ_GET + BPF_OBJ_GET_INFO_BY_FD.
pub fn pinned_link_info(path: &Path) -> std::io::Result<(u32, u32)> {
    let info = sys::bpf_link_info(sys::bpf_obj_get(path)?)?;
    // struct bpf_link_info { u32 type, id, prog_id; union (8-aligned) {
    //     xdp { u32 ifindex }, tcx { u32 ifindex, attach_type } } }
    match info[0] {
        BPF_LINK_TYPE_XDP | BPF_LINK_TYPE_TCX => Ok((info[0], info[4])),
        other => Ok((other, 0)),
    }
}
