//! Which hook and mode an interface gets, and why (`attach --mode`, shown by `show`).
//!
//! `auto` chooses by device kind the mode that keeps the tenant's TCP speed
//! while still judging every frame (docs/bench.md, "Attach modes"):
//! * veth: tc (the same checks as a tc ingress program). Native XDP on a
//!   veth clears TSO on its peer (the VM's side), so the VM's stack segments
//!   everything in software: 0.2-0.35x TCP throughput. Generic XDP keeps TSO
//!   but copies every cloned or paged skb into one linear buffer before the
//!   program runs (every TCP super-frame: TCP keeps a clone), which cost
//!   IPv6 TCP a fifth of its throughput here. tc reads the skb in place.
//! * tap (tun driver): native. tun runs the program on every frame a VM
//!   writes, TSO frames included (through its own generic path for GSO
//!   frames), and nothing is cleared on the VM's side; small frames are
//!   judged before an skb exists, so floods cost less.
//! * anything else (physical NICs and other drivers): native, falling back to
//!   generic where the driver has no XDP support. A NIC's frames come off the
//!   wire already segmented, and native is the cheapest place to drop.
use crate::iface;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestedMode {
    Auto,
    Native,
    Generic,
    Tc,
}

impl std::str::FromStr for RequestedMode {
    type Err = String;
    /// Also xdp-loader's and ip-link's names: `skb` = generic, `drv` = native.
    fn from_str(s: &str) -> Result<RequestedMode, String> {
        match s {
            "auto" => Ok(RequestedMode::Auto),
            "native" | "drv" => Ok(RequestedMode::Native),
            "generic" | "skb" => Ok(RequestedMode::Generic),
            "tc" | "tcx" => Ok(RequestedMode::Tc),
            o => Err(format!(
                "invalid mode {o:?}: expected auto, native (or drv), generic (or skb) or tc"
            )),
        }
    }
}

/// The kind of device, for `auto`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Veth,
    /// tun driver in tap mode.
    Tap,
    /// Any other driver (name as `ethtool -i` gives it; "unknown" if the
    /// device does not say).
    Other(String),
}

impl DeviceKind {
    pub fn of(ifname: &str) -> DeviceKind {
        match iface::driver(ifname) {
            Ok(d) if d == "veth" => DeviceKind::Veth,
            Ok(d) if d == "tun" => DeviceKind::Tap,
            Ok(d) if !d.is_empty() => DeviceKind::Other(d),
            _ => DeviceKind::Other("unknown".into()),
        }
    }
}

/// What `auto` does on this kind of device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoChoice {
    Tc,
    /// Native, generic if the driver refuses (`AutoFallback`).
    Native,
}

pub fn auto_choice(kind: &DeviceKind) -> (AutoChoice, AttachReason) {
    match kind {
        DeviceKind::Veth => (AutoChoice::Tc, AttachReason::AutoVeth),
        DeviceKind::Tap => (AutoChoice::Native, AttachReason::AutoTap),
        DeviceKind::Other(_) => (AutoChoice::Native, AttachReason::AutoNative),
    }
}

/// Why a port runs in its mode; stored in its record (`PortConfig::attach_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AttachReason {
    /// Attached by a portguard that did not record it.
    Unknown = 0,
    /// `--mode native|generic|tc` was given.
    Requested = 1,
    AutoVeth = 2,
    AutoTap = 3,
    /// Another kind of device, native accepted.
    AutoNative = 4,
    /// Another kind of device whose driver refused native mode.
    AutoFallback = 5,
}

impl AttachReason {
    pub fn from_u8(v: u8) -> AttachReason {
        match v {
            1 => AttachReason::Requested,
            2 => AttachReason::AutoVeth,
            3 => AttachReason::AutoTap,
            4 => AttachReason::AutoNative,
            5 => AttachReason::AutoFallback,
            _ => AttachReason::Unknown,
        }
    }

    /// Short key for `show --json` (`attach_reason`).
    pub fn name(self) -> &'static str {
        match self {
            AttachReason::Unknown => "unknown",
            AttachReason::Requested => "requested",
            AttachReason::AutoVeth => "auto_veth",
            AttachReason::AutoTap => "auto_tap",
            AttachReason::AutoNative => "auto_native",
            AttachReason::AutoFallback => "auto_fallback",
        }
    }

    /// One phrase for the attach message, the `show` table and `attach_why`.
    pub fn explain(self) -> &'static str {
        match self {
            AttachReason::Unknown => "reason not recorded",
            AttachReason::Requested => "requested with --mode",
            AttachReason::AutoVeth => "auto: veth, tc keeps the VM's TSO and copies nothing",
            AttachReason::AutoTap => "auto: tap, native sees every frame incl. TSO",
            AttachReason::AutoNative => "auto: native driver mode",
            AttachReason::AutoFallback => "auto: driver has no native XDP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_and_aliases() {
        for (s, m) in [
            ("auto", RequestedMode::Auto),
            ("native", RequestedMode::Native),
            ("drv", RequestedMode::Native),
            ("generic", RequestedMode::Generic),
            ("skb", RequestedMode::Generic),
            ("tc", RequestedMode::Tc),
            ("tcx", RequestedMode::Tc),
        ] {
            assert_eq!(s.parse::<RequestedMode>(), Ok(m), "{s}");
        }
        let e = "xdpgeneric".parse::<RequestedMode>().unwrap_err();
        assert!(e.contains("\"xdpgeneric\"") && e.contains("skb"), "{e}");
    }

    #[test]
    fn auto_by_kind() {
        assert_eq!(auto_choice(&DeviceKind::Veth).0, AutoChoice::Tc);
        assert_eq!(auto_choice(&DeviceKind::Tap).0, AutoChoice::Native);
        assert_eq!(
            auto_choice(&DeviceKind::Other("ixgbe".into())).0,
            AutoChoice::Native
        );
        for v in 0..=6u8 {
            let r = AttachReason::from_u8(v);
            assert_eq!(r as u8, if v <= 5 { v } else { 0 });
            assert!(!r.name().is_empty() && !r.explain().is_empty());
        }
    }
}
