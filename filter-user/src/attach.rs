//! Attaching and detaching the checks through pinned bpf_links: the XDP
//! program (native or generic), or in tc mode the tc program `portguard_skb`
//! (a tcx link), pinned at `links/<iface>` either way.
//! Persistent attach = attach, take the link, convert to FdLink, pin it;
//! re-attach replaces the program inside the pinned link (bpf_link_update),
//! so there is no instant without enforcement.
//!
//! Next to XDP, every interface attached in XDP mode gets the tc ingress
//! program `portguard_vlan` (a tcx link pinned at `links-tc/<iface>`), which
//! polices VLAN tags carried in skb metadata, invisible to XDP
//! (docs/vlan-offload.md). The two are attached, replaced and detached
//! together; `links/` alone tells which interfaces are attached. In tc mode
//! the checks see metadata tags themselves: no VLAN program there.
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
use filter_common::{ATTACH_GENERIC, ATTACH_NATIVE, ATTACH_TC};

use crate::{
    attach_mode::{auto_choice, AutoChoice},
    iface,
    pinned::{Pinned, PROGRAM_NAME, SKB_PROGRAM_NAME, VLAN_PROGRAM_NAME},
    sys,
};

pub use crate::attach_mode::{AttachReason, DeviceKind, RequestedMode};

#[derive(Debug)]
pub struct Attached {
    pub ifindex: u32,
    /// `ATTACH_NATIVE` or `ATTACH_GENERIC`.
    pub mode: u8,
    /// An existing pinned link had its program replaced in place.
    pub replaced: bool,
    /// Why native mode was not used, for `auto`.
    pub fallback_reason: Option<String>,
    /// Why this mode (for a replaced program: as recorded at attach time).
    pub reason: AttachReason,
    /// What `ethtool -i` calls the device's driver.
    pub kind: DeviceKind,
}

pub fn attach(p: &mut Pinned, ifname: &str, want: RequestedMode) -> Result<Attached> {
    let ifindex = iface::ethernet_port(ifname)?;
    let kind = DeviceKind::of(ifname);
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
            match pinned_link_info(&link_path) {
                // Attached already: the program is replaced inside the link,
                // unless the link is of the other hook (XDP <-> tc), which
                // can run next to it: then the new one is attached first and
                // takes over the pin (below), so nothing passes unjudged.
                Ok((link_kind, i)) if i == ifindex => {
                    if (link_kind == BPF_LINK_TYPE_TCX) == wants_tc(want, &kind) {
                        return replace(p, ifname, ifindex, existing_mode, kind);
                    }
                }
                // Cannot tell (e.g. no permission to read it back): as before.
                Err(_) => return replace(p, ifname, ifindex, existing_mode, kind),
                // The pin holds another interface's live link: that interface
                // was renamed away from this name; its pins follow it.
                Ok((_, i)) if i != 0 && iface::name(i).is_some() => {
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
        let tc_mode = wants_tc(want, &kind);
        if !tc_mode {
            attach_tc(p, ifname, ifindex)?;
        }
        let fresh = (|| -> Result<(FdLink, u8, Option<String>, AttachReason)> {
            if tc_mode {
                let reason = match want {
                    RequestedMode::Tc => AttachReason::Requested,
                    _ => auto_choice(&kind).1,
                };
                return Ok((attach_skb(p, ifname)?, ATTACH_TC, None, reason));
            }
            let prog = p.program()?;
            let native = |prog: &mut aya::programs::Xdp| {
                prog.attach_to_if_index(ifindex, XdpMode::Driver)
                    .with_context(|| format!("attaching to {ifname} in native mode"))
            };
            let generic = |prog: &mut aya::programs::Xdp| {
                prog.attach_to_if_index(ifindex, XdpMode::Skb)
                    .with_context(|| format!("attaching to {ifname} in generic mode"))
            };
            let (id, mode, fallback_reason, reason) = match want {
                RequestedMode::Native => {
                    (native(prog)?, ATTACH_NATIVE, None, AttachReason::Requested)
                }
                RequestedMode::Generic | RequestedMode::Tc => (
                    generic(prog)?,
                    ATTACH_GENERIC,
                    None,
                    AttachReason::Requested,
                ),
                RequestedMode::Auto => {
                    let why = auto_choice(&kind).1;
                    match native(prog) {
                        Ok(id) => (id, ATTACH_NATIVE, None, why),
                        Err(e) => (
                            generic(prog).with_context(|| format!("(native failed: {e:#})"))?,
                            ATTACH_GENERIC,
                            Some(format!("{:#}", e.root_cause())),
                            AttachReason::AutoFallback,
                        ),
                    }
                }
            };
            let link = prog.take_link(id).context("taking the XDP link")?;
            let fd_link = FdLink::try_from(link).map_err(|e| {
                anyhow!("{ifname}: the kernel attached through netlink, not a bpf_link, so it cannot be pinned ({e})")
            })?;
            Ok((fd_link, mode, fallback_reason, reason))
        })();
        let (fd_link, mode, fallback_reason, reason) = match fresh {
            Ok(v) => v,
            Err(e) => {
                // No half attach: the VLAN program goes again unless the port
                // was attached already (its link pin is still there).
                if !link_path.exists() {
                    let _ = remove_pin(&tc_link_path(p, ifname));
                }
                return Err(e);
            }
        };
        pin_over(p, ifname, fd_link)?;
        if tc_mode {
            // Switched from XDP: the checks now cover metadata tags.
            remove_pin(&tc_link_path(p, ifname))?;
        }
        p.mark_attached(ifindex, ifname, mode)?;
        p.set_attach_reason(ifindex, reason as u8)?;
        pin_program(p)?;
        Ok(Attached {
            ifindex,
            mode,
            replaced: false,
            fallback_reason,
            reason,
            kind,
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

/// Does this request put the checks on tc (rather than XDP) on this device?
fn wants_tc(want: RequestedMode, kind: &DeviceKind) -> bool {
    match want {
        RequestedMode::Tc => true,
        RequestedMode::Auto => auto_choice(kind).0 == AutoChoice::Tc,
        RequestedMode::Native | RequestedMode::Generic => false,
    }
}

/// Attaches the tc program (the frame checks) first in `ifname`'s tcx
/// ingress chain, in front of the VLAN program.
fn attach_skb(p: &mut Pinned, ifname: &str) -> Result<FdLink> {
    let prog = p.skb_program()?;
    let id = prog
        .attach_with_options(
            ifname,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .with_context(|| format!("attaching to {ifname} in tc mode (tcx ingress, Linux >= 6.6)"))?;
    let link = prog.take_link(id).context("taking the tc link")?;
    FdLink::try_from(link).map_err(|e| {
        anyhow!("{ifname}: the tc program was not attached through a tcx link, so it cannot be pinned ({e})")
    })
}

/// Pins `link` at `links/<ifname>`: first under `links-new/`, then renamed
/// over the old pin, so a link of the other hook attached before is
/// detached only once the new one is pinned (a crash in between leaves
/// both, never neither).
fn pin_over(p: &Pinned, ifname: &str, link: FdLink) -> Result<()> {
    let tmp_dir = p.dir().join("links-new");
    fs::create_dir_all(&tmp_dir).with_context(|| format!("cannot create {}", tmp_dir.display()))?;
    let tmp = tmp_dir.join(ifname);
    remove_pin(&tmp)?;
    link.pin(&tmp)
        .with_context(|| format!("pinning the link at {}", tmp.display()))?;
    let path = p.link_path(ifname);
    fs::rename(&tmp, &path).with_context(|| {
        let _ = fs::remove_file(&tmp);
        format!("moving the link pin to {}", path.display())
    })
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
fn replace(
    p: &mut Pinned,
    ifname: &str,
    ifindex: u32,
    mode: u8,
    kind: DeviceKind,
) -> Result<Attached> {
    let link_path = p.link_path(ifname);
    let pinned = PinnedLink::from_pin(&link_path)
        .with_context(|| format!("opening pinned link {}", link_path.display()))?;
    let fd_link: FdLink = pinned.into();
    let is_tc = matches!(pinned_link_info(&link_path), Ok((BPF_LINK_TYPE_TCX, _)));
    let replacing = || format!("replacing the program on {ifname} (bpf_link_update)");
    // The pin keeps the link alive; our fds may close.
    if is_tc {
        let tc_link =
            SchedClassifierLink::try_from(fd_link).context("pinned link is not a tcx link")?;
        let prog = p.skb_program()?;
        let id = prog.attach_to_link(tc_link).with_context(replacing)?;
        let link = prog.take_link(id).context("taking the tc link")?;
        drop(FdLink::try_from(link).ok());
    } else {
        let xdp_link = XdpLink::try_from(fd_link).context("pinned link is not an XDP link")?;
        let prog = p.program()?;
        let id = prog.attach_to_link(xdp_link).with_context(replacing)?;
        let link = prog.take_link(id).context("taking the XDP link")?;
        drop(FdLink::try_from(link).ok());
    }
    // Replaced in place too in XDP mode; added when missing (pinned by a
    // build without it). Not in tc mode (see the module doc).
    if is_tc {
        remove_pin(&tc_link_path(p, ifname))?;
    } else {
        attach_tc(p, ifname, ifindex)?;
    }
    let mode = match (mode, is_tc) {
        (_, true) => ATTACH_TC,
        (0 | ATTACH_TC, false) => ATTACH_NATIVE,
        (m, false) => m,
    };
    p.mark_attached(ifindex, ifname, mode)?;
    pin_program(p)?;
    let reason = p.config(ifindex)?.map_or(AttachReason::Unknown, |c| {
        AttachReason::from_u8(c.attach_reason)
    });
    Ok(Attached {
        ifindex,
        mode,
        replaced: true,
        fallback_reason: None,
        reason,
        kind,
    })
}

/// Pins the programs this handle loaded (`prog`, `prog-tc`, `prog-skb`):
/// only those, so an XDP attach never pays for verifying the tc program.
fn pin_program(p: &mut Pinned) -> Result<()> {
    for (name, pin) in [
        (PROGRAM_NAME, "prog"),
        (VLAN_PROGRAM_NAME, TC_PROG_PIN),
        (SKB_PROGRAM_NAME, SKB_PROG_PIN),
    ] {
        if !p.is_loaded(name) {
            continue;
        }
        let path = p.dir().join(pin);
        let _ = fs::remove_file(&path);
        let prog = match name {
            PROGRAM_NAME => p.program()?.pin(&path),
            VLAN_PROGRAM_NAME => p.vlan_program()?.pin(&path),
            _ => p.skb_program()?.pin(&path),
        };
        prog.with_context(|| format!("pinning program {name} at {}", path.display()))?;
    }
    Ok(())
}

/// Pin of the last loaded tc VLAN program, next to `prog`.
pub const TC_PROG_PIN: &str = "prog-tc";
/// Pin of the last loaded tc program of the frame checks (`--mode tc`).
pub const SKB_PROG_PIN: &str = "prog-skb";

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

/// The ifindex a port's link (XDP, or tcx in tc mode) pinned at `path` is
/// attached to (0 once its interface is gone), via BPF_OBJ_GET +
/// BPF_OBJ_GET_INFO_BY_FD.
pub fn pinned_link_ifindex(path: &Path) -> std::io::Result<u32> {
    let (kind, ifindex) = pinned_link_info(path)?;
    Ok(if kind == BPF_LINK_TYPE_XDP || kind == BPF_LINK_TYPE_TCX {
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
